"""Command line: `lesde simulate`, `lesde sweep`, `lesde spring`, `lesde plot`."""

import argparse
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
