"""Command line: `lesde simulate`, `lesde sweep`, `lesde spring`, `lesde train`, `lesde plot`."""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from . import __version__
from .io import ConfigError, DEFAULT_CONFIG, load_config, write_run
from .io._results import versions
from .metrics import observables
from .solve import Grid, simulate, STATUS_NAMES


def run_simulation(config, progress: bool = False):
    """Build the model of a validated `RunConfig`, solve it, and return
    (model, trajectory); the trajectory's `ys` holds `lesde.metrics.observables`."""
    model = config.model.build()
    s = config.solve
    ts = np.linspace(0.0, s.t1, s.num_saves)
    traj = simulate(
        model,
        t1=s.t1,
        dt=s.dt,
        key=jax.random.key(s.seed),
        ts=ts,
        fn=observables,
        solver=s.solver,
        progress=progress,
    )
    return model, traj


def _simulate(args) -> int:
    try:
        config = load_config(args.config)
        model_check = config.model.build()  # model-level checks before any compute
    except (ConfigError, ValueError) as e:
        print(f"lesde simulate: {e}", file=sys.stderr)
        return 2
    del model_check
    source = args.config or f"embedded default ({DEFAULT_CONFIG.name})"
    m, s = config.model, config.solve
    steps = round(s.t1 / s.dt)
    print(
        f"lesde {__version__}: LE-SDE '{m.gradient}' model, K = {m.num_classes}, "
        f"N = {sum(m.class_sizes or [m.per_class] * m.num_classes)}, {steps} {s.solver} "
        f"steps of dt = {s.dt}; config: {source}"
    )
    start = time.perf_counter()
    model, traj = run_simulation(config, progress=not args.quiet)
    obs = jax.tree_util.tree_map(np.asarray, traj.ys)
    elapsed = time.perf_counter() - start
    status = STATUS_NAMES[int(traj.status)]

    print(f"{'t':>10} {'loss':>12} {'accuracy':>9} {'min margin':>11} {'within tr':>11}")
    for i, t in enumerate(np.asarray(traj.ts)):
        print(
            f"{t:10.2f} {obs['loss'][i]:12.5g} {obs['accuracy'][i]:9.3f} "
            f"{obs['min_margin'][i]:11.4g} {obs['within_class_trace'][i]:11.4g}"
        )
    summary = {
        "status": status,
        "final": {
            k: float(obs[k][-1]) for k in ("loss", "accuracy", "min_margin", "within_class_trace")
        },
        "separable_by_head": bool(obs["min_margin"][-1] > 0),
        "wall_time_s": round(elapsed, 3),
        **versions(),
    }
    arrays = {"ts": traj.ts, "status": traj.status, **obs}
    out = write_run(args.out, config.model_dump(mode="json"), arrays, summary)
    print(
        f"status: {status}; final loss {summary['final']['loss']:.5g}, accuracy "
        f"{summary['final']['accuracy']:.3f}; {elapsed:.1f} s; results in {out}/"
    )
    return 0 if status == "success" else 1


