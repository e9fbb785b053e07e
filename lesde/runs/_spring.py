"""`lesde spring`: one spring-block model over seeds, with its theory."""

import time
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from .. import __version__
from ..io import check_output_dir, output_lock, remove_stale, versions, write_run
from ..io._results import COMPLETE_MARKER
from ..metrics import load_curve, SHAPES
from ..models import spring_equilibrium, stationary_gains
from ..plot import close, plot_spring_run
from ..solve import simulate, status_counts
from ._cf import describe
from ._config import DEFAULT_SPRING_CONFIG, is_map, load_config, SpringRunConfig
from ._report import checked, flagged_warning, REFUSED, warn


def run_spring(config):
    """Solve the spring-block model of a validated `SpringRunConfig` for `solve.seeds`
    seeds at once (one vmapped computation); return (model, trajectory) with the block
    positions, shape (seeds, num_saves, L), saved at evenly spaced times."""
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


def spring_command(config: str | Path | None, out: str | Path) -> int:
    """`lesde spring`: run the spring-block model of the YAML file `config` (None: the
    authors' map setting) for several seeds and write config.yaml, trajectory.nc (block
    positions), spring.png and summary.json (last) to the folder `out`.

    **Returns:** the exit status: 0 every seed healthy, 1 seeds flagged, 2 a bad config
    or output folder.
    """
    source = config

    def prepare():
        cfg = load_config(source, schema=SpringRunConfig)
        cfg.model.build()  # model-level checks before any compute
        return cfg, spring_theory(cfg), check_output_dir(out)

    ready = checked("spring", prepare)
    if ready is None:
        return REFUSED
    config, theory, out = ready
    with output_lock(out, "lesde spring"):
        remove_stale(out, [COMPLETE_MARKER, "spring.png"])  # replaced: not from this run
        return _spring_into(config, source, theory, out)


def _spring_into(config, source, theory, out: Path) -> int:
    source = source or f"embedded default ({DEFAULT_SPRING_CONFIG.name})"
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
    ds = describe(xr.Dataset(
        {"positions": (("seed", "time", "block"), x), "status": ("seed", status.astype(np.int32))},
        coords={
            "seed": np.arange(x.shape[0]), "time": np.asarray(traj.ts[0], dtype=np.float64),
            "block": np.arange(1, x.shape[-1] + 1),
        },
    ))
    png = out / "spring.png"
    close(plot_spring_run(
        np.asarray(traj.ts[0]), x, theory=theory, path=png,
        time_label="t (map steps)" if theory is not None else "t",
    ))
    write_run(out, config.model_dump(mode="json"), ds, summary, title=f"lesde spring: {config.model.describe()}")
    print(f"{elapsed:.1f} s; results in {out}/ (trajectory.nc, summary.json, {png.name})")
    warn(flagged_warning("spring", status, "seeds"))
    return 0 if summary["status"] == "success" else 1

