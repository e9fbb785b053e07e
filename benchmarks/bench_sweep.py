"""Throughput of a 1024-configuration sweep: lesde.sweep against a Python loop of single
jitted solves and against the hand-written lax.scan (vmapped), measured in the same run.

The job: softmax-CE LE-SDE, K = 10, n = 20 per class (N = 200), p = K, independent noise,
500 Euler steps of dt = 0.1, a 32 x 32 grid over (alpha, sigma), beta = 0.5, one seed.
Throughput is in sample-steps per second (members x N x steps / wall time). The Python
loop is timed on a subset of the members and scaled (its cost per member is constant).

Usage: python benchmarks/bench_sweep.py [--repeats 3] [--out benchmarks/results/sweep.json]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lesde
from lesde.metrics import metrics_fn

sys.path.insert(0, str(Path(__file__).parent))
from _reference import counting_build, scan_member_fn, summary, write_result  # noqa: E402

K, N_PER, STEPS, DT, BETA = 10, 20, 500, 0.1, 0.5
SIDE = 32
CLASSES = lesde.Classes.balanced(K, N_PER)
FN = metrics_fn(["loss"])


def build(p):
    return lesde.LESDE(
        lesde.LocallyElastic(p["alpha"], BETA), "ce", CLASSES,
        noise=lesde.Noise(independent=p["sigma"]),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-members", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sweep.json"))
    a = ap.parse_args(argv)

    axes = [{"alpha": np.linspace(0.0, 2.0, SIDE)}, {"sigma": np.geomspace(0.01, 1.0, SIDE)}]
    grid = lesde.Grid(axes)
    members = grid.num_cells
    cells = np.arange(members)
    p = {k: jnp.asarray(v) for k, v in grid.params(cells).items()}
    keys = jax.vmap(lambda c: lesde.member_key(0, c, 0))(jnp.asarray(cells))
    sample_steps = members * CLASSES.num_samples * STEPS

    counted_build, traces = counting_build(build, "alpha")

    def run_sweep():
        return lesde.sweep(counted_build, grid, t1=STEPS * DT, dt=DT, fn=FN, progress=False)

    scan = jax.jit(jax.vmap(scan_member_fn(CLASSES, STEPS, DT)))
    scan_args = (p["alpha"], jnp.full(members, BETA), p["sigma"], keys)

    @jax.jit
    def single(alpha, sigma, key):
        model = build({"alpha": alpha, "sigma": sigma})
        return lesde.simulate(model, t1=STEPS * DT, dt=DT, key=key, fn=FN).ys["loss"][-1]

    def loop():
        out = [single(p["alpha"][i], p["sigma"][i], keys[i]) for i in range(a.loop_members)]
        return jax.block_until_ready(out)

    first = {}
    for name, fn in (("sweep", run_sweep), ("scan", lambda: scan(*scan_args)), ("loop", loop)):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t
    runs = {"sweep": [], "scan": [], "loop": []}
    for _ in range(a.repeats):  # interleaved, so machine noise hits all alike
        for name, fn in (("sweep", run_sweep), ("scan", lambda: scan(*scan_args)), ("loop", loop)):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            runs[name].append(time.perf_counter() - t)
    runs["loop"] = [t * members / a.loop_members for t in runs["loop"]]
    ratio_scan = [s / w for s, w in zip(runs["scan"], runs["sweep"])]
    ratio_loop = [lp / w for lp, w in zip(runs["loop"], runs["sweep"])]
    result = {
        "job": {"model": "ce", "K": K, "n_per_class": N_PER, "steps": STEPS, "dt": DT,
                "members": members, "grid": [SIDE, SIDE], "loop_members_timed": a.loop_members},
        "timings (whole sweep; loop scaled)": {k: summary(v) for k, v in runs.items()},
        "throughput_sample_steps_per_s (median)": {
            k: sample_steps / statistics.median(v) for k, v in runs.items()
        },
        "sweep_throughput_over_scan": {"median": statistics.median(ratio_scan),
                                       "min": min(ratio_scan), "max": max(ratio_scan)},
        "sweep_speedup_over_python_loop": {"median": statistics.median(ratio_loop),
                                           "min": min(ratio_loop), "max": max(ratio_loop)},
        "sweep_compilations (traces of build over all runs)": len(traces),
        "first_call_s (compile + run)": first,
        "repeats": a.repeats,
    }
    write_result(result, a.out, list(result)[1:7])


if __name__ == "__main__":
    main()
