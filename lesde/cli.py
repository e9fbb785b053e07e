"""Command line: `lesde simulate [CONFIG.yaml] --out DIR`."""

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
    from .plot import plot_phase_diagram

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
        f"lesde {__version__}: sweep of the '{config.model.gradient}' LE-SDE over "
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
    failed = int((ds["status"] != 0).sum())
    first = ds[s.metrics[0]].mean("seed")
    when = ""
    if "time" in first.dims:
        first = first.isel(time=-1)
        when = f" at t = {float(ds['time'][-1]):g}"
    for dim in first.dims:  # label a zipped dimension by its first parameter's values
        if "+" in dim:
            lead = dim.split("+")[0]
            first = first.assign_coords({dim: ds[lead].values}).rename({dim: f"{lead} (zipped)"})
    print(f"{s.metrics[0]} (mean over seeds){when}:")
    table = first.to_pandas() if first.ndim <= 2 else first.to_dataframe()
    print(table.to_string(float_format="%.4g") if hasattr(table, "to_string") else table)
    print(
        f"{ds.attrs['num_members']} members ({failed} diverged or failed), "
        f"{ds.attrs['wall_time_s_this_run']:.1f} s; results in {args.out}/sweep.nc, "
        f"picture in {png}"
    )
    return 0


def _plot(args) -> int:
    import xarray as xr

    from .plot import plot_phase_diagram

    path = Path(args.result)
    if not path.is_file():
        print(f"lesde plot: no such file: {path}", file=sys.stderr)
        return 2
    with xr.open_dataset(path, engine="scipy") as ds:
        out = Path(args.out) if args.out else path.with_suffix(".png")
        try:
            plot_phase_diagram(ds.load(), metrics=args.metrics, path=out)
        except ValueError as e:
            print(f"lesde plot: {e}", file=sys.stderr)
            return 2
    print(f"written {out}")
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
    p = sub.add_parser("plot", help="draw the phase diagram of a sweep result")
    p.add_argument("result", help="a sweep.nc file")
    p.add_argument("--out", default=None, help="PNG path (default: next to the result)")
    p.add_argument("--metrics", nargs="+", default=None, help="metrics to draw")
    p.set_defaults(func=_plot)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
