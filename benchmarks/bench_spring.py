"""Wall time of a 50 x 50 friction x noise sweep of the spring-block map (Variant A)
against a NumPy loop over cells (the authors' approach), measured in the same run.

The job: `lesde.SpringBlockMap` at the authors' setting (L = 7, k = 1, y = 1, eta = 0.01,
mu_back = mu_fwd, displacement control), 10^4 map steps from rest, a 50 x 50 grid of
mu_fwd in [0, 0.3] (linear) x noise s in [0.01, 1] (log), 8 seeds per cell: 20,000
members, 2 x 10^8 member-steps. Kept per member: curvature, non-uniformity and gains at
the last step. Throughput is in member-steps per second.

- lesde: the whole `lesde.sweep` (default chunk size), median/min/max of --repeats runs
  after a first call. The first call's compilation (tracing, lowering and XLA compile,
  summed from `jax.monitoring` events) is reported apart; later calls reuse the compiled
  function (the script counts the traces of `build`).
- NumPy: a plain loop over cells and, within a cell, over steps, in float64, the 8 seeds
  of a cell vectorised together as one (8, L) array, the noise drawn step by step from a
  `numpy.random.Generator`. The whole grid would take about 10 minutes a run, so only a
  --numpy-side x --numpy-side sub-grid of cells spread over the grid is timed (median of
  --repeats, interleaved with the lesde runs) and its time per cell is scaled to all cells.
- Correctness, checked before timing (the script fails if the reference is wrong): on
  cells with asymmetric friction (mu_back != mu_fwd) and noise 0, NumPy and lesde final
  positions agree to 1e-6 after 50 steps and to 5e-5 after 10^4 steps (float32 rounding
  of lesde: 1.6e-5 measured, 2e-16 with JAX_ENABLE_X64=1); with noise, the seed means
  of the final gains (64 seeds each, different random streams) agree within 5 standard
  errors. After timing, the timed NumPy cells' gains are compared the same way with the
  sweep's (8 seeds, within 7 standard errors).

Usage: python benchmarks/bench_spring.py [--repeats 3] [--numpy-side 5]
       [--out benchmarks/results/spring.json]
(a smoke-size run, seconds: --side 6 --steps 500 --repeats 1 --numpy-side 2 --out spring_smoke.json)
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

import lesde
from lesde.metrics import METRIC_DIMS, SPRING_METRICS, metrics_fn

sys.path.insert(0, str(Path(__file__).parent))
from _reference import counting_build, summary, write_result  # noqa: E402

L, K, ETA, LOAD = 7, 1.0, 0.01, 1.0  # the authors' setting (SpringBlockMap defaults)
STEPS, SIDE, SEEDS = 10_000, 50, 8
MU_RANGE, NOISE_RANGE = (0.0, 0.3), (0.01, 1.0)
FN = metrics_fn(["curvature", "nonuniformity", "gains"], SPRING_METRICS)
GAINS = metrics_fn(["gains"], SPRING_METRICS)


def build(p):
    return lesde.SpringBlockMap(L, mu_fwd=p["mu_fwd"], noise=p["noise"])


def build_check(p):
    return lesde.SpringBlockMap(L, mu_fwd=p["mu_fwd"], mu_back=p["mu_back"], noise=p["noise"])


def numpy_cell(mu_fwd, mu_back, noise, steps, seeds, rng):
    """Final positions (seeds, L) of the map, the seeds vectorised, a plain step loop:
    F = k (x_{l+1} - 2 x_l + x_{l-1}) + s xi, th = mu_back if F < 0 else mu_fwd,
    x += eta Phi(F, th), Phi = 0 if |F| <= th else F - th sign(F); x_0 = 0, x_{L+1} = y."""
    xp = np.zeros((seeds, L + 2))
    xp[:, -1] = LOAD
    x = xp[:, 1:-1]  # a view: updating x updates the padded array
    for _ in range(steps):
        force = K * (xp[:, 2:] - 2.0 * x + xp[:, :-2]) + noise * rng.standard_normal((seeds, L))
        th = np.where(force < 0, mu_back, mu_fwd)
        x += ETA * np.where(np.abs(force) <= th, 0.0, force - th * np.sign(force))
    return x.copy()


def gains_of(positions):
    return np.diff(positions, axis=-1, prepend=0.0)


def max_z(a, b):
    """Largest |difference of seed means| / standard error over the trailing axis (blocks)
    and any leading ones; a, b are (..., seeds, L)."""
    se2 = a.var(axis=-2, ddof=1) / a.shape[-2] + b.var(axis=-2, ddof=1) / b.shape[-2]
    z = np.abs(a.mean(axis=-2) - b.mean(axis=-2)) / np.sqrt(se2 + 1e-10)
    return float(z.max())


def check_reference(steps: int, seeds: int = 64) -> dict:
    """NumPy against lesde: noise-free cells to float32 rounding, noisy cells in law."""
    early = min(50, steps)
    mu_f, mu_b = [0.0, 0.05, 0.1, 0.3], [0.0, 0.1, 0.05, 0.2]
    noises = [0.0, 0.1, 1.0]
    grid = [{"mu_fwd": mu_f, "mu_back": mu_b}, {"noise": noises}]
    horizons = sorted({early, steps})
    # one sweep per horizon: `sweep(ts=...)` is not used, it rejects discrete maps
    g = []
    for n in horizons:
        ds = lesde.sweep(build_check, grid, t1=n, dt=1, fn=GAINS, seeds=seeds,
                         progress=False, metric_dims=METRIC_DIMS)
        assert (ds["status"].values == 0).all(), "lesde check sweep: a member failed"
        g.append(ds["gains"].values)  # (mu pair, noise, seed, block)
    g = np.stack(g, axis=-2)  # (mu pair, noise, seed, horizon, block)
    pos = np.cumsum(g.astype(np.float64), axis=-1)
    det_err, z = [0.0] * len(horizons), 0.0
    for i, (f, b) in enumerate(zip(mu_f, mu_b)):
        for j, s in enumerate(noises):
            rng = np.random.default_rng([1, i, j])
            if s == 0:
                for t, n in enumerate(horizons):
                    ref = numpy_cell(f, b, s, n, 1, rng)[0]
                    det_err[t] = max(det_err[t], float(np.abs(pos[i, j, :, t] - ref).max()))
            else:
                ref = gains_of(numpy_cell(f, b, s, steps, seeds, rng))
                z = max(z, max_z(g[i, j, :, -1].astype(np.float64), ref))
    for n, err, tol in zip(horizons, det_err, (1e-6, 5e-5)[-len(horizons):]):
        assert err <= tol, (
            f"noise-free cells: NumPy and lesde positions differ by {err:.3g} after {n} steps")
    assert z <= 5.0, f"noisy cells: NumPy and lesde mean gains differ by {z:.2f} standard errors"
    return {"noise_free_max_abs_position_difference (by steps)": dict(zip(horizons, det_err)),
            "noisy_max_z_mean_gains (64 seeds)": z,
            "cells": {"mu_fwd": mu_f, "mu_back": mu_b, "noise": noises}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--numpy-side", type=int, default=5,
                    help="time a NUMPY_SIDE x NUMPY_SIDE sub-grid of cells in NumPy")
    ap.add_argument("--side", type=int, default=SIDE)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "spring.json"))
    a = ap.parse_args(argv)
    load_at_start = os.getloadavg()

    check = check_reference(a.steps)

    mu = np.linspace(*MU_RANGE, a.side)
    noise = np.geomspace(*NOISE_RANGE, a.side)
    grid = [{"mu_fwd": mu}, {"noise": noise}]
    cells = a.side * a.side
    members = cells * SEEDS
    member_steps = members * a.steps
    sub = np.unique(np.round(np.linspace(0, a.side - 1, a.numpy_side)).astype(int))
    timed = [(i, j) for i in sub for j in sub]

    counted_build, traces = counting_build(build, "mu_fwd")

    def run_sweep():
        return lesde.sweep(counted_build, grid, t1=a.steps, dt=1, fn=FN, seeds=SEEDS,
                           progress=False, metric_dims=METRIC_DIMS)

    numpy_out = {}

    def run_numpy():
        for i, j in timed:
            rng = np.random.default_rng([0, i, j])
            numpy_out[i, j] = numpy_cell(mu[i], mu[i], noise[j], a.steps, SEEDS, rng)

    compile_events = []

    def listen(event, duration, **kwargs):
        if event.startswith("/jax/core/compile/"):
            compile_events.append((event.rsplit("/", 1)[-1], duration))

    jax.monitoring.register_event_duration_secs_listener(listen)
    t = time.perf_counter()
    ds = run_sweep()
    first_s = time.perf_counter() - t
    jax.monitoring.unregister_event_duration_listener(listen)
    compile_s = {}
    for name, d in compile_events:
        compile_s[name] = compile_s.get(name, 0.0) + d
    traces_first = len(traces)

    runs = {"lesde": [], "numpy_timed_cells": []}
    for _ in range(a.repeats):  # interleaved, so machine noise hits both alike
        t = time.perf_counter()
        ds = run_sweep()
        runs["lesde"].append(time.perf_counter() - t)
        t = time.perf_counter()
        run_numpy()
        runs["numpy_timed_cells"].append(time.perf_counter() - t)

    assert (ds["status"].values == 0).all(), "lesde sweep: a member failed"
    g = ds["gains"].values  # (mu_fwd, noise, seed, block)
    z_timed = max(max_z(g[i, j].astype(np.float64), gains_of(numpy_out[i, j]))
                  for i, j in timed)
    assert z_timed <= 7.0, (
        f"timed cells: NumPy and lesde mean gains differ by {z_timed:.2f} standard errors")

    per_cell = [t / len(timed) for t in runs["numpy_timed_cells"]]
    numpy_all = [c * cells for c in per_cell]
    ratio = [n / w for n, w in zip(numpy_all, runs["lesde"])]
    lesde_med = statistics.median(runs["lesde"])
    numpy_med = statistics.median(numpy_all)
    result = {
        "job": {"model": "SpringBlockMap (Variant A)", "L": L, "stiffness": K, "eta": ETA,
                "load": LOAD, "mu_back": "= mu_fwd", "steps": a.steps,
                "grid": [a.side, a.side], "mu_fwd": [float(mu[0]), float(mu[-1]), "linear"],
                "noise": [float(noise[0]), float(noise[-1]), "log"], "seeds_per_cell": SEEDS,
                "members": members, "member_steps": member_steps,
                "metrics": ["curvature", "nonuniformity", "gains"],
                "lesde_chunk_size": ds.attrs["chunk_size"], "lesde_dtype": "float32",
                "numpy": "loop over cells, then over steps; the 8 seeds of a cell vectorised "
                         "as one (8, L) float64 array; noise drawn per step",
                "numpy_cells_timed": len(timed),
                "numpy_timed_cells (mu_fwd index, noise index)": [list(map(int, c))
                                                                 for c in timed]},
        "timings_s": {
            "lesde (whole sweep, after the first call)": summary(runs["lesde"]),
            f"numpy (all {cells} cells, EXTRAPOLATED from {len(timed)} timed cells)":
                summary(numpy_all),
            f"numpy per cell ({SEEDS} seeds, {len(timed)} cells timed)": summary(per_cell),
        },
        "speedup_lesde_over_numpy (numpy extrapolated)": {
            "median": statistics.median(ratio), "min": min(ratio), "max": max(ratio)},
        "throughput_member_steps_per_s (median)": {
            "lesde": member_steps / lesde_med, "numpy": member_steps / numpy_med},
        "lesde_first_call": {
            "total_s (compile + run)": first_s,
            "compile_s (trace + lower + XLA compile, jax.monitoring)": sum(compile_s.values()),
            "compile_s by phase": compile_s,
            "first_minus_median_run_s": first_s - lesde_med},
        "lesde_compilations (traces of build: first call, all later calls)":
            [traces_first, len(traces) - traces_first],
        "correctness": {**check, "timed_cells_max_z_mean_gains (8 seeds)": z_timed},
        "repeats": a.repeats,
        "load_average_1_5_15min_at_start": load_at_start,
    }
    write_result(result, a.out, list(result)[1:6])
    print()
    print(f"{'':34s}{'median':>10s}{'min':>10s}{'max':>10s}")
    rows = [("lesde sweep, run (s)", runs["lesde"]),
            (f"numpy, {cells} cells EXTRAP. (s)", numpy_all),
            (f"numpy per cell, {len(timed)} timed (s)", per_cell),
            ("speed-up lesde / numpy", ratio)]
    for name, v in rows:
        print(f"{name:34s}{statistics.median(v):10.4g}{min(v):10.4g}{max(v):10.4g}")
    print(f"lesde first call {first_s:.2f} s, of it compile {sum(compile_s.values()):.2f} s; "
          f"member-steps/s: lesde {member_steps / lesde_med:.3g}, "
          f"numpy {member_steps / numpy_med:.3g} (extrapolated)")


if __name__ == "__main__":
    main()
