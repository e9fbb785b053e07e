"""Command line: `lesde simulate [CONFIG.yaml] --out DIR`."""

import argparse
import platform
import sys
import time

import jax
import numpy as np

from . import __version__
from .io import ConfigError, DEFAULT_CONFIG, load_config, write_run
from .metrics import observables
from .solve import simulate, STATUS_NAMES


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
        "versions": {
            "lesde": __version__,
            "jax": jax.__version__,
            "diffrax": __import__("diffrax").__version__,
            "python": platform.python_version(),
        },
        "backend": jax.default_backend(),
    }
    arrays = {"ts": traj.ts, "status": traj.status, **obs}
    out = write_run(args.out, config.model_dump(mode="json"), arrays, summary)
    print(
        f"status: {status}; final loss {summary['final']['loss']:.5g}, accuracy "
        f"{summary['final']['accuracy']:.3f}; {elapsed:.1f} s; results in {out}/"
    )
    return 0 if status == "success" else 1


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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