def _sweep(args) -> int:
    from .io import run_sweep, SweepConfig
    from .plot import plot_load_curves, plot_phase_diagram

    try:
        config = load_config(args.config, schema=SweepConfig)
    except (ConfigError, ValueError) as e:
        print(f"lesde sweep: {e}", file=sys.stderr)
        return 2
    if args.distributed:
        jax.distributed.initialize()  # the cluster (SLURM, MPI, ...) names the processes
    s = config.sweep
    axes = s.grid_axes()
    cells = Grid(axes).num_cells
    print(
        f"lesde {__version__}: sweep of the {config.model.describe()} over "
        f"{' x '.join('+'.join(a) for a in axes)} = {cells} cells x {s.seeds} seeds on "
        f"{len(jax.devices())} {jax.default_backend()} device(s)"
    )
    try:
        ds = run_sweep(config, args.out, chunk_size=args.chunk_size, progress=not args.quiet)
    except ValueError as e:
        print(f"lesde sweep: {e}", file=sys.stderr)
        return 2
    if jax.process_index() != 0:
        return 0  # the first process reports and draws
    png = Path(args.out) / "phase_diagram.png"
    plot_phase_diagram(ds, path=png)
    pictures = str(png)
    if "gains" in ds.data_vars and len(Grid(axes).shape) >= 2:
        curves = Path(args.out) / "load_curves.png"
        plot_load_curves(ds, path=curves)
        pictures += f" and {curves}"
    failed = int((ds["status"] != 0).sum())
    scalar = [m for m in config.metrics if set(ds[m].dims) <= set(ds["status"].dims) | {"time"}]
    first = ds[scalar[0] if scalar else "status"].mean("seed")
    when = ""
    if "time" in first.dims:
        first = first.isel(time=-1)
        when = f" at t = {float(ds['time'][-1]):g}"
    for dim in first.dims:  # label a zipped dimension by its first parameter's values
        if "+" in dim:
            lead = dim.split("+")[0]
            first = first.assign_coords({dim: ds[lead].values}).rename({dim: f"{lead} (zipped)"})
    print(f"{first.name} (mean over seeds){when}:")
    table = first.to_pandas() if first.ndim <= 2 else first.to_dataframe()
    print(table.to_string(float_format="%.4g") if hasattr(table, "to_string") else table)
    print(
        f"{ds.attrs['num_members']} members ({failed} diverged or failed), "
        f"{ds.attrs['wall_time_s_this_run']:.1f} s; results in {args.out}/sweep.nc, "
        f"pictures in {pictures}"
    )
    return 0


def run_spring(config):
    """Solve the spring-block model of a validated `SpringRunConfig` for `solve.seeds`
    seeds at once (one vmapped computation); return (model, trajectory) with the block
    positions, shape (seeds, num_saves, L), saved at evenly spaced times."""
    from .io._config import is_map

    model = config.model.build()
    s = config.solve
    ts = np.linspace(0.0, s.t1, s.num_saves)
    keys = jax.random.split(jax.random.key(s.seed), s.seeds)
    solver = None if is_map(config.model) else s.solver

    @jax.jit
    def solve(key):
        return simulate(
            model, t1=s.t1, dt=s.dt, key=key, ts=ts, solver=solver,
            fn=lambda t, y, m: m.positions(y),
        )

    return model, jax.vmap(solve)(keys)


def spring_theory(config) -> dict | None:
    """The spec's prediction for a map run, if any: the noiseless equilibrium (no noise)
    or the mean-field stationary elongations (noise), including the target spring."""
    from .io._config import is_map
    from .models import spring_equilibrium, stationary_gains

    m = config.model
    if not is_map(m):
        return None
    back = float(m.build().friction.mu_back)  # mu_back, mu_ratio * mu_fwd or mu_fwd
    common = dict(stiffness=m.stiffness, load=m.load, control=m.control)
    if m.noise == 0:
        if m.load < 0:  # the formula is for a forward pull
            return None
        d = spring_equilibrium(m.num_blocks, mu=m.mu_fwd, **common)
        return {"kind": "noiseless equilibrium from rest", "elongations": d.tolist()}
    d = stationary_gains(m.num_blocks, noise=m.noise, mu_fwd=m.mu_fwd, mu_back=back, **common)
    return {"kind": "mean-field stationary state", "elongations": d.tolist()}


