"""Command line: `lesde simulate`, `lesde sweep`, `lesde spring`, `lesde train`, `lesde fit`,
`lesde plot`."""

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

from . import __version__
from .io import (
    check_output_dir, check_output_file, ConfigError, DEFAULT_CONFIG, INTERRUPTED, load_config,
    output_lock, OutputError, remove_stale, write_run,
)
from .io._results import COMPLETE_MARKER, versions, write_json
from .metrics import observables
from .solve import fingerprint_of, Grid, simulate, status_counts, STATUS_NAMES


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


def _positive_int(text: str) -> int:
    """An argparse type: an int >= 1 (argparse's error, exit status 2, otherwise)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {n}")
    return n


def _flagged_warning(command: str, status, what: str = "members") -> str | None:
    """One line saying how many members are flagged and what to do, or None."""
    counts = status_counts(status)
    total = int(np.size(status))
    flagged = total - counts.get("success", 0)
    if not flagged:
        return None
    parts = ", ".join(f"{n} {name}" for name, n in counts.items() if name != "success")
    fixes = []
    if "inaccurate" in counts:
        precision = "float64" if jax.config.jax_enable_x64 else "float32"
        fixes.append(
            f"inaccurate: the state's dynamic range swamped {precision} (see "
            "lesde.solve.PRECISION_BITS); rerun "
            + ("" if precision == "float64" else "with --x64 or ")
            + "with a shorter horizon (with the identity model, impacts with alpha + (K-1) "
            "beta = 0 keep the common mode from growing, as configs/phase_transition.yaml does)"
        )
    if "diverged" in counts:
        fixes.append("diverged: the state became non-finite; try a smaller dt or smaller impacts")
    if "solver failed" in counts:
        fixes.append("solver failed: diffrax stopped (max_steps); see the solver options")
    return (
        f"lesde {command}: warning: {flagged} of {total} {what} flagged ({parts}), their "
        f"results are NaN; " + "; ".join(fixes)
    )


def _warn(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr)


def _simulate(args) -> int:
    try:
        config = load_config(args.config)
        config.model.build()  # model-level checks before any compute
        out = check_output_dir(args.out)
    except (ConfigError, ValueError) as e:
        print(f"lesde simulate: {e}", file=sys.stderr)
        return 2
    with output_lock(out, "lesde simulate"):
        remove_stale(out, [COMPLETE_MARKER])  # being replaced: no longer complete
        return _simulate_into(args, config, out)


def _simulate_into(args, config, out: Path) -> int:
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
        "separable_by_head": (
            bool(obs["min_margin"][-1] > 0) if np.isfinite(obs["min_margin"][-1]) else None
        ),
        "wall_time_s": round(elapsed, 3),
        **versions(),
    }
    arrays = {"ts": traj.ts, "status": traj.status, **obs}
    write_run(out, config.model_dump(mode="json"), arrays, summary)
    print(
        f"status: {status}; final loss {summary['final']['loss']:.5g}, accuracy "
        f"{summary['final']['accuracy']:.3f}; {elapsed:.1f} s; results in {out}/"
    )
    _warn(_flagged_warning("simulate", traj.status, "run"))
    return 0 if status == "success" else 1


SWEEP_PICTURES = ("phase_diagram.png", "load_curves.png")


def _sweep(args) -> int:
    from .io import run_sweep, SweepConfig
    from .io._sweep_io import RESULT_NAME

    try:
        config = load_config(args.config, schema=SweepConfig)
    except (ConfigError, ValueError) as e:
        print(f"lesde sweep: {e}", file=sys.stderr)
        return 2
    if args.distributed:
        jax.distributed.initialize()  # the cluster (SLURM, MPI, ...) names the processes
    if jax.process_index() != 0:  # only the first process checks, writes and reports
        run_sweep(config, args.out, chunk_size=args.chunk_size, progress=False)
        return 0
    try:
        out = check_output_dir(args.out)
    except OutputError as e:
        print(f"lesde sweep: {e}", file=sys.stderr)
        return 2
    with output_lock(out, "lesde sweep"):
        remove_stale(out, (RESULT_NAME,) + SWEEP_PICTURES)  # replaced: not from this run
        try:
            return _sweep_into(args, config, out, run_sweep)
        except KeyboardInterrupt:
            print(
                f"lesde sweep: interrupted; the finished chunks are kept in {out / 'chunks'}/: "
                "run the same command again to resume", file=sys.stderr,
            )
            return INTERRUPTED


def _sweep_into(args, config, out: Path, run_sweep) -> int:
    from .plot import plot_load_curves, plot_phase_diagram

    s = config.sweep
    axes = s.grid_axes()
    cells = Grid(axes).num_cells
    print(
        f"lesde {__version__}: sweep of the {config.model.describe()} over "
        f"{' x '.join('+'.join(a) for a in axes)} = {cells} cells x {s.seeds} seeds on "
        f"{len(jax.devices())} {jax.default_backend()} device(s), "
        f"{'float64' if jax.config.jax_enable_x64 else 'float32'}"
    )
    try:
        ds = run_sweep(config, out, chunk_size=args.chunk_size, progress=not args.quiet)
    except ValueError as e:
        print(f"lesde sweep: {e}", file=sys.stderr)
        return 2
    png = out / SWEEP_PICTURES[0]
    plot_phase_diagram(ds, path=png)
    pictures = str(png)
    if "gains" in ds.data_vars and len(Grid(axes).shape) >= 2:
        curves = out / SWEEP_PICTURES[1]
        plot_load_curves(ds, path=curves)
        pictures += f" and {curves}"
    scalar = [m for m in config.metrics if set(ds[m].dims) <= set(ds["status"].dims) | {"time"}]
    first = ds[scalar[0] if scalar else "status"].mean("seed", skipna=False)
    when = ""
    if "time" in first.dims:
        first = first.isel(time=-1)
        when = f" at t = {float(ds['time'][-1]):g}"
    for dim in first.dims:  # label a zipped dimension by its first parameter's values
        if "+" in dim:
            lead = dim.split("+")[0]
            first = first.assign_coords({dim: ds[lead].values}).rename({dim: f"{lead} (zipped)"})
    print(f"{first.name} (mean over seeds; NaN where a seed is flagged){when}:")
    table = first.to_pandas() if first.ndim <= 2 else first.to_dataframe()
    print(table.to_string(float_format="%.4g") if hasattr(table, "to_string") else table)
    counts = ", ".join(f"{n} {name}" for name, n in status_counts(ds["status"]).items())
    print(
        f"{ds.attrs['num_members']} members ({counts}), "
        f"{ds.attrs['wall_time_s_this_run']:.1f} s; results in {out / 'sweep.nc'}, "
        f"pictures in {pictures}"
    )
    warning = _flagged_warning("sweep", ds["status"].values)
    _warn(warning)
    return 1 if warning else 0


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

    try:
        config = load_config(args.config, schema=SpringRunConfig)
        config.model.build()  # model-level checks before any compute
        theory = spring_theory(config)
        out = check_output_dir(args.out)
    except (ConfigError, ValueError) as e:
        print(f"lesde spring: {e}", file=sys.stderr)
        return 2
    with output_lock(out, "lesde spring"):
        remove_stale(out, [COMPLETE_MARKER, "spring.png"])  # replaced: not from this run
        return _spring_into(args, config, theory, out)


def _spring_into(args, config, theory, out: Path) -> int:
    from .io._config import DEFAULT_SPRING_CONFIG
    from .metrics import load_curve, SHAPES
    from .plot import plot_spring_run

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
    code = float(stats.shape_code)
    label = SHAPES[int(code)] if np.isfinite(code) else "n/a (flagged seeds)"
    print(
        f"load curve: {label}, curvature {float(stats.curvature):.4g}, non-uniformity "
        f"{float(stats.nonuniformity):.4g} (normalised gains of the seed mean)"
    )
    summary = {
        "status": "success" if (status == 0).all() else "flagged",
        "status_counts": status_counts(status),
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
    arrays = {"ts": np.asarray(traj.ts[0]), "positions": x, "status": status}
    png = out / "spring.png"
    plot_spring_run(
        np.asarray(traj.ts[0]), x, theory=theory, path=png,
        time_label="t (map steps)" if theory is not None else "t",
    )
    write_run(out, config.model_dump(mode="json"), arrays, summary)
    print(f"{elapsed:.1f} s; results in {out}/ (trajectory.npz, summary.json, {png.name})")
    _warn(_flagged_warning("spring", status, "seeds"))
    return 0 if summary["status"] == "success" else 1


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
    stamp = fingerprint_of({**base, "precision": versions()["precision"]})
    snaps = log_spaced_steps(t.steps, t.snapshots, multiple=t.eval_every) if t.snapshots else None
    impacts = None
    if t.impact_checkpoints:
        impacts = log_spaced_steps(t.steps, t.impact_checkpoints, multiple=t.eval_every)
    logs = {}
    for p in config.corruption:
        path = out / _log_name(p)
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
    from .io._train_config import load_train_config, TrajectoriesConfig

    try:
        config = load_train_config(args.config)
        config.data.build()  # data-level checks before any training
        out = check_output_dir(args.out)
    except (ConfigError, ValueError) as e:
        print(f"lesde train: {e}", file=sys.stderr)
        return 2
    with output_lock(out, "lesde train"):
        stale = [COMPLETE_MARKER, "logits.png", "validation.png", "load_curves.png", "separation.nc"]
        if isinstance(config, TrajectoriesConfig):  # logs of fractions this run does not train
            wanted = {_log_name(p) for p in config.corruption}
            stale += sorted(f.name for f in out.glob("log_p*.nc") if f.name not in wanted)
        removed = [n for n in remove_stale(out, stale) if n.startswith("log_p")]
        if removed:
            print(f"removed {', '.join(removed)}: from an earlier run, for fractions this "
                  "configuration does not train")
        try:
            return _train_into(args, config, out)
        except KeyboardInterrupt:
            kept = ("the logs of the finished fractions are kept; run the same command again "
                    "to resume at the next fraction" if isinstance(config, TrajectoriesConfig)
                    else "nothing was written (the grid is trained as one computation)")
            print(f"lesde train: interrupted; {kept}", file=sys.stderr)
            return INTERRUPTED


def _log_name(p: float) -> str:
    """The file of the log of corruption fraction p."""
    return f"log_p{p:.4f}.nc"


def _train_into(args, config, out: Path) -> int:
    from .io._train_config import TrajectoriesConfig
    from .plot import plot_logit_trajectories, plot_separation_grid, plot_validation

    marker = out / COMPLETE_MARKER
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
        written = [_log_name(p) for p in logs] + written
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
    write_json(marker, summary)
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


def closed_form_estimates(log, config) -> tuple:
    """The closed-form estimates of a `FitConfig` on a log: the inversion
    (`closed_form.estimator`) of the class-mean logits of `data.window`-step windows,
    the Savitzky-Golay rates alpha_hat, beta_hat, the tail index of A_hat and a power-law
    fit of alpha_hat (time scale `model.impact.t0`).

    Returns (dataset, summary): the inversion's Dataset with the rates added (None if
    the inversion failed or the estimator is 'none') and a JSON-ready summary (None for
    'none'). A step that fails (real logits can make the inversion impossible, e.g. a
    window without a class) records its message under summary['errors'] instead of
    raising.
    """
    from . import fit as F
    from .io import class_mean_logits

    cf = config.closed_form
    if cf.estimator == "none":
        return None, None
    summary: dict = {"estimator": cf.estimator, "errors": {}}
    invert = F.identity_inversion if cf.estimator == "identity" else F.projected_inversion
    try:
        est = invert(class_mean_logits(log, window=config.data.window))
    except ValueError as e:
        summary["errors"]["inversion"] = str(e)
        return None, summary
    summary["A_hat_final"] = float(est["A_hat"][-1])
    summary["B_hat_final"] = float(est["B_hat"][-1])
    try:
        summary["tail_index"] = F.tail_index(est["A_hat"], last=cf.tail_last)
    except ValueError as e:
        summary["errors"]["tail_index"] = str(e)
    try:
        est = F.savgol_rates(est, cf.savgol_window)
    except ValueError as e:
        summary["errors"]["savgol_rates"] = str(e)
        return est, summary
    try:
        pl = F.power_law_fit(est["step"].values, est["alpha_hat"], t0=config.model.impact.t0)
        summary["power_law_alpha_hat"] = pl._asdict()
    except ValueError as e:
        summary["errors"]["power_law_fit"] = str(e)
    return est, summary


def run_fit(setup, config, progress: bool = True) -> tuple:
    """The gradient fit of a `build_fit` setup with the configuration's optimizer, then
    its report (`lesde.fit.fit_report`: standard errors from the curvature of the loss,
    or from a bootstrap over trials; parameters the data do not identify get None).
    Returns (FitResult, report dict, JSON-ready: non-finite numbers as None).

    A fit that did not end normally (`stopped` 'interrupted' or 'nonfinite') gets no
    uncertainty (its parameters are no minimum of the loss) and no bootstrap. Ctrl-C
    during the uncertainty keeps the fit and marks it `stopped='interrupted'`, without
    uncertainty; Ctrl-C before the first optimisation step has ended raises
    KeyboardInterrupt (there is nothing to keep).
    """
    import dataclasses

    from . import fit as F
    from .io._results import to_json

    o, u = config.optimizer, config.uncertainty
    opts = dict(method=o.method, learning_rate=o.learning_rate, schedule=o.schedule,
                patience=o.patience, rtol=o.rtol)
    result = F.fit(setup.params, setup.loss, free=setup.free, steps=o.steps, progress=progress, **opts)
    normal = result.stopped in ("max_steps", "converged")
    try:
        samples = None
        if normal and u.method == "bootstrap":
            samples = F.bootstrap(
                result, setup.make_loss, setup.log.sizes["trial"], samples=u.samples,
                steps=u.steps, seed=config.loss.seed, progress=progress, **opts,
            )
        report = F.fit_report(result, setup.loss, bootstrap_samples=samples, uncertainty=normal)
    except KeyboardInterrupt:
        result = dataclasses.replace(result, stopped="interrupted")
        report = F.fit_report(result, setup.loss, uncertainty=False)
    return result, to_json(report)


def _goodness_summary(goodness: dict) -> dict:
    """R^2 of the class means on the fit and held-out windows (and the per-value
    negative log-likelihood of a transition fit, the covariance R^2 of a moment fit)."""
    fit, held = goodness["fit"], goodness["heldout"]
    if "nll_per_value" in fit:  # TransitionLoss
        return {
            "nll_fit": fit["nll_per_value"], "nll_heldout": held["nll_per_value"],
            "r2_fit": fit["class_means"]["r2"], "r2_heldout": held["class_means"]["r2"],
        }
    if "mean" in fit:  # MomentLoss
        return {
            "r2_fit": fit["mean"]["r2"], "r2_heldout": held["mean"]["r2"],
            "r2_cov_fit": fit["cov"]["r2"], "r2_cov_heldout": held["cov"]["r2"],
        }
    return {"r2_fit": fit["r2"], "r2_heldout": held["r2"]}


def fit_dataset(setup, result, goodness: dict, estimates=None):
    """The fit as an xr.Dataset: the data's and the fitted model's class means
    `data`, `model` (step, class, logit) with the bool coordinate `heldout` (step), the
    rows behind each data mean `count` (step, class), the fitted impact matrix `impact`
    (step, class_row, class_col) at the data times, and the closed-form `A_hat`,
    `B_hat`, `alpha_hat`, `beta_hat` over their own window times `cf_step` if given.

    The class means are those the loss compares: the windowed class-mean logits (class
    mean and moment losses; NaN where a window has no row of a class) or the snapshot
    class means (transition loss; the model forecast from each trial's first snapshot).

    Attrs say how the fit ended: `stopped` (the `FitResult` reason), `complete` (0 when
    it was interrupted: the parameters are the best so far, not a finished fit),
    `converged` (1 when the early-stopping criterion was met; 0 otherwise, in
    particular when the loss became non-finite), `heldout_window` (0 when nothing is
    held out), the goodness summary where available and `knots_beyond_data` (knots
    whose values extrapolate a piece, `lesde.fit.check_knots`).
    """
    import xarray as xr

    from . import fit as F

    loss, params = setup.loss, result.params
    if isinstance(loss, F.TransitionLoss):
        data = loss.observed_means()
        model = np.asarray(loss.predict(params))
        R, _, N, _ = np.asarray(loss.data.features).shape
        counts = np.bincount(np.asarray(loss.data.labels), minlength=data.shape[1]) * R
        count = np.broadcast_to(counts, data.shape[:2])
        heldout = np.concatenate([[False], ~np.asarray(loss.mask)])
    else:
        if isinstance(loss, F.MomentLoss):
            data, model = np.asarray(loss.data.mean), np.asarray(loss.predict(params)[0])
        else:
            data, model = np.asarray(loss.data.xbar), np.asarray(loss.predict(params))
        count = np.asarray(loss.data.weight)
        data = np.where(count[..., None] > 0, data, np.nan)
        heldout = ~np.asarray(loss.mask)
    ts = np.asarray(loss.times, dtype=np.float64)
    K = data.shape[1]
    ds = xr.Dataset(
        {
            "data": (("step", "class", "logit"), data.astype(np.float64)),
            "model": (("step", "class", "logit"), model.astype(np.float64)),
            "count": (("step", "class"), np.asarray(count, dtype=np.float64)),
            "impact": (("step", "class_row", "class_col"), F.impact_matrices(params, ts).astype(np.float64)),
        },
        coords={
            "step": ts, "class": np.arange(K, dtype=np.int32),
            "logit": np.arange(data.shape[2], dtype=np.int32), "heldout": ("step", heldout.astype(bool)),
        },
        attrs={
            "loss": type(loss).__name__, "fit_until": float(setup.fit_until),
            "heldout_window": int(setup.heldout), "stopped": result.stopped,
            "complete": int(result.stopped != "interrupted"),
            "converged": int(result.stopped == "converged"),
        },
    )
    for key, value in _goodness_summary(goodness).items():
        if value is not None:
            ds.attrs[key] = float(value)
    if setup.knots is not None:
        ds.attrs["knots"] = np.asarray(setup.knots, dtype=np.float64)
    if setup.knots_beyond_data:
        ds.attrs["knots_beyond_data"] = np.asarray(setup.knots_beyond_data, dtype=np.float64)
    if estimates is not None:
        for name in ("A_hat", "B_hat", "alpha_hat", "beta_hat"):
            if name in estimates:
                ds[name] = ("cf_step", np.asarray(estimates[name], dtype=np.float64))
        ds = ds.assign_coords(cf_step=np.asarray(estimates["step"], dtype=np.float64))
        ds.attrs["closed_form_estimator"] = estimates.attrs.get("estimator", "")
    return ds


def _fmt(v, width=11):
    return f"{'n/a':>{width}}" if v is None else f"{v:{width}.4g}"


def _print_parameters(params: dict) -> None:
    print(f"{'parameter':<30} {'value':>11} {'stderr':>11}")
    for name, p in params.items():
        print(f"{name.removeprefix('model.'):<30} {_fmt(p['value'])} {_fmt(p['stderr'])}")


def _print_fit_table(setup, result, report: dict, closed: dict | None) -> None:
    """A short account of the fit on stdout: the parameters with their standard errors
    (or, for many parameters, the mean diagonal and off-diagonal of the fitted E(t)),
    goodness of fit and the closed-form estimates."""
    from . import fit as F

    params = report["parameters"]
    impact = {n: p for n, p in params.items() if n.startswith("model.impact.")}
    rest = {n: p for n, p in params.items() if n not in impact}
    names = set(impact)
    if setup.knots is not None and {f"model.impact.{a}.values[{i}]" for a in ("alpha", "beta")
                                    for i in range(len(setup.knots))} == names:
        print(f"{'t':>10} {'alpha':>11} {'stderr':>11} {'beta':>11} {'stderr':>11}")
        for i, t in enumerate(setup.knots):
            a, b = impact[f"model.impact.alpha.values[{i}]"], impact[f"model.impact.beta.values[{i}]"]
            print(f"{t:10.4g} {_fmt(a['value'])} {_fmt(a['stderr'])} {_fmt(b['value'])} {_fmt(b['stderr'])}")
    elif len(impact) <= 16:
        _print_parameters(impact)
    else:
        times = np.asarray(setup.loss.times)
        ts = np.asarray(setup.knots) if setup.knots is not None else times[
            np.unique(np.linspace(0, len(times) - 1, 6).round().astype(int))]
        e = F.impact_matrices(result.params, ts)
        K = e.shape[-1]
        off = ~np.eye(K, dtype=bool)
        print(f"{len(impact)} impact parameters (values and standard errors in report.json); "
              "the fitted impact matrix E(t):")
        print(f"{'t':>10} {'mean diag':>11} {'mean off-diag':>14}")
        for t, m in zip(ts, e):
            print(f"{t:10.4g} {_fmt(float(np.trace(m)) / K)} {_fmt(float(m[off].mean()), 14)}")
    if 0 < len(rest) <= 16:
        _print_parameters(rest)
    elif rest:
        print(f"{len(rest)} more free parameters ({', '.join(sorted({n.split('[')[0] for n in rest}))}) "
              "in report.json")
    if setup.knots is not None:
        print("knot times: " + ", ".join(f"{t:g}" for t in setup.knots))
    g = _goodness_summary(report["goodness"])
    print(f"{'':<9} {'R^2':>9}" + (f" {'NLL/value':>11}" if "nll_fit" in g else ""))
    for row, key in (("fit", "fit"), ("held-out", "heldout")):
        line = f"{row:<9} {_fmt(g[f'r2_{key}'], 9)}"
        if "nll_fit" in g:
            line += f" {_fmt(g[f'nll_{key}'])}"
        print(line)
    if closed is not None:
        parts = [f"closed form ({closed['estimator']} inversion):"]
        if "A_hat_final" in closed:
            parts.append(f"A_hat(end) = {closed['A_hat_final']:.4g}, B_hat(end) = {closed['B_hat_final']:.4g}")
        if "tail_index" in closed:
            parts.append(f"tail index {closed['tail_index']:.4g}")
        pl = closed.get("power_law_alpha_hat")
        if pl is not None:
            parts.append(f"alpha_hat ~ c (1 + t/t0)^-r: c = {pl['c']:.3g} +- {pl['c_stderr']:.2g}, "
                         f"r = {pl['r']:.3g} +- {pl['r_stderr']:.2g}")
        for step, msg in closed["errors"].items():
            parts.append(f"{step} failed: {msg.splitlines()[0]}")
        print(" ".join(parts[:1]) + " " + "; ".join(parts[1:]))


def _fit(args) -> int:
    from .io import read_log
    from .io._fit_config import build_fit, load_fit_config

    start = time.perf_counter()
    try:
        config = load_fit_config(args.config)
        log = read_log(args.log)
        # every check on config, log and model before any fit
        setup = build_fit(config, log, source=str(args.log))
        out = check_output_dir(args.out)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"lesde fit: {e}", file=sys.stderr)
        return 2
    with output_lock(out, "lesde fit"):  # this fit's outputs replace the old ones
        remove_stale(out, [COMPLETE_MARKER, "report.json", "fit.nc", "fit.png", "closed_form.png"])
        return _fit_into(args, config, log, setup, out, start)


def _fit_into(args, config, log, setup, out: Path, start: float) -> int:
    import yaml

    from .io._results import _atomic_write
    from .plot import _pyplot, plot_closed_form, plot_fit

    m = config.model
    times = np.asarray(setup.loss.times)
    fitted = int((times <= setup.fit_until).sum())
    print(
        f"lesde {__version__}: lesde fit of an {'LE-ODE' if m.kind == 'leode' else 'LE-SDE'} "
        f"({m.gradient!r} gradient, {m.impact.form} impact, {m.impact.time} in time) by "
        f"{config.loss.kind} loss to {args.log}: K = {log.sizes['class']}, "
        f"{setup.log.sizes['trial']} trials, {log.sizes['step']} steps; fit window "
        f"t <= {setup.fit_until:g} ({fitted} of {times.size} data times"
        f"{'' if setup.heldout else '; no held-out window'}); config: {args.config}"
    )
    if setup.knots_beyond_data:
        print("knots beyond the fit window's data times (their values extrapolate the "
              "neighbouring piece): " + ", ".join(f"{t:g}" for t in setup.knots_beyond_data))
    marker = out / COMPLETE_MARKER
    try:
        estimates, closed = closed_form_estimates(setup.log, config)
        try:
            result, report = run_fit(setup, config, progress=not args.quiet)
        except ValueError as e:  # e.g. a loss that is not finite at the starting parameters
            print(f"lesde fit: the fit failed: {e}", file=sys.stderr)
            return 1
        complete = result.stopped != "interrupted"
        ds = fit_dataset(setup, result, report["goodness"], estimates)
        ds.attrs["config"] = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        ds.attrs["log"] = str(args.log)
        full = {
            "complete": complete,
            "stopped": result.stopped,
            "converged": result.stopped == "converged",
            "log": str(args.log),
            "fit_until": setup.fit_until,
            "heldout_window": setup.heldout,
            "knots": setup.knots,
            "knots_beyond_data": list(setup.knots_beyond_data),
            "fit": report,
            "closed_form": closed,
            "config": config.model_dump(mode="json"),
            **versions(),
        }
        write_json(out / "report.json", full)
        _atomic_write(out / "fit.nc", lambda p: ds.to_netcdf(p, engine="scipy"))
        if not complete:
            print(
                f"lesde fit: interrupted at step {report['steps_run']} of "
                f"{config.optimizer.steps}; kept the best parameters so far (step "
                f"{report['best_step']}, loss {report['best_loss']:.4g}) without standard "
                f"errors in {out}/report.json and fit.nc, marked \"complete\": false (no "
                "summary.json); rerunning the same command starts the fit again",
                file=sys.stderr,
            )
            return INTERRUPTED
        written = ["report.json", "fit.nc", "fit.png"]
        plt = _pyplot()
        plt.close(plot_fit(ds, path=out / "fit.png"))  # PNGs are written atomically by _save
        if "A_hat" in ds.data_vars:
            plt.close(plot_closed_form(ds, path=out / "closed_form.png"))
            written.append("closed_form.png")
        _print_fit_table(setup, result, report, closed)
        elapsed = time.perf_counter() - start
        summary = {
            "loss": report["loss"],
            "best_loss": report["best_loss"],
            "stopped": report["stopped"],
            "converged": full["converged"],
            "steps_run": report["steps_run"],
            **_goodness_summary(report["goodness"]),
            "tail_index": None if closed is None else closed.get("tail_index"),
            "wall_time_s": round(elapsed, 3),
            "version_lesde": __version__,
        }
        write_json(marker, summary)
    except KeyboardInterrupt:
        marker.unlink(missing_ok=True)
        print(
            "lesde fit: interrupted before the fit had parameters to keep or while writing "
            f"its outputs; {out}/ holds no complete run (no summary.json); rerunning the "
            "same command starts again",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(
        f"loss {report['best_loss']:.4g} ({report['loss']}), stopped: {report['stopped']} after "
        f"{report['steps_run']} steps; {elapsed:.1f} s; results in {out}/ "
        f"({', '.join(written)}, summary.json)"
    )
    if result.stopped == "nonfinite":
        print(
            f"lesde fit: the loss became non-finite at step {report['steps_run'] - 1}; the "
            f"outputs hold the best finite parameters (step {report['best_step']}) without "
            "standard errors, marked \"converged\": false",
            file=sys.stderr,
        )
        return 1
    return 0


def _plot(args) -> int:
    from .io import read_sweep
    from .plot import _grid_dims, plot_load_curves, plot_phase_diagram

    path = Path(args.result)
    out = Path(args.out) if args.out else path.with_suffix(".png")
    try:
        ds = read_sweep(path)
        check_output_file(out)
    except ValueError as e:
        print(f"lesde plot: {e}", file=sys.stderr)
        return 2
    written = [out]
    try:
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
        prog="lesde", description="Simulate locally elastic SDEs of training dynamics.",
        epilog="Exit status: 0 complete, every member healthy; 1 complete, but members "
        "flagged (diverged, inaccurate: their results are NaN) or the run failed; 2 a bad "
        "config, input or output location (refused before any compute) or an output "
        "folder that another lesde command is writing; 130 interrupted (Ctrl-C): no "
        "summary.json, what was kept is printed. Every command takes --x64.",
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
    p.add_argument("--chunk-size", type=_positive_int, default=None, help="members per compiled call")
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
        "fit",
        help="fit an LE-ODE / LE-SDE to a trajectory log through the solver",
        description="Fit an LE-ODE or LE-SDE (configs/fit_*.yaml) to a trajectory log (.nc "
        "from `lesde train`, or the LE-SDE authors' .csv): closed-form estimates, the "
        "gradient fit with standard errors, the prediction of the held-out later window. "
        "Writes report.json, fit.nc, fit.png, closed_form.png and summary.json (last) to "
        "--out. Exit status 2: an invalid config, log or --out (nothing computed); 1: the "
        "fit failed (nothing written) or its loss became non-finite (outputs marked "
        "\"converged\": false); 130: interrupted (report.json and fit.nc marked "
        "\"complete\": false, no summary.json).",
    )
    p.add_argument("log", help="trajectory log (.nc or .csv)")
    p.add_argument("--config", required=True, help="YAML fit config (see configs/fit_*.yaml)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_fit)
    p = sub.add_parser(
        "plot",
        help="draw the phase diagram of a sweep result (and its load-curve grid for a "
        "spring-block sweep)",
    )
    p.add_argument("result", help="a sweep.nc file")
    p.add_argument("--out", default=None, help="PNG path (default: next to the result)")
    p.add_argument("--metrics", nargs="+", default=None, help="metrics to draw")
    p.set_defaults(func=_plot)
    for command in sub.choices.values():
        command.add_argument(
            "--x64", action="store_true",
            help="compute in double precision (float64; default float32): for long horizons "
            "or growing states whose float32 results are flagged inaccurate",
        )
    args = parser.parse_args(argv)
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", bool(args.x64) or old)
    try:
        return args.func(args)
    except OutputError as e:  # e.g. another run holds the output folder
        print(f"lesde {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lesde {args.command}: interrupted; no result was completed", file=sys.stderr)
        return INTERRUPTED
    finally:
        jax.config.update("jax_enable_x64", old)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
