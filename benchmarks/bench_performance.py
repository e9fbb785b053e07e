"""lesde against the tools a user would otherwise use, and how its cost grows.

One command runs every part and writes `benchmarks/results/performance.json`, the table
`benchmarks/results/performance.md`, and the same table into the documentation's
benchmarks page, docs/benchmarks.md (between the `performance:begin` / `performance:end`
markers):

    python benchmarks/bench_performance.py            # about 25 minutes on 2 CPU cores
    python benchmarks/bench_performance.py --quick    # fewer repeats and points
    python benchmarks/bench_performance.py --parts authors   # one part again, the others kept

Parts (each figure a median of --repeats runs with min and max, after compilation;
compile times apart; ratios between runs interleaved in the same process):
1. The reference LE-SDE job (softmax-CE, K = 10, n = 100 per class, p = K, independent
   noise, 1000 Euler steps, 64 configurations vmapped): lesde; a hand-written
   jax.lax.scan as a user would first write it ((N, p) state, segment sums); the same
   scan written for speed (class-major state, reshape sums); torchsde (if torch and
   torchsde are installed; skipped with a message otherwise). Forward and reverse-mode
   gradient. Agreement is checked first: to float32 rounding where the noise is drawn
   alike (lesde and the tuned scan in lesde's class-major layout; lesde with
   layout='natural' and the first scan), and without noise between lesde and the scan.
2. The noise floor: normal draws per second that the lesde solve consumes, over the
   throughput of a bare jax.random.normal of one step's draws, measured in the same run.
3. The LE-ODE job of the LE-SDE authors (K = 3, projected model, power-law impacts,
   500 trials, 10^4 Euler steps of size 1) in lesde (`simulate_ensemble`, the trials on
   the minor axis of the state; and jax.vmap over `simulate`, for comparison) against a
   plain NumPy loop over trials and steps of the same update (timed on --numpy-trials
   trials, scaled).
4. Scaling: time per step against n per class (K = 10), K (p = K), p (K = 10) and batch
   size, with the exponent of a log-log fit over the points with at least 1/1000 of the
   largest point's work, and the local exponent between the two largest points.
5. Gradient cost: reverse-mode over forward time and XLA's peak memory against the
   number of steps, for three checkpointing choices of diffrax's
   RecursiveCheckpointAdjoint.
On an accelerator, parts 1-2 also report sample-steps per second and the fraction of
the device's streaming memory bandwidth (measured in the same run) the solve reaches.
"""

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import lesde

sys.path.insert(0, str(Path(__file__).parent))
from _reference import (  # noqa: E402
    CompileClock, environment, scan_member_fn, summary, timeit, tuned_scan_member_fn,
)

K, N_PER, STEPS, BATCH, DT = 10, 100, 1000, 64, 0.05
PARTS = ("reference", "noise_floor", "bandwidth", "authors", "scaling", "gradient")
RESULTS = Path(__file__).parent / "results"
DOCS_PAGE = Path(__file__).parent.parent / "docs" / "benchmarks.md"
CLOCK = CompileClock()