def _spring(args) -> int:
    from .io import SpringRunConfig
    from .io._config import DEFAULT_SPRING_CONFIG
    from .metrics import load_curve, SHAPES
    from .plot import plot_spring_run

    try:
        config = load_config(args.config, schema=SpringRunConfig)
        config.model.build()  # model-level checks before any compute
        theory = spring_theory(config)
    except (ConfigError, ValueError) as e:
        print(f"lesde spring: {e}", file=sys.stderr)
        return 2
    source = args.config or f"embedded default ({DEFAULT_SPRING_CONFIG.name})"
    s = config.solve
    print(
        f"lesde {__version__}: {config.model.describe()}, {round(s.t1 / s.dt)} steps, "
        f"{s.seeds} seeds; config: {source}"
    )
    start = time.perf_counter()
    model, traj = run_spring(config)
    x = np.asarray(traj.ys)  # (seeds, T, L)
    elapsed = time.perf_counter() - start
    status = np.asarray(traj.status)
    gains = np.diff(x, axis=-1, prepend=0.0)
    final = gains[:, -1].mean(0)
    stats = load_curve(final)
    print(f"{'block':>6} {'elongation':>11} {'(sd over seeds)':>16}")
    sd = gains[:, -1].std(0)
    for i in range(x.shape[-1]):
        print(f"{i + 1:6d} {final[i]:11.4g} {sd[i]:16.3g}")
    label = SHAPES[int(stats.shape_code)]
    print(
        f"load curve: {label}, curvature {float(stats.curvature):.4g}, non-uniformity "
        f"{float(stats.nonuniformity):.4g} (normalised gains of the seed mean)"
    )
    summary = {
        "status": "success" if (status == 0).all() else "diverged",
        "final_gains_mean": final.tolist(),
        "final_gains_sd": sd.tolist(),
        "load_curve": {
            "shape": label,
            "curvature": float(stats.curvature),
            "nonuniformity": float(stats.nonuniformity),
        },
        "theory": theory,
        "wall_time_s": round(elapsed, 3),
        **versions(),
    }
    out = Path(args.out)
    arrays = {"ts": np.asarray(traj.ts[0]), "positions": x, "status": status}
    png = out / "spring.png"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # replaced: no longer complete
    plot_spring_run(
        np.asarray(traj.ts[0]), x, theory=theory, path=png,
        time_label="t (map steps)" if theory is not None else "t",
    )
    write_run(out, config.model_dump(mode="json"), arrays, summary)
    print(f"{elapsed:.1f} s; results in {out}/ (trajectory.npz, summary.json, {png.name})")
    return 0 if summary["status"] == "success" else 1


def _fingerprint(config: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def run_trajectories(config, out: Path, progress: bool = True) -> dict:
    """Experiment 1 of a `TrajectoriesConfig`: one trajectory log per corruption fraction,
    written to out/log_p<p>.nc as soon as it is complete. A log already there from the
    same configuration is kept (an interrupted run resumes at the next fraction).
    Returns {p: log}."""
    import yaml

    from .io import read_log, write_log
    from .nets import corrupt_labels, log_spaced_steps, train_sgd

    data = config.data.build()
    t = config.train
    base = config.model_dump(mode="json")
    base.pop("corruption")
    stamp = _fingerprint(base)
    snaps = log_spaced_steps(t.steps, t.snapshots, multiple=t.eval_every) if t.snapshots else None
    impacts = None
    if t.impact_checkpoints:
        impacts = log_spaced_steps(t.steps, t.impact_checkpoints, multiple=t.eval_every)
    logs = {}
    for p in config.corruption:
        path = out / f"log_p{p:.4f}.nc"
        if path.is_file():
            old = read_log(path)
            if old.attrs.get("config_fingerprint") == stamp and np.isclose(old.attrs.get("corruption", -1), p):
                print(f"p = {p:.4f}: kept {path.name} (same configuration)")
                logs[p] = old
                continue
        labels, flipped = corrupt_labels(data.y_train, p, data.num_classes, seed=config.corruption_seed)
        print(f"p = {p:.4f}: {int(np.sum(flipped))} of {data.num_train} training labels flipped")
        log = train_sgd(
            data.with_train_labels(labels),
            network=config.network.name,
            network_options=config.network.options(),
            trials=t.trials, steps=t.steps, learning_rate=t.learning_rate,
            eval_every=t.eval_every, snapshot_steps=snaps, impact_steps=impacts,
            impact_samples=t.impact_samples, sampling=t.sampling, seed=t.seed,
            progress=progress,
        )
        log.attrs.update(
            corruption=float(p), config_fingerprint=stamp,
            config=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), **versions(),
        )
        write_log(log, path)
        logs[p] = log
    return logs


