"""The cost of locating a phase boundary by the batched bracket search against the grid
of the same resolution, measured in the same run: members solved and wall time.

The job: the identity LE-SDE (K = 3, n = 20 per class, p = K), alpha and beta on the
line alpha + 2 beta = 0 with alpha - beta from -0.05 to 0.25, Euler steps of dt = 1 to
T = 100, two noise levels (sigma = 0.03 and 0.3), 8 seeds per probe; the order
parameter is the mean nearest-class-mean error, the threshold 1/3. The search
(`lesde.boundary.locate_boundary`, bisection) narrows every bracket to `tol`; the grid
(`lesde.sweep`) has points `tol` apart over the same range (`grid_points`), the same
seeds, and locates the crossing by linear interpolation of its seed means. Both are
compiled once before timing (a first, untimed run); the times are medians over
`--repeats` runs. (A wider range would flag the probes at its far end in float32, and
with them their cells: the search measures both ends of every bracket.) The located values of the two methods are reported side by side.

Usage: python benchmarks/bench_boundary.py [--repeats 3] [--tol 0.002]
       [--out benchmarks/results/boundary.json]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import lesde
from lesde.boundary import grid_points, InnerAxis, locate_boundary, OrderParameter
from lesde.metrics import metrics_fn

sys.path.insert(0, str(Path(__file__).parent))
from _reference import summary, write_result  # noqa: E402

K, N_PER, T, DT, SEEDS = 3, 20, 100.0, 1.0, 8
SIGMAS = [0.03, 0.3]
CLASSES = lesde.Classes.balanced(K, N_PER)
FN = metrics_fn(["ncm_error"])
SEGMENT = {"impact.alpha": (-0.05 * 2 / 3, 0.25 * 2 / 3), "impact.beta": (0.05 / 3, -0.25 / 3)}
ORDER = OrderParameter("ncm_error", 1 / 3)


def build(p):
    return lesde.LESDE(
        lesde.LocallyElastic(p["impact.alpha"], p["impact.beta"]), "identity", CLASSES,
        noise=lesde.Noise(independent=p["noise.independent"]),
    )


def counting_build(build, name):
    """`build` wrapped to count the traces of the compiled member function (not the
    concrete probe call, nor the vmapped check of every model before compute)."""
    import jax

    from lesde._checks import recording_checks

    traces = []

    def counted(params):
        if isinstance(params[name], jax.core.Tracer) and not recording_checks():
            traces.append(1)
        return build(params)

    return counted, traces


def grid_crossing(x, mean):
    """The first crossing of the threshold by the piecewise-linear seed means (NaN if none)."""
    s = mean - ORDER.threshold
    i = np.flatnonzero(np.sign(s[:-1]) != np.sign(s[1:]))
    if not i.size:
        return float("nan")
    i = i[0]
    return float(x[i] + (ORDER.threshold - mean[i]) * (x[i + 1] - x[i]) / (mean[i + 1] - mean[i]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tol", type=float, default=0.002)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "boundary.json"))
    a = ap.parse_args(argv)

    inner = InnerAxis(SEGMENT)
    outer = [{"noise.independent": SIGMAS}]
    search_build, search_traces = counting_build(build, "impact.alpha")

    def search():
        return locate_boundary(search_build, inner, outer=outer, order=ORDER, fn=FN, t1=T, dt=DT,
                               tol=a.tol, seeds=SEEDS, progress=False)

    npts = grid_points(inner.hi - inner.lo, a.tol)
    x = np.linspace(inner.lo, inner.hi, npts)
    axes = [{"noise.independent": SIGMAS}, {k: v for k, v in inner.params(x).items()}]
    grid_build, grid_traces = counting_build(build, "impact.alpha")

    def grid():
        return lesde.sweep(grid_build, axes, t1=T, dt=DT, fn=FN, seeds=SEEDS, progress=False)

    results = {}
    for name, fn in (("search", search), ("grid", grid)):
        fn()  # compile
        times, out = [], None
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        results[name] = (out, times)

    ds, t_search = results["search"]
    g, t_grid = results["grid"]
    members_search = int(ds.attrs["members_solved"])
    members_grid = int(g.attrs["num_members"])
    mean = g["ncm_error"].mean("seed").values  # (sigma, x)
    cells = []
    for i, sigma in enumerate(SIGMAS):
        c = ds.isel(noise_independent=i)
        cells.append({
            "sigma": sigma,
            "search_critical": float(c["critical"]),
            "search_interval": [float(c["critical_low"]), float(c["critical_high"])],
            "search_status": int(c["cell_status"]),
            "grid_critical": grid_crossing(x, mean[i]),
        })
    result = {
        "job": f"identity LE-SDE, K = {K}, n = {N_PER}, T = {T:g}, dt = {DT:g}, {SEEDS} seeds, "
               f"sigma in {SIGMAS}, alpha - beta in [{inner.lo:.3g}, {inner.hi:.3g}], "
               f"mean ncm_error = 1/3, tol {a.tol:g}",
        "tol": a.tol,
        "grid_points": npts,
        "search_probes_per_cell": int(ds["num_probes"].max()),
        "members": {"search": members_search, "grid": members_grid,
                    "ratio": round(members_grid / members_search, 2)},
        "wall_time": {"search": summary(t_search), "grid": summary(t_grid),
                      "ratio": round(statistics.median(t_grid) / statistics.median(t_search), 2)},
        "compilations": {"search": len(search_traces), "grid": len(grid_traces)},
        "repeats": a.repeats,
        "cells": cells,
    }
    write_result(result, a.out, ["members", "wall_time", "cells"])


if __name__ == "__main__":
    main()