def ratio_stats(a: list[float], b: list[float]) -> dict[str, float]:
    r = [x / y for x, y in zip(a, b)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


def interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Compile-and-run each fn once (compile seconds from the clock), then `repeats`
    interleaved timed calls. fns: name -> (callable, args)."""
    compile_s, times = {}, {name: [] for name in fns}
    for name, (fn, args) in fns.items():
        _, _, c, _ = CLOCK.timed(fn, *args)
        compile_s[name] = c
    for _ in range(repeats):
        for name, (fn, args) in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t)
    return compile_s, times


def job_params(batch: int):
    rng = np.random.default_rng(0)
    alpha = jnp.asarray(rng.uniform(0.5, 2.0, batch), jnp.float32)
    beta = jnp.asarray(rng.uniform(0.0, 1.0, batch), jnp.float32)
    sigma = jnp.asarray(rng.uniform(0.01, 0.1, batch), jnp.float32)
    keys = jax.random.split(jax.random.key(1), batch)
    return alpha, beta, sigma, keys


def lesde_member_fn(classes, steps, dt, layout="auto", adjoint=None):
    def member(alpha, beta, sigma, key):
        model = lesde.LESDE(
            lesde.LocallyElastic(alpha, beta), "ce", classes,
            noise=lesde.Noise(independent=sigma),
        )
        return lesde.simulate(
            model, t1=steps * dt, dt=dt, key=key, layout=layout, adjoint=adjoint
        ).ys[-1]

    return member


def grad_of(member, labels):
    def total_loss(alpha, beta, sigma, keys):
        xs = jax.vmap(member)(alpha, beta, sigma, keys)
        return jnp.sum(jax.vmap(lambda x: lesde.metrics.cross_entropy(x, labels))(xs))

    return jax.jit(jax.grad(total_loss))


# --------------------------------------------------------------------------- torchsde
def torchsde_job(batch: int, steps: int, threads: int):
    """The reference job in torchsde (Ito, diagonal noise, Euler, torchsde's default
    Brownian interval), all configurations as one batch: state (batch, N p). Returns
    a callable running it, or the reason it cannot run."""
    try:
        import torch
        import torchsde
    except ImportError as e:
        return None, f"skipped: {e.name} is not installed (pip install torch torchsde)"
    torch.set_num_threads(threads)
    alpha, beta, sigma = (np.asarray(v) for v in job_params(batch)[:3])
    N = K * N_PER
    a = torch.tensor(alpha)[:, None, None]
    b = torch.tensor(beta)[:, None, None]
    s = torch.tensor(sigma)[:, None]
    eye = torch.eye(K)

    class SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            x = y.view(batch, K, N_PER, K)
            gbar = torch.softmax(x, dim=-1).mean(dim=2) - eye
            eg = (a - b) * gbar + b * gbar.sum(dim=1, keepdim=True)
            return (-(eg / K)[:, :, None, :]).expand(batch, K, N_PER, K).reshape(batch, N * K)

        def g(self, t, y):
            return s.expand(batch, N * K)

    sde = SDE()
    gen = torch.Generator().manual_seed(0)
    y0 = 0.05 * torch.randn(batch, N * K, generator=gen)
    ts = torch.tensor([0.0, steps * DT])

    def run():
        with torch.no_grad():
            return torchsde.sdeint(sde, y0, ts, method="euler", dt=DT)[-1]

    versions = {"torch": torch.__version__, "torchsde": torchsde.__version__}
    return (run, versions), None


# ------------------------------------------------------------------------------- parts
def part_reference(a) -> dict:
    classes = lesde.Classes.balanced(K, N_PER)
    args = job_params(a.batch)
    args0 = args[:2] + (jnp.zeros_like(args[2]),) + args[3:]
    fwd = {
        "lesde": jax.jit(jax.vmap(lesde_member_fn(classes, STEPS, DT))),
        "lesde_natural_layout": jax.jit(
            jax.vmap(lesde_member_fn(classes, STEPS, DT, layout="natural"))
        ),
        "scan": jax.jit(jax.vmap(scan_member_fn(classes, STEPS, DT))),
        "scan_tuned": jax.jit(jax.vmap(tuned_scan_member_fn(classes, STEPS, DT))),
    }
    out, first = {}, {}
    for name, f in fwd.items():  # the first call compiles: its compile time is kept
        y, _, first[f"forward_{name}"], _ = CLOCK.timed(f, *args)
        out[name] = np.asarray(y)
    agree = {
        "lesde_vs_scan_tuned (same draws)": float(np.abs(out["lesde"] - out["scan_tuned"]).max()),
        "lesde_natural_vs_scan (same draws)": float(
            np.abs(out["lesde_natural_layout"] - out["scan"]).max()
        ),
        "lesde_vs_scan_noiseless": float(np.abs(
            np.asarray(fwd["lesde"](*args0)) - np.asarray(fwd["scan"](*args0))
        ).max()),
    }
    print("agreement:", agree, flush=True)
    fns = {f"forward_{k}": (f, args) for k, f in fwd.items()}
    _, times = interleaved(fns, a.repeats)
    grads = {
        "lesde": grad_of(lesde_member_fn(classes, STEPS, DT), classes.labels),
        "scan": grad_of(scan_member_fn(classes, STEPS, DT), classes.labels),
        "scan_tuned": grad_of(tuned_scan_member_fn(classes, STEPS, DT), classes.labels),
    }
    g = {}
    for name, f in grads.items():
        y, _, first[f"gradient_{name}"], _ = CLOCK.timed(f, *args)
        g[name] = np.asarray(y)
    agree["gradient lesde_vs_scan_tuned (rel)"] = float(
        np.abs(g["lesde"] - g["scan_tuned"]).max() / np.abs(g["scan_tuned"]).max()
    )
    _, t2 = interleaved({f"gradient_{k}": (f, args) for k, f in grads.items()},
                        max(3, a.repeats // 2))
    times.update(t2)
    compile_s = first

    torch_result = {}
    job, why = torchsde_job(a.batch, a.torch_steps, threads=a.threads)
    if job is None:
        print(f"torchsde {why}", flush=True)
        torch_result = {"status": why}
    else:
        run, versions = job
        run()  # warm-up
        tt = []
        for _ in range(max(3, a.repeats // 2)):
            tt += timeit(run, (), 1)
            jax.block_until_ready(fwd["lesde"](*args))  # interleave with lesde
        scale = STEPS / a.torch_steps
        torch_times = [t * scale for t in tt]
        times["forward_torchsde"] = torch_times
        torch_result = {"status": "ran", "versions": versions, "timed_steps": a.torch_steps,
                        "scaled_to_steps": STEPS, "threads": a.threads}
    res = {
        "job": {"model": "ce", "K": K, "n_per_class": N_PER, "p": K, "steps": STEPS,
                "batch": a.batch, "dt": DT, "solver": "euler", "noise": "independent"},
        "timings": {k: summary(v) for k, v in times.items()},
        "compile_s": compile_s,
        "agreement_max_abs": agree,
        "ratios": {
            "forward lesde / scan": ratio_stats(times["forward_lesde"], times["forward_scan"]),
            "forward lesde / tuned scan": ratio_stats(
                times["forward_lesde"], times["forward_scan_tuned"]),
            "forward lesde natural layout / scan": ratio_stats(
                times["forward_lesde_natural_layout"], times["forward_scan"]),
            "gradient lesde / scan": ratio_stats(times["gradient_lesde"], times["gradient_scan"]),
            "gradient lesde / tuned scan": ratio_stats(
                times["gradient_lesde"], times["gradient_scan_tuned"]),
            "gradient / forward (lesde)": ratio_stats(
                times["gradient_lesde"], times["forward_lesde"][: len(times["gradient_lesde"])]),
        },
        "torchsde": torch_result,
    }
    if "forward_torchsde" in times:
        n = len(times["forward_torchsde"])
        res["ratios"]["forward torchsde / lesde"] = ratio_stats(
            times["forward_torchsde"], times["forward_lesde"][:n])
    draws = a.batch * K * N_PER * K * STEPS
    res["normals_per_s_lesde"] = draws / statistics.median(times["forward_lesde"])
    return res


def part_noise_floor(a, reference: dict) -> dict:
    """Raw jax.random.normal throughput at one step's worth of draws: in a lax.scan of
    200 draws added into a carry (the loop a solve runs, with nothing else in it), and
    as single jitted calls (each pays dispatch and a fresh output buffer). The solve's
    fraction is taken against the higher of the two."""
    n = a.batch * K * N_PER * K
    loop_steps = 200
    key = jax.random.key(0)

    def draws(key):
        def step(x, i):
            return x + jax.random.normal(jax.random.fold_in(key, i), (n,)), None

        return jax.lax.scan(step, jnp.zeros((n,)), jnp.arange(loop_steps))[0]

    fns = {
        "loop of draws": (jax.jit(draws), (key,)),
        "single call": (jax.jit(lambda k: jax.random.normal(k, (n,))), (key,)),
        "single call in (batch, N, p)": (
            jax.jit(lambda k: jax.random.normal(k, (a.batch, K * N_PER, K))), (key,)),
    }
    _, times = interleaved(fns, 3 * a.repeats)
    per_call = {"loop of draws": n * loop_steps}
    rates = {k: per_call.get(k, n) / statistics.median(v) for k, v in times.items()}
    raw = max(rates["loop of draws"], rates["single call"])
    solve = reference["normals_per_s_lesde"]
    return {
        "draws_per_step": n,
        "raw_normals_per_s": rates,
        "solve_normals_per_s": solve,
        "fraction_of_raw": solve / raw,
        "timings": {k: summary(v) for k, v in times.items()},
    }


AUTHORS = {"K": 3, "trials": 500, "steps": 10_000, "alpha": (0.05, 0.5), "beta": (0.02, 0.5)}


def authors_update_numpy(x, steps):
    """The authors' simulator: unit Euler steps of the projected LE-ODE of one trial."""
    Kc = AUTHORS["K"]
    (ca, ra), (cb, rb) = AUTHORS["alpha"], AUTHORS["beta"]
    d = np.eye(Kc) - 1.0 / Kc
    for i in range(steps):
        alpha = ca * (1.0 + i) ** (-ra)
        beta = cb * (1.0 + i) ** (-rb)
        E = (alpha - beta) * np.eye(Kc) + beta
        y = np.sum(d * x, axis=1) * (Kc / (Kc - 1))
        G = -y[:, None] * d
        x = x - E @ G / Kc
    return x


def part_authors(a) -> dict:
    Kc, trials, steps = AUTHORS["K"], AUTHORS["trials"], AUTHORS["steps"]
    (ca, ra), (cb, rb) = AUTHORS["alpha"], AUTHORS["beta"]
    rng = np.random.default_rng(0)
    y0 = rng.normal(0.0, 0.05, (trials, Kc, Kc))
    impact = lesde.LocallyElastic(lesde.PowerLaw(ca, ra), lesde.PowerLaw(cb, rb))
    model = lesde.LEODE(impact, "projected", Kc)

    def ensemble(y0s, layout):
        return lesde.simulate_ensemble(model, y0s, t1=float(steps), dt=1.0, solver="euler",
                                       layout=layout).ys[:, -1]

    # 'auto' stores the 500 trials on the minor axis ((K, K, 500), Euler in a loop);
    # 'vmap' is jax.vmap over lesde.simulate, the batch as (500, K, K)
    fns = {name: jax.jit(lambda y, layout=layout: ensemble(y, layout))
           for name, layout in (("lesde", "auto"), ("lesde_vmap_simulate", "vmap"))}
    y0j = jnp.asarray(y0, jnp.float32)
    chosen = lesde.solve.choose_ensemble_layout(model, trials, solver="euler")
    compile_s, times = interleaved({name: (fn, (y0j,)) for name, fn in fns.items()}, a.repeats)
    out = np.asarray(fns["lesde"](y0j))
    out_vmap = np.asarray(fns["lesde_vmap_simulate"](y0j))
    m = a.numpy_trials
    np_times, ref = [], None
    for _ in range(max(3, a.repeats // 2)):
        t = time.perf_counter()
        ref = np.stack([authors_update_numpy(y0[i], steps) for i in range(m)])
        np_times.append((time.perf_counter() - t) * trials / m)
    rel = float(np.abs(out[:m] - ref).max() / np.abs(ref).max())
    rel_vmap = float(np.abs(out - out_vmap).max() / np.abs(out_vmap).max())

    def ratio(name):
        return {
            "median": statistics.median(np_times) / statistics.median(times[name]),
            "min": min(np_times) / max(times[name]),
            "max": max(np_times) / min(times[name]),
        }

    return {
        "job": {**AUTHORS, "model": "projected", "dt": 1.0, "solver": "euler",
                "ensemble_layout": chosen,
                "numpy_trials_timed": m, "numpy_scaled_to_trials": trials},
        "timings": {"lesde": summary(times["lesde"]),
                    "lesde_vmap_simulate": summary(times["lesde_vmap_simulate"]),
                    "numpy_loop": summary(np_times)},
        "compile_s": compile_s,
        "max_rel_diff_lesde_float32_vs_numpy_float64": rel,
        "max_rel_diff_lesde_vs_vmap_simulate": rel_vmap,
        "ratio numpy / lesde": ratio("lesde"),
        "ratio numpy / lesde vmap of simulate": ratio("lesde_vmap_simulate"),
        "per_step_s_lesde": statistics.median(times["lesde"]) / steps,
        "trial_steps_per_s_lesde": trials * steps / statistics.median(times["lesde"]),
    }


def time_per_step(K_, n, p, batch, repeats, budget=6e7, layout="auto"):
    """Seconds per Euler step of the 'ce' LE-SDE (identity head if p = K, else a fixed
    random K x p head), batch members vmapped."""
    classes = lesde.Classes.balanced(K_, n)
    work = batch * K_ * n * p
    steps = int(min(1000, max(20, budget // work)))
    head = None if p == K_ else jnp.asarray(
        np.random.default_rng(0).normal(0, 1 / math.sqrt(p), (K_, p)), jnp.float32)
    grad = lesde.gradient_model("ce") if head is None else lesde.gradient_model("ce", head=head)

    def member(alpha, key):
        model = lesde.LESDE(lesde.LocallyElastic(alpha, 0.5 * alpha), grad, classes,
                            noise=lesde.Noise(independent=0.05), dim=p)
        return lesde.simulate(model, t1=steps * DT, dt=DT, key=key, layout=layout).ys[-1]

    fn = jax.jit(jax.vmap(member))
    args = (jnp.linspace(0.5, 2.0, batch), jax.random.split(jax.random.key(0), batch))
    compile_s, times = interleaved({"x": (fn, args)}, repeats)
    t = [x / steps for x in times["x"]]
    return {"K": K_, "n_per_class": n, "p": p, "batch": batch, "steps_timed": steps,
            "sample_steps": batch * K_ * n, "per_step": summary(t), "compile_s": compile_s["x"]}


def loglog_exponent(xs, ys, upper: int):
    lx, ly = np.log(np.asarray(xs[-upper:], float)), np.log(np.asarray(ys[-upper:], float))
    return float(np.polyfit(lx, ly, 1)[0])


def part_scaling(a) -> dict:
    r = max(3, a.repeats // 2)
    ns = [10, 100, 1000, 10_000] + ([] if a.quick else [100_000])
    Ks = [2, 10, 100] + ([] if a.quick else [1000])
    ps = [2, 10, 64, 256]
    bs = [1, 4, 16, 64] + ([] if a.quick else [256])
    rows = {"n": [], "K": [], "p": [], "batch": []}
    for n in ns:
        rows["n"].append(time_per_step(10, n, 10, 1, r))
    for k in Ks:
        rows["K"].append(time_per_step(k, 10, k, 1, r))
    for p in ps:
        rows["p"].append(time_per_step(10, 100, p, 1, r))
    for b in bs:
        rows["batch"].append(time_per_step(10, 100, 10, b, r))
    for name, rs in rows.items():
        print(f"scaling in {name}:", [(x[{'n': 'n_per_class'}.get(name, name)],
              f"{x['per_step']['median_s'] * 1e3:.3f} ms") for x in rs], flush=True)
    key = {"n": "n_per_class", "K": "K", "p": "p", "batch": "batch"}
    exps = {}
    for name, rs in rows.items():
        xs = [x[key[name]] for x in rs]
        ys = [x["per_step"]["median_s"] for x in rs]
        # Fit over the points with at least 1/1000 of the largest point's work (below
        # that, fixed per-step costs dominate), and the local exponent of the top pair.
        work = [x["sample_steps"] * x["p"] for x in rs]
        upper = sum(w >= max(work) / 1000 for w in work)
        exps[name] = {"points_fitted": upper, "exponent": loglog_exponent(xs, ys, upper),
                      "exponent_top_pair": loglog_exponent(xs, ys, 2),
                      "work_exponent": 2 if name == "K" else 1}
    return {"rows": rows, "exponents": exps}


def part_gradient(a) -> dict:
    classes = lesde.Classes.balanced(K, N_PER)
    batch = 4
    args = job_params(batch)
    step_counts = [100, 300, 1000] + ([] if a.quick else [3000])
    rows = []
    for steps in step_counts:
        choices = {
            "every step stored (lesde default)": diffrax.RecursiveCheckpointAdjoint(
                checkpoints=steps),
            f"sqrt(2 steps) = {int(math.sqrt(2 * steps))} checkpoints":
                diffrax.RecursiveCheckpointAdjoint(checkpoints=int(math.sqrt(2 * steps))),
            "10 checkpoints": diffrax.RecursiveCheckpointAdjoint(checkpoints=10),
        }
        fwd = jax.jit(jax.vmap(lesde_member_fn(classes, steps, DT)))
        fns = {"forward": (fwd, args)}
        memory = {"forward": fwd.lower(*args).compile().memory_analysis()}
        for name, adj in choices.items():
            g = grad_of(lesde_member_fn(classes, steps, DT, adjoint=adj), classes.labels)
            fns[name] = (g, args)
            memory[name] = g.lower(*args).compile().memory_analysis()
        compile_s, times = interleaved(fns, max(3, a.repeats // 2))
        row = {"steps": steps, "batch": batch, "state_bytes": batch * K * N_PER * K * 4,
               "choices": {}}
        for name in fns:
            mem = memory[name]
            peak = None if mem is None else int(mem.temp_size_in_bytes + mem.output_size_in_bytes
                                                 + mem.argument_size_in_bytes)
            row["choices"][name] = {
                "time": summary(times[name]), "compile_s": compile_s[name],
                "peak_bytes": peak,
                "over_forward": ratio_stats(times[name], times["forward"]),
            }
        rows.append(row)
        print(f"gradient at {steps} steps:", {k: (round(v["over_forward"]["median"], 2),
              v["peak_bytes"]) for k, v in row["choices"].items()}, flush=True)
    return {"rows": rows}


def part_bandwidth(a, reference: dict) -> dict:
    """Streaming bandwidth (read + write of a 256 MiB array) against the bytes the solve
    moves per step at least (state read and written, increments written and read)."""
    n = 64 * 2**20
    x = jnp.ones((n,), jnp.float32)
    f = jax.jit(lambda x: x * 1.0001 + 1.0)
    _, times = interleaved({"copy": (f, (x,))}, 5 * a.repeats)
    bw = 2 * 4 * n / statistics.median(times["copy"])
    state = a.batch * K * N_PER * K * 4
    solve_t = reference["timings"]["forward_lesde"]["median_s"] / STEPS
    return {"stream_bytes_per_s": bw, "solve_bytes_per_step_min": 4 * state,
            "solve_bytes_per_s": 4 * state / solve_t, "fraction": 4 * state / solve_t / bw,
            "sample_steps_per_s": a.batch * K * N_PER / solve_t}


# ------------------------------------------------------------------------------- table
def fmt(s: dict, unit: float = 1.0, digits: int = 3) -> str:
    return (f"{s['median_s'] * unit:.{digits}g} ({s['min_s'] * unit:.{digits}g}-"
            f"{s['max_s'] * unit:.{digits}g})")


def fmt_ratio(r: dict) -> str:
    return f"**{r['median']:.3g}** ({r['min']:.3g}-{r['max']:.3g})"


def _part_dates(res: dict) -> str:
    """A sentence saying which parts were measured when, if not all in one run (`--parts`)."""
    runs = res.get("part_runs", {})
    groups: dict[str, list[str]] = {}
    for name, r in runs.items():
        groups.setdefault(r["date"], []).append(name)
    if len(groups) <= 1:
        return ""
    said = [f"{', '.join(names)} {'in' if date.startswith('an') else 'on'} {date} (load average "
            f"{runs[names[0]]['load_average_1_5_15min_at_end'][0]:.1f})"
            for date, names in groups.items()]
    return " Parts measured in separate runs: " + "; ".join(said) + "."


def table(res: dict) -> str:
    env = res["environment"]
    lines = [
        f"Machine: {env['machine']['cpu_count']} CPU cores, backend "
        f"{env['machine']['backend']}; jax {env['versions']['jax']}, diffrax "
        f"{env['versions']['diffrax']}, equinox {env['versions']['equinox']}, numpy "
        f"{env['versions']['numpy']}"
        + (f", torch {res['reference']['torchsde']['versions']['torch']}, torchsde "
           f"{res['reference']['torchsde']['versions']['torchsde']}"
           if res["reference"]["torchsde"].get("status") == "ran" else "")
        + f"; load average at the end {env['machine']['load_average_1_5_15min_at_end']}. "
        "Medians (min-max) of repeated runs; ratios from runs interleaved in one process."
        + _part_dates(res),
        "",
    ]
    ref = res["reference"]
    t = ref["timings"]
    lines += [
        "| reference LE-SDE job (64 x 1000 samples x 1000 steps) | forward s | gradient s |"
        " compile s (fwd, grad) |",
        "|---|---|---|---|",
    ]
    for name, label in (("lesde", "lesde"), ("scan_tuned", "hand-written scan, tuned layout"),
                        ("scan", "hand-written scan, (N, p) layout"),
                        ("lesde_natural_layout", "lesde, layout='natural'"),
                        ("torchsde", "torchsde (Euler, BrownianInterval)")):
        fwd = t.get(f"forward_{name}")
        if fwd is None:
            continue
        grad = t.get(f"gradient_{name}")
        comp = [ref["compile_s"].get(f"{kind}_{name}") for kind in ("forward", "gradient")]
        comp = ", ".join("-" if c is None else f"{c:.2f}" for c in comp)
        lines.append(f"| {label} | {fmt(fwd)} | {fmt(grad) if grad else '-'} | {comp} |")
    if ref["torchsde"].get("status") != "ran":
        lines.append(f"| torchsde | {ref['torchsde']['status']} | | |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    r = ref["ratios"]

    def row(name, ratio, ok):
        lines.append(f"| {name} | {fmt_ratio(ratio)} | {'yes' if ok else 'no'} |")

    row("lesde / tuned hand-written scan <= 1.1 (forward)", r["forward lesde / tuned scan"],
        r["forward lesde / tuned scan"]["median"] <= 1.1)
    row("lesde / (N, p) hand-written scan <= 1.1 (forward)", r["forward lesde / scan"],
        r["forward lesde / scan"]["median"] <= 1.1)
    row("lesde / tuned hand-written scan (gradient)", r["gradient lesde / tuned scan"],
        r["gradient lesde / tuned scan"]["median"] <= 1.1)
    if "forward torchsde / lesde" in r:
        row("torchsde / lesde >= 5", r["forward torchsde / lesde"],
            r["forward torchsde / lesde"]["median"] >= 5)
    au = res["authors"]
    row("NumPy loop / lesde >= 3000 (authors' LE-ODE job)", au["ratio numpy / lesde"],
        au["ratio numpy / lesde"]["median"] >= 3000)
    nf = res["noise_floor"]
    lines.append(
        f"| solve / raw jax.random.normal throughput >= 0.8 | **{nf['fraction_of_raw']:.3g}**"
        f" ({nf['solve_normals_per_s'] / 1e6:.0f} of "
        f"{max(nf['raw_normals_per_s'].values()) / 1e6:.0f} M draws/s) | "
        f"{'yes' if nf['fraction_of_raw'] >= 0.8 else 'no'} |")
    ex = res["scaling"]["exponents"]
    for name in ("n", "batch"):
        e = ex[name]
        lines.append(
            f"| linear in {'N' if name == 'n' else 'batch'} (log-log exponent over the top "
            f"{e['points_fitted']} points; top pair) | **{e['exponent']:.3f}**; "
            f"{e['exponent_top_pair']:.3f} | {'yes' if abs(e['exponent'] - 1) <= 0.1 else 'no'} |")
    lines += [
        "",
        f"Authors' LE-ODE job (K = 3, 500 trials x 10^4 steps): lesde "
        f"(`simulate_ensemble`, layout '{au['job'].get('ensemble_layout', 'auto')}') "
        f"{fmt(au['timings']['lesde'])} s; jax.vmap over `simulate` "
        f"{fmt(au['timings']['lesde_vmap_simulate'])} s (NumPy loop / it "
        f"{fmt_ratio(au['ratio numpy / lesde vmap of simulate'])}); NumPy loop "
        f"{fmt(au['timings']['numpy_loop'])} s (timed on {au['job']['numpy_trials_timed']} "
        f"trials, scaled); compile {au['compile_s']['lesde']:.2f} s and "
        f"{au['compile_s']['lesde_vmap_simulate']:.2f} s.",
    ]
    lines += ["", "| scaling in | values | ms per step | ns per sample-coordinate-step |"
              " exponent (fit; top pair) | work grows as |", "|---|---|---|---|---|---|"]
    for name, k in (("n", "n_per_class"), ("K", "K"), ("p", "p"), ("batch", "batch")):
        rs = res["scaling"]["rows"][name]
        ms = ", ".join(f"{x['per_step']['median_s'] * 1e3:.3g}" for x in rs)
        ns = ", ".join(f"{x['per_step']['median_s'] * 1e9 / (x['sample_steps'] * x['p']):.3g}"
                       for x in rs)
        lines.append(
            f"| {'n per class (K = p = 10)' if name == 'n' else name} | "
            f"{', '.join(str(x[k]) for x in rs)} | "
            f"{ms} | {ns} | {ex[name]['exponent']:.3f}; {ex[name]['exponent_top_pair']:.3f} | "
            f"{name}^{ex[name]['work_exponent']} |")
    lines += ["", "| gradient (batch 4) | steps | reverse / forward | peak memory MB |",
              "|---|---|---|---|"]
    for row_ in res["gradient"]["rows"]:
        for name, c in row_["choices"].items():
            if name == "forward":
                continue
            mb = "-" if c["peak_bytes"] is None else f"{c['peak_bytes'] / 2**20:.0f}"
            lines.append(f"| {name} | {row_['steps']} | {fmt_ratio(c['over_forward'])} | {mb} |")
    bw = res["bandwidth"]
    lines += ["", f"Sample-steps per second (reference job, lesde): "
              f"{bw['sample_steps_per_s']:.3g}; the solve moves at least "
              f"{bw['solve_bytes_per_s'] / 1e9:.3g} GB/s, {bw['fraction']:.2f} of the measured"
              f" streaming bandwidth {bw['stream_bytes_per_s'] / 1e9:.3g} GB/s."]
    return "\n".join(lines) + "\n"


def write_all(res: dict, docs: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for path, text in ((RESULTS / "performance.json", json.dumps(res, indent=2)),
                       (RESULTS / "performance.md", table(res))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        print(f"written {path}")
    if docs:
        text = DOCS_PAGE.read_text()
        begin, end = "<!-- performance:begin -->", "<!-- performance:end -->"
        if begin not in text or end not in text:
            print(f"{DOCS_PAGE} has no {begin} ... {end} markers; table not copied there")
            return
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        DOCS_PAGE.write_text(head + begin + "\n" + table(res) + end + tail)
        print(f"written the table into {DOCS_PAGE}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--quick", action="store_true", help="3 repeats, fewer scaling points")
    ap.add_argument("--torch-steps", type=int, default=STEPS,
                    help="steps torchsde is timed on (scaled to 1000)")
    ap.add_argument("--numpy-trials", type=int, default=10,
                    help="trials the NumPy loop is timed on (scaled to 500)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    ap.add_argument("--no-docs", action="store_true",
                    help="do not copy the table into docs/benchmarks.md")
    ap.add_argument("--parts", nargs="+", choices=PARTS,
                    help="run only these parts, keeping the others' figures from the previous "
                         "benchmarks/results/performance.json (each part records its date and "
                         "load)")
    ap.add_argument("--device-check", action="store_true",
                    help="instead: the accelerator check (benchmarks/_device_check.py) on the "
                         "default device, with --quick its quick mode")
    a = ap.parse_args(argv)
    if a.device_check:
        from _device_check import run as device_check
        return device_check(quick=a.quick)
    if a.quick:
        a.repeats = min(a.repeats, 3)
    import os
    a.threads = a.threads or os.cpu_count()
    t0 = time.perf_counter()
    # --parts: run only those parts and keep the others from the previous results file,
    # each part recording when, under what load and with which settings it was measured
    res = json.loads((RESULTS / "performance.json").read_text()) if a.parts else {}
    runs = res.setdefault("part_runs", {})
    for name in PARTS:  # figures of a file written before parts recorded their runs
        if name in res and name not in runs:
            runs[name] = {"date": "an earlier run", "load_average_1_5_15min_at_end":
                          res["environment"]["machine"]["load_average_1_5_15min_at_end"]}
    for name in PARTS:
        if a.parts and name not in a.parts:
            continue
        t = time.perf_counter()
        if name == "reference":
            res[name] = part_reference(a)
        elif name == "noise_floor":
            res[name] = part_noise_floor(a, res["reference"])
            print("noise floor:", {k: v for k, v in res[name].items() if k != "timings"})
        elif name == "bandwidth":
            res[name] = part_bandwidth(a, res["reference"])
        elif name == "authors":
            res[name] = part_authors(a)
            print("authors' job:", res[name]["ratio numpy / lesde"], flush=True)
        elif name == "scaling":
            res[name] = part_scaling(a)
        elif name == "gradient":
            res[name] = part_gradient(a)
        runs[name] = {"date": time.strftime("%Y-%m-%d"), "run_s": time.perf_counter() - t,
                      "load_average_1_5_15min_at_end": os.getloadavg(),
                      "repeats": a.repeats, "quick": a.quick}
    res["run_s"] = time.perf_counter() - t0
    res["settings"] = vars(a)
    res["environment"] = environment()
    write_all(res, docs=not a.no_docs)
    print(table(res))


if __name__ == "__main__":
    main()
