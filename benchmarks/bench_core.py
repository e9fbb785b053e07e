"""Forward and gradient cost of the LE-SDE solve against a hand-written lax.scan.

The reference job: softmax-CE model, K = 10 classes, n = 100 samples per class, p = K,
independent noise, 1000 Euler steps, 64 configurations (alpha, beta, sigma) vmapped.
Both implementations draw step i's noise from fold_in(key, i), so they compute the same
trajectories; the script checks that they agree before timing.

Timed (medians of --repeats runs, after compilation):
- forward: final states of all 64 members;
- gradient: d/d alpha of the summed final training loss, reverse mode.

Usage: python benchmarks/bench_core.py [--repeats 7] [--out benchmarks/results/core.json]
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

sys.path.insert(0, str(Path(__file__).parent))
from _reference import scan_member_fn, summary, timeit, write_result  # noqa: E402

K, N_PER, STEPS, BATCH, DT = 10, 100, 1000, 64, 0.05
T1 = STEPS * DT


def params(batch):
    rng = np.random.default_rng(0)
    alpha = jnp.asarray(rng.uniform(0.5, 2.0, batch))
    beta = jnp.asarray(rng.uniform(0.0, 1.0, batch))
    sigma = jnp.asarray(rng.uniform(0.01, 0.1, batch))
    keys = jax.random.split(jax.random.key(1), batch)
    return alpha, beta, sigma, keys


classes = lesde.Classes.balanced(K, N_PER)
labels = classes.labels


def lesde_member(alpha, beta, sigma, key):
    model = lesde.LESDE(
        lesde.LocallyElastic(alpha, beta), "ce", classes, noise=lesde.Noise(independent=sigma)
    )
    return lesde.simulate(model, t1=T1, dt=DT, key=key).ys[-1]


scan_member = scan_member_fn(classes, STEPS, DT)


def loss_of(member):
    def total_loss(alpha, beta, sigma, keys):
        xs = jax.vmap(member)(alpha, beta, sigma, keys)
        return jnp.sum(jax.vmap(lambda x: lesde.metrics.cross_entropy(x, labels))(xs))

    return jax.jit(jax.grad(total_loss))


def compile_and_time(fn, args, repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t
    return first, timeit(fn, args, repeats)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "core.json"))
    a = ap.parse_args(argv)
    args = params(a.batch)

    fwd = {"lesde": jax.jit(jax.vmap(lesde_member)), "scan": jax.jit(jax.vmap(scan_member))}
    grad = {"lesde": loss_of(lesde_member), "scan": loss_of(scan_member)}

    x_l, x_s = (np.asarray(f(*args)) for f in fwd.values())
    agree = float(np.max(np.abs(x_l - x_s)))
    g_l, g_s = (np.asarray(g(*args)) for g in grad.values())
    grad_agree = float(np.max(np.abs(g_l - g_s)) / np.max(np.abs(g_s)))
    print(f"max |lesde - scan| of final states: {agree:.2e}; gradient rel. diff {grad_agree:.2e}")

    compile_s, runs = {}, {}
    for name in ("lesde", "scan"):
        compile_s[f"forward_{name}"], runs[f"forward_{name}"] = compile_and_time(
            fwd[name], args, 1
        )
        compile_s[f"gradient_{name}"], runs[f"gradient_{name}"] = compile_and_time(
            grad[name], args, 1
        )
    # Interleave the timed runs so that machine noise hits both alike.
    for _ in range(a.repeats - 1):
        for key in runs:
            kind, name = key.split("_")
            runs[key] += timeit((fwd if kind == "forward" else grad)[name], args, 1)

    fwd_ratios = [x / y for x, y in zip(runs["forward_lesde"], runs["forward_scan"])]
    grad_ratios = [x / y for x, y in zip(runs["gradient_lesde"], runs["gradient_scan"])]
    result = {
        "job": {
            "model": "ce", "K": K, "n_per_class": N_PER, "p": K, "steps": STEPS,
            "batch": a.batch, "dt": DT, "solver": "euler", "noise": "independent",
        },
        "timings": {k: summary(v) for k, v in runs.items()},
        "first_call_s (compile + run)": compile_s,
        "ratio_forward_lesde_over_scan": {
            "median": statistics.median(fwd_ratios), "min": min(fwd_ratios), "max": max(fwd_ratios),
        },
        "ratio_gradient_lesde_over_scan": {
            "median": statistics.median(grad_ratios), "min": min(grad_ratios), "max": max(grad_ratios),
        },
        "compilations_forward_lesde": fwd["lesde"]._cache_size(),
        "max_abs_diff_final_state": agree,
        "rel_diff_gradient": grad_agree,
        "repeats": a.repeats,
    }
    write_result(result, a.out, list(result)[1:6])


if __name__ == "__main__":
    main()