def _trajectory_summary(logs: dict) -> dict:
    rows = {}
    for p, log in logs.items():
        tail = max(1, log.sizes["step"] // 10)
        row = {"train_loss_last_10pct": float(log["train_loss"][:, -tail:].mean())}
        if log.sizes["eval_step"]:
            row.update(
                val_acc_final_median=float(np.median(log["val_acc"][:, -1])),
                val_loss_final_median=float(np.median(log["val_loss"][:, -1])),
            )
        if "impact" in log.data_vars:
            e = np.asarray(log["impact"][:, -1])  # (trials, K, K) at the last checkpoint
            k = e.shape[-1]
            off = ~np.eye(k, dtype=bool)
            row.update(
                ntk_alpha_final_median=float(np.median(np.trace(e, axis1=1, axis2=2) / k)),
                ntk_beta_final_median=float(np.median(e[:, off].mean(axis=1))),
                ntk_ratio_final_median=float(np.median(log["impact_ratio"][:, -1])),
            )
        rows[f"{p:.4f}"] = row
    return rows


def _train(args) -> int:
    from .io import ConfigError
    from .io._results import _atomic_write
    from .io._train_config import load_train_config, TrajectoriesConfig
    from .plot import plot_logit_trajectories, plot_separation_grid, plot_validation

    try:
        config = load_train_config(args.config)
        config.data.build()  # data-level checks before any training
    except (ConfigError, ValueError) as e:
        print(f"lesde train: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "summary.json"
    marker.unlink(missing_ok=True)  # being replaced: no longer complete
    print(f"lesde {__version__}: lesde train ({config.experiment}); config: {args.config}")
    start = time.perf_counter()
    written = []
    if isinstance(config, TrajectoriesConfig):
        logs = run_trajectories(config, out, progress=not args.quiet)
        results = _trajectory_summary(logs)
        print(f"{'p':>8} {'final val acc (median)':>24} {'train loss (last 10%)':>22}")
        for p, row in results.items():
            acc = row.get("val_acc_final_median", float("nan"))
            print(f"{p:>8} {acc:24.3f} {row['train_loss_last_10pct']:22.4f}")
        titles = {f"p = {p:.3g}": log for p, log in logs.items()}
        window = max(1, next(iter(logs.values())).sizes["step"] // 200)
        plot_logit_trajectories(titles, path=out / "logits.png", window=window)
        written.append("logits.png")
        if next(iter(logs.values())).sizes["eval_step"]:
            plot_validation(titles, path=out / "validation.png")
            written.append("validation.png")
        written = [f"log_p{p:.4f}.nc" for p in logs] + written
    else:
        results = run_separation(config, out, progress=not args.quiet)
        written.append("separation.nc")
        ds = results.pop("_dataset")
        dims = [d for d in ds["D"].dims if d not in ("seed", "epoch", "layer")]
        if len(dims) >= 2:
            plot_separation_grid(ds, path=out / "load_curves.png")
            written.append("load_curves.png")
    elapsed = time.perf_counter() - start
    summary = {
        "experiment": config.experiment,
        "results": results,
        "wall_time_s": round(elapsed, 3),
        **versions(),
    }
    _atomic_write(marker, lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    print(f"{elapsed:.1f} s; results in {out}/ ({', '.join(written)}, summary.json)")
    return 0


def run_separation(config, out: Path, progress: bool = True) -> dict:
    """Experiment 2 of a `SeparationConfig`: trains the grid, writes out/separation.nc and
    returns a summary (seed means per cell at the last epoch) with the dataset under
    '_dataset'."""
    import yaml

    from .io._results import _atomic_write
    from .metrics import SHAPES
    from .nets import train_separation

    data = config.data.build()
    g, t = config.grid, config.train
    ds = train_separation(
        data, seeds=t.seeds, epochs=t.epochs, learning_rate=g.learning_rate,
        negative_slope=g.negative_slope, dropout=g.dropout, data_noise=g.data_noise,
        batch_size=g.batch_size, width=config.network.width, depth=config.network.depth,
        eval_epochs=t.eval_epochs, seed=t.seed, chunk_size=t.chunk_size, progress=progress,
    )
    ds.attrs.update(config=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), **versions())
    _atomic_write(out / "separation.nc", lambda p: ds.to_netcdf(p, engine="scipy"))
    last = ds.isel(epoch=-1).mean("seed")
    cells = []
    dims = [d for d in last["test_acc"].dims]
    for idx in np.ndindex(*[last.sizes[d] for d in dims]):
        sel = dict(zip(dims, idx))
        cell = {d: float(last[d][i]) for d, i in sel.items()}
        c = last.isel(sel)
        cell.update(
            test_acc=float(c["test_acc"]), curvature=float(c["curvature"]),
            nonuniformity=float(c["nonuniformity"]), correlation=float(c["correlation"]),
            shape=SHAPES[int(np.sign(np.round(float(c["shape"]))))],
        )
        cells.append(cell)
    print(f"{len(cells)} cells; test accuracy {min(c['test_acc'] for c in cells):.3f} .. "
          f"{max(c['test_acc'] for c in cells):.3f}")
    return {"cells": cells, "_dataset": ds}


def _plot(args) -> int:
    import xarray as xr

    from .plot import _grid_dims, plot_load_curves, plot_phase_diagram

    path = Path(args.result)
    if not path.is_file():
        print(f"lesde plot: no such file: {path}", file=sys.stderr)
        return 2
    with xr.open_dataset(path, engine="scipy") as ds:
        out = Path(args.out) if args.out else path.with_suffix(".png")
        written = [out]
        try:
            ds = ds.load()
            plot_phase_diagram(ds, metrics=args.metrics, path=out)
            if "gains" in ds.data_vars and len(_grid_dims(ds)) >= 2:  # spring-block sweep
                written.append(out.with_name(f"{out.stem}_load_curves.png"))
                plot_load_curves(ds, path=written[-1])
        except ValueError as e:
            print(f"lesde plot: {e}", file=sys.stderr)
            return 2
    print(f"written {', '.join(map(str, written))}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="lesde", description="Simulate locally elastic SDEs of training dynamics."
    )
    parser.add_argument("--version", action="version", version=f"lesde {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "simulate",
        help="solve one LE-SDE run from a YAML config",
        description="Solve one LE-SDE run; writes config.yaml, trajectory.npz and "
        "summary.json (written last: its presence marks a complete run) to --out.",
    )
    p.add_argument("config", nargs="?", default=None, help="YAML config (default: embedded)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)
    p = sub.add_parser(
        "sweep",
        help="solve a parameter sweep as one batched computation",
        description="Solve every cell x seed of a sweep config; writes sweep.nc (xarray, "
        "netCDF) and phase_diagram.png to --out. Rerunning after an interruption resumes.",
    )
    p.add_argument("config", help="YAML sweep config (see configs/)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--chunk-size", type=int, default=None, help="members per compiled call")
    p.add_argument(
        "--distributed", action="store_true",
        help="several hosts: call jax.distributed.initialize() (run the same command on each)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)
    p = sub.add_parser(
        "spring",
        help="run one spring-block model (default: the authors' map setting) over seeds",
        description="Run a spring-block model (kind spring_map or spring_sde) for several "
        "seeds; writes config.yaml, trajectory.npz (block positions), spring.png and "
        "summary.json (last) to --out. See configs/spring_*_authors.yaml.",
    )
    p.add_argument("config", nargs="?", default=None, help="YAML config (default: embedded)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_spring)
    p = sub.add_parser(
        "train",
        help="train real networks and log what the theories describe",
        description="Experiment 'trajectories': SGD with batch size 1, many trials, one "
        "log per label-corruption fraction (log_p<p>.nc, logits.png, validation.png). "
        "Experiment 'separation': the BatchNorm MLP on a noise x nonlinearity grid "
        "(separation.nc, load_curves.png). summary.json is written last. See "
        "configs/train_*.yaml.",
    )
    p.add_argument("config", help="YAML training config (see configs/train_*.yaml)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
    p = sub.add_parser(
        "plot",
        help="draw the phase diagram of a sweep result (and its load-curve grid for a "
        "spring-block sweep)",
    )
    p.add_argument("result", help="a sweep.nc file")
    p.add_argument("--out", default=None, help="PNG path (default: next to the result)")
    p.add_argument("--metrics", nargs="+", default=None, help="metrics to draw")
    p.set_defaults(func=_plot)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
