"""Cost of the separation fuzziness D and NC1 at a realistic size, against the dense
p x p pseudo-inverse formula measured in the same run.

The job: N = 50,000 random features (standard normal) in p = 512 dimensions, K = 100
balanced classes (500 samples each), float32.

Timed (medians of --repeats runs, after compilation):
- `separation_fuzziness` and `nc1` under `jax.jit` (features and labels traced): the
  thin-SVD formula, O(N p K);
- the same public functions called eagerly (what a user typing them gets: host-side
  validation of the concrete input, including the NaN scan, plus the compiled core);
- the dense reference, jitted: Sigma_W = Z^T Z / N and Sigma_B (p x p), then
  Tr(Sigma_W pinv(Sigma_B)) with `jnp.linalg.pinv` (O(N p^2 + p^3)).
The script checks that the fast and dense values agree before timing.

Run it on a quiet machine: on a 2-core machine shared with another busy process, every
LAPACK call (the K x p SVD here, the pinv of the reference) was seen to take ~1.5 s
instead of ~5 ms, through OpenBLAS's thread pool; OPENBLAS_NUM_THREADS=1 avoids that. The
load average and the thread-count environment variables are recorded with the figures.

Usage: python benchmarks/bench_metrics.py [--repeats 7] [--out benchmarks/results/metrics.json]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lesde import metrics

sys.path.insert(0, str(Path(__file__).parent))
from _reference import summary, timeit, write_result  # noqa: E402

N, P, K = 50_000, 512, 100


def data():
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal((N, P), dtype=np.float32))
    y = jnp.asarray(np.repeat(np.arange(K), N // K), jnp.int32)
    return h, y


@jax.jit
def dense_fuzziness(h, y):
    """Tr(Sigma_W pinv(Sigma_B)) from the p x p matrices (the textbook formula)."""
    counts = jax.ops.segment_sum(jnp.ones(h.shape[0], h.dtype), y, num_segments=K)
    means = jax.ops.segment_sum(h, y, num_segments=K) / counts[:, None]
    mu = jnp.mean(h, axis=0)
    z = h - means[y]
    sw = z.T @ z / h.shape[0]
    c = means - mu
    sb = (c * (counts / h.shape[0])[:, None]).T @ c
    return jnp.trace(sw @ jnp.linalg.pinv(sb))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics.json"))
    a = ap.parse_args(argv)
    load_before = os.getloadavg()
    h, y = data()

    fns = {
        "D_jit": jax.jit(lambda h, y: metrics.separation_fuzziness(h, y, K)),
        "nc1_jit": jax.jit(lambda h, y: metrics.nc1(h, y, K)),
        "D_eager": lambda h, y: metrics.separation_fuzziness(h, y, K),
        "nc1_eager": lambda h, y: metrics.nc1(h, y, K),
        "dense_pinv_jit": dense_fuzziness,
    }
    first_s, values = {}, {}
    for name, f in fns.items():
        t = time.perf_counter()
        values[name] = float(jax.block_until_ready(f(h, y)))
        first_s[name] = time.perf_counter() - t
    d_fast, d_dense = values["D_jit"], values["dense_pinv_jit"]
    rel = abs(d_fast - d_dense) / abs(d_dense)
    print(f"D fast {d_fast:.6g}, dense {d_dense:.6g}, rel. diff {rel:.2e}; NC1 {values['nc1_jit']:.6g}")
    if rel > 1e-3 or abs(values["nc1_jit"] * K - d_fast) > 1e-4 * d_fast:
        raise SystemExit("fast and dense formulas disagree")

    runs = {name: [] for name in fns}
    for _ in range(a.repeats):  # interleaved, so that machine noise hits all alike
        for name, f in fns.items():
            runs[name] += timeit(f, (h, y), 1)
    result = {
        "job": {"N": N, "p": P, "K": K, "per_class": N // K, "dtype": str(h.dtype),
                "features": "standard normal", "labels": "balanced"},
        "timings": {k: summary(v) for k, v in runs.items()},
        "speedup_D_jit_over_dense": statistics.median(runs["dense_pinv_jit"]) / statistics.median(runs["D_jit"]),
        "first_call_s (compile + run)": first_s,
        "values": values,
        "rel_diff_D_fast_vs_dense": rel,
        "repeats": a.repeats,
        "load_average_before": load_before,
    }
    write_result(result, a.out, ["timings", "speedup_D_jit_over_dense"])


if __name__ == "__main__":
    main()
