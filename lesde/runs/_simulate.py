"""`lesde simulate`: one LE-SDE run from a config."""

import time
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from .. import __version__
from ..io import check_output_dir, output_lock, remove_stale, versions, write_run
from ..io._results import COMPLETE_MARKER
from ..metrics import observables
from ..solve import simulate, STATUS_NAMES
from ._cf import describe
from ._config import DEFAULT_CONFIG, load_config
from ._report import checked, flagged_warning, REFUSED, warn


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


def trajectory_dataset(ts, status, obs: dict):
    """The observables of one run (`run_simulation`) as the Dataset of trajectory.nc:
    `loss`, `accuracy`, `min_margin`, `within_class_trace` over `time`, `class_means`
    (time, class, feature), and the run's `status` (a flag)."""
    data = {k: ("time", np.asarray(obs[k])) for k in ("loss", "accuracy", "min_margin", "within_class_trace")}
    data["class_means"] = (("time", "class", "feature"), np.asarray(obs["class_means"]))
    data["status"] = ((), np.asarray(status, dtype=np.int32))
    return describe(xr.Dataset(data, coords={"time": np.asarray(ts, dtype=np.float64)}))


def simulate_command(config: str | Path | None, out: str | Path, *, progress: bool = True) -> int:
    """`lesde simulate`: solve the run of the YAML file `config` (None: the embedded
    default) and write config.yaml, trajectory.nc and summary.json (last: its presence
    marks a complete run) to the folder `out`. Prints a table of the observables.

    **Returns:** the exit status: 0 success, 1 the member is flagged, 2 a bad config or
    output folder (nothing computed).
    """
    source = config

    def prepare():  # the config's model is checked by LESDE itself as it is read
        return load_config(source), check_output_dir(out)

    ready = checked("simulate", prepare)
    if ready is None:
        return REFUSED
    config, out = ready
    with output_lock(out, "lesde simulate"):
        remove_stale(out, [COMPLETE_MARKER])  # being replaced: no longer complete
        return _simulate_into(config, source, out, progress)


def _simulate_into(config, source, out: Path, progress: bool) -> int:
    source = source or f"embedded default ({DEFAULT_CONFIG.name})"
    m, s = config.model, config.solve
    steps = round(s.t1 / s.dt)
    print(
        f"lesde {__version__}: LE-SDE '{m.gradient}' model, K = {m.num_classes}, "
        f"N = {sum(m.class_sizes or [m.per_class] * m.num_classes)}, {steps} {s.solver} "
        f"steps of dt = {s.dt}; config: {source}"
    )
    start = time.perf_counter()
    model, traj = run_simulation(config, progress=progress)
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
    write_run(
        out, config.model_dump(mode="json"), trajectory_dataset(traj.ts, traj.status, obs), summary,
        title=f"lesde simulate: one run of the LE-SDE '{m.gradient}' model",
    )
    print(
        f"status: {status}; final loss {summary['final']['loss']:.5g}, accuracy "
        f"{summary['final']['accuracy']:.3f}; {elapsed:.1f} s; results in {out}/"
    )
    warn(flagged_warning("simulate", traj.status, "run"))
    return 0 if status == "success" else 1

