"""The accelerator check: one command that measures lesde on JAX's default device (a GPU
when one is visible) and checks that it computes what the CPU computes.

    python benchmarks/bench_performance.py --device-check           # full, < 8 min on a GPU
    python benchmarks/bench_performance.py --device-check --quick   # small sizes, any machine
    python benchmarks/_device_check.py [--quick] [--out FILE] [--budget-s S] [--hard-s S]
                                       [--parts reference sweep spring fit]

The quick mode takes about a minute on a 2-core CPU, nearly all of it compilation.

Parts, each on the default device, each in its own try/except (an error is recorded and
the next part runs), the results written after every part:
1. reference: the reference LE-SDE job of bench_performance.py (softmax-CE, K = 10,
   n = 100 per class, p = K, independent noise, 64 configurations vmapped, 1000 Euler
   steps): compile seconds, run seconds (median of repeats), sample-steps per second,
   and the bytes the solve moves per step at least (state read and written, increments
   written and read) over the device's streaming memory bandwidth, measured here as
   bench_performance.py's part_bandwidth does (read + write of a large float32 array).
   In the full mode also a 4096-configuration batch, if the time budget allows it.
2. sweep: `lesde.sweep` of a small LE-SDE (softmax-CE, K = 3, n = 4 per class, 200 Euler
   steps) over a 40 x 25 (alpha, sigma) grid x 1000 seeds = 10^6 members at the default
   chunk size: member-steps per second, compile seconds, chunk size. A one-chunk pilot
   compiles and times a chunk first; if the whole sweep would not fit its share of the
   time budget, fewer seeds are solved (recorded). On a GPU also a run with larger
   chunks.
3. spring: the shipped spring-block phase sweep `lesde/configs/spring_phase.yaml`
   (2 x 12 x 12 cells x 8 seeds, 10^4 map steps), as `lesde sweep` runs it.
4. fit: one step of `lesde.fit.fit` on bench_fit.py's job A (LE-ODE with a general
   piecewise-linear E, K = 10, 1000 UnrolledTsit5 steps, 101 data times): the loss, its
   reverse-mode gradient through the solver and the Adam update, compile and step time.
5. agreement, inside each part: the timed computation (for the sweeps the compiled chunk
   function of `lesde.sweep` on one chunk; the large reference batch and the larger
   sweep chunks are not compared) run again on the CPU device (`jax.devices("cpu")[0]`)
   and on the default device, the inputs put on each, with the same keys, so the same
   draws: max |CPU - device| / max |CPU| per output, the largest over outputs, against
   a tolerance for float32 rounding: 1e-4 for the solves, 1e-3 for the fit step's loss
   and gradient. The timed sizes are compared, not smaller ones: the device has them
   compiled already, and each part's CPU run takes seconds. Every part runs with matmul
   precision 'highest' (float32 matmuls, not a GPU's TF32; only the fit has matmuls,
   10 x 10). When the default device is the CPU, both runs are on the CPU: the code
   path runs, the agreement is trivially 0, and the output says so.

Time, counted from the start of the process: a soft budget (default 380 s full, 240 s
quick) gives each part a share; a part that cannot start in its share is recorded as
"skipped: time budget", and the parts that scale (the large reference batch, the number
of sweep members, the repeats) are cut to fit; a watchdog ends the process at a hard
limit (default 440 s full, 420 s quick) after writing what was measured.

Writes benchmarks/results/device_check.json (environment: backend, device kind, memory,
jax and jaxlib versions) and device_check.md (the summary table, also printed).
"""

import argparse
import copy
import json
import math
import os
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

import lesde

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _reference import CompileClock, environment, summary  # noqa: E402

RESULTS = HERE / "results"
OUT = RESULTS / "device_check.json"
RTOL_SOLVE, RTOL_GRADIENT = 1e-4, 1e-3
PRECISION = "highest"  # matmuls in float32 (not TF32 on a GPU), in every part

FULL = dict(
    repeats=5, budget_s=380.0, hard_s=440.0,
    ref_batch=64, ref_steps=1000, ref_large_batch=4096, stream_floats=[64 * 2**20, 256 * 2**20],
    sweep_side=(40, 25), sweep_seeds=1000, sweep_steps=200, sweep_large_chunk=2**17,
    spring_scale=None, fit="FULL", fit_calls=3, fit_forward=True,
)
QUICK = dict(
    repeats=2, budget_s=240.0, hard_s=420.0,
    ref_batch=4, ref_steps=200, ref_large_batch=None, stream_floats=[16 * 2**20],
    sweep_side=(20, 10), sweep_seeds=50, sweep_steps=20, sweep_large_chunk=None,
    spring_scale=dict(side=4, steps=500), fit="QUICK", fit_calls=3, fit_forward=False,
)
# Shares of the time budget: a part may use its share plus what earlier parts left.
SHARES = {"reference": 0.25, "sweep": 0.25, "spring": 0.15, "fit": 0.35}
SWEEP_K, SWEEP_N, SWEEP_DT = 3, 4, 0.05


def log(msg: str) -> None:
    print(f"[device check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def process_age() -> float:
    """Seconds since this process started (Linux; 0 elsewhere)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class Budget:
    """The soft time budget, counted from the start of the process: what is left, and
    what a part may use (its share, plus what earlier parts left, minus the shares of
    the parts after it)."""

    def __init__(self, total_s: float):
        self.total, self.age_at_start = total_s, process_age()
        self.t0 = time.perf_counter() - self.age_at_start

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.total - self.elapsed()

    def for_part(self, name: str) -> float:
        later = list(SHARES)[list(SHARES).index(name) + 1:]
        return self.left() - self.total * sum(SHARES[k] for k in later)


# ---------------------------------------------------------------------------- helpers
def devices() -> tuple:
    """(CPU device or None, default device)."""
    default = jax.devices()[0]
    try:
        cpu = jax.devices("cpu")[0]
    except RuntimeError:  # JAX_PLATFORMS without cpu
        cpu = None
    return cpu, default


def max_rel_diff(cpu_out, dev_out) -> float:
    """Largest over outputs (pytree leaves) of max |cpu - dev| / max |cpu|; NaN where
    only one side is NaN counts as infinite."""
    worst = 0.0
    for a, b in zip(jax.tree_util.tree_leaves(cpu_out), jax.tree_util.tree_leaves(dev_out)):
        a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        if a.shape != b.shape or (np.isnan(a) != np.isnan(b)).any():
            return math.inf
        ok = ~np.isnan(a)
        if not ok.any():
            continue
        scale = max(float(np.abs(a[ok]).max()), 1e-30)
        worst = max(worst, float(np.abs(a[ok] - b[ok]).max()) / scale)
    return worst


def on_device(tree, dev):
    """The JAX arrays of `tree` put on `dev` (other leaves as they are)."""
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, dev) if isinstance(x, (jax.Array, np.ndarray)) else x, tree)


def agreement(run, tol: float, what: str) -> dict:
    """`run(device)` (which puts its inputs on `device`) on the CPU device and on the
    default device, each also the default device while it runs; outputs compared by
    `max_rel_diff`."""
    cpu, default = devices()
    res = {"what": what, "tolerance": tol, "cpu_device": str(cpu), "default_device": str(default),
           "matmul_precision": PRECISION}
    if cpu is None:
        return {**res, "status": "skipped: no CPU device visible (JAX_PLATFORMS?)"}
    outs, where = {}, {}
    for name, dev in (("cpu", cpu), ("default", default)):
        with jax.default_device(dev):
            t = time.perf_counter()
            try:
                out = jax.block_until_ready(run(dev))
            except Exception as e:  # noqa: BLE001 - recorded; the part's figures are kept
                return {**res, "status": f"error on {name} device: {type(e).__name__}: {e}",
                        "passed": False, "traceback": traceback.format_exc()}
            res[f"{name}_s (compile + run)"] = time.perf_counter() - t
        leaves = [x for x in jax.tree_util.tree_leaves(out) if isinstance(x, jax.Array)]
        where[name] = sorted({str(d) for x in leaves for d in x.devices()})
        outs[name] = jax.tree_util.tree_map(np.asarray, out)
    d = max_rel_diff(outs["cpu"], outs["default"])
    same = cpu == default
    return {**res, "ran_on": where, "same_device": same, "max_rel_diff": d,
            "passed": bool(d <= tol),
            "note": ("the default device is the CPU: both runs are on the CPU, the agreement "
                     "is trivially 0" if same else "CPU against the default device")}


def memory() -> dict | None:
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        return None
    if not stats:
        return None
    keep = ("bytes_limit", "bytes_in_use", "peak_bytes_in_use", "bytes_reservable_limit")
    return {k: int(stats[k]) for k in keep if k in stats}


def device_environment() -> dict:
    import jaxlib

    env = environment()
    cpu, default = devices()
    env["device"] = {
        "backend": jax.default_backend(), "platform": default.platform,
        "device_kind": getattr(default, "device_kind", None), "default_device": str(default),
        "num_devices": len(jax.devices()), "cpu_device": str(cpu),
        "default_is_cpu": cpu == default, "memory_stats": memory(),
    }
    env["versions"]["jaxlib"] = jaxlib.__version__
    try:
        env["jax_environment_info"] = jax.print_environment_info(return_string=True)
    except Exception as e:  # noqa: BLE001
        env["jax_environment_info"] = f"unavailable: {e}"
    return env


def repeats_within(run_s: float, room_s: float, most: int) -> int:
    """Repeats of a run of `run_s` seconds that fit in `room_s` (at least 1, at most
    `most`)."""
    return max(1, min(most, int(room_s / max(run_s, 1e-6))))


def timed_runs(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return times


# ------------------------------------------------------------------------------ parts
def stream_bandwidth(n: int, most: int) -> float:
    """Bytes per second read and written by x * 1.0001 + 1 on n float32 (as
    bench_performance.part_bandwidth measures it), the median of up to `most` calls
    (about 3 s of calls at most, for a slow CPU)."""
    x = jnp.ones((n,), jnp.float32)
    f = jax.jit(lambda x: x * 1.0001 + 1.0)
    jax.block_until_ready(f(x))
    one = timed_runs(lambda: f(x), 1)[0]
    t = timed_runs(lambda: f(x), max(3, min(most, int(3.0 / one))))
    return 2 * 4 * n / statistics.median(t)


def part_reference(cfg, budget: Budget, clock: CompileClock, res: dict) -> None:
    from bench_performance import DT, K, N_PER, job_params, lesde_member_fn

    steps = cfg["ref_steps"]
    classes = lesde.Classes.balanced(K, N_PER)
    fn = jax.jit(jax.vmap(lesde_member_fn(classes, steps, DT)))

    def measure(batch, reserve):
        """Compile and time the job at `batch`, leaving `reserve` x (compile + run)
        seconds of the part's share for what follows (the agreement's CPU run)."""
        args = on_device(job_params(batch), devices()[1])  # as the agreement's inputs
        _, first, compile_s, _ = clock.timed(fn, *args)
        run_s = max(first - compile_s, 1e-6)
        room = budget.for_part("reference") - reserve * first
        times = timed_runs(lambda: fn(*args), repeats_within(run_s, room, cfg["repeats"]))
        med = statistics.median(times)
        state = batch * K * N_PER * K * 4
        return {"batch": batch, "compile_s": compile_s, "first_call_s": first,
                "run_s": summary(times), "sample_steps_per_s": batch * K * N_PER * steps / med,
                "solve_bytes_per_step_min": 4 * state,
                "solve_bytes_per_s": 4 * state * steps / med}

    res["job"] = {"model": "ce", "K": K, "n_per_class": N_PER, "p": K, "steps": steps,
                  "dt": DT, "solver": "euler", "noise": "independent"}
    stream = {f"{4 * n / 2**20:.0f} MiB": stream_bandwidth(n, 5 * cfg["repeats"])
              for n in cfg["stream_floats"]}
    bw = max(stream.values())
    res["stream_bytes_per_s"] = {"by_array_size": stream, "best": bw}
    log(f"reference: streaming bandwidth {bw / 1e9:.3g} GB/s")

    def show(r):
        r["fraction_of_stream_bandwidth"] = r["solve_bytes_per_s"] / bw
        log(f"reference: batch {r['batch']}: {r['run_s']['median_s']:.3g} s, "
            f"{r['sample_steps_per_s']:.3g} sample-steps/s, {r['fraction_of_stream_bandwidth']:.2g} "
            f"of the bandwidth, compile {r['compile_s']:.2f} s")
        return r

    res["rows"] = [show(measure(cfg["ref_batch"], 1.5))]
    args = job_params(cfg["ref_batch"])
    res["agreement"] = agreement(
        lambda dev: fn(*on_device(args, dev)), RTOL_SOLVE,
        f"final states of the batch-{cfg['ref_batch']} job")
    large = cfg["ref_large_batch"]
    if large:
        r0 = res["rows"][0]
        # the first call's estimate: a compilation, and a run at least as long as the
        # small batch's and at most at 5% of the streaming bandwidth (measure() fits
        # its repeats in what is left)
        est = 2 * r0["compile_s"] + max(
            r0["run_s"]["median_s"], 4 * large * K * N_PER * K * 4 * steps / (0.05 * bw))
        if est < budget.for_part("reference"):
            try:
                res["rows"].append(show(measure(large, 0.0)))
            except Exception as e:  # noqa: BLE001 - an extra: the part's figures stand
                res["large_batch"] = f"{large} configurations: error: {type(e).__name__}: {e}"
        else:
            res["large_batch"] = (f"{large} configurations: skipped: time budget (first "
                                  f"call estimated at {est:.0f} s)")


def sweep_job(steps: int):
    classes = lesde.Classes.balanced(SWEEP_K, SWEEP_N)

    def build(p):
        return lesde.LESDE(lesde.LocallyElastic(p["alpha"], 0.5), "ce", classes,
                           noise=lesde.Noise(independent=p["sigma"]))

    return build, steps * SWEEP_DT


_SWEEP_BUILD = {}


def sweep_build(steps):
    """One build function per step count, so every sweep of it shares one compilation."""
    if steps not in _SWEEP_BUILD:
        _SWEEP_BUILD[steps] = sweep_job(steps)
    return _SWEEP_BUILD[steps]


def sweep_axes(side):
    return [{"alpha": np.linspace(0.5, 2.0, side[0])},
            {"sigma": np.geomspace(0.01, 0.3, side[1])}]


def part_sweep(cfg, budget: Budget, clock: CompileClock, res: dict) -> None:
    from lesde.metrics import metrics_fn
    from lesde.solve._sweep import auto_chunk_size

    fn = _metric_fn("loss", metrics_fn)
    steps = cfg["sweep_steps"]
    build, t1 = sweep_build(steps)
    axes = sweep_axes(cfg["sweep_side"])
    grid = lesde.Grid(axes)
    cells, seeds = grid.num_cells, cfg["sweep_seeds"]
    members = cells * seeds
    probe = build({k: jnp.asarray(v[0]) for ax in axes for k, v in ax.items()})
    chunk = min(members, auto_chunk_size(probe, jax.devices()))
    res.update({"job": {"model": "ce", "K": SWEEP_K, "n_per_class": SWEEP_N, "p": SWEEP_K,
                        "steps": steps, "dt": SWEEP_DT, "grid": list(cfg["sweep_side"]),
                        "seeds": seeds, "members": members, "metrics": ["loss"]},
                "chunk_size (lesde's default)": chunk})

    def run(grid_, seeds_, chunk_):
        return lesde.sweep(build, grid_, t1=t1, dt=SWEEP_DT, fn=fn, seeds=seeds_,
                           chunk_size=chunk_, progress=False)

    # pilot: one cell x `chunk` seeds is exactly one chunk of the same shape
    pilot = lesde.Grid([{k: v[:1] for k, v in ax.items()} for ax in axes])
    _, first, compile_s, _ = clock.timed(run, pilot, chunk, chunk)
    chunk_s = statistics.median(timed_runs(lambda: run(pilot, chunk, chunk),
                                           repeats_within(first - compile_s, 10.0, 2)))
    res.update({"compile_s": compile_s, "first_call_s (one chunk, compile + run)": first,
                "pilot_one_chunk_s": chunk_s})
    n_chunks = -(-members // chunk)
    est = 1.15 * n_chunks * chunk_s
    # room left for the whole sweep: the part's share less the agreement's CPU run (a
    # compilation and one chunk); a few seconds are always allowed (the budget is soft,
    # the watchdog is not)
    room = max(budget.for_part("sweep") - compile_s - 5.0, 5.0)
    log(f"sweep: {members} members in chunks of {chunk}: compile {compile_s:.2f} s, "
        f"{chunk_s:.3g} s per chunk, estimated {est:.0f} s (room {room:.0f} s)")
    if est > room:
        fit_chunks = int(room / (1.15 * chunk_s))
        seeds = max(0, min(seeds, fit_chunks * chunk // cells))
        res["reduced_by_time_budget"] = (f"{cells * seeds} of {members} members solved "
                                         f"(estimated {est:.0f} s for all, room {room:.0f} s)")
        if seeds == 0:
            res["status"] = "partial: the sweep itself skipped: time budget"
            res["agreement"] = _sweep_agreement(cfg, fn, pilot, chunk)
            return
        members = cells * seeds
    t = time.perf_counter()
    ds = run(grid, seeds, chunk)
    wall = time.perf_counter() - t
    ok = int((ds["status"].values == 0).sum())
    res["run"] = {"members": members, "chunk_size": int(ds.attrs["chunk_size"]),
                  "chunks": -(-members // chunk), "wall_s": wall,
                  "member_steps_per_s": members * steps / wall,
                  "sample_steps_per_s": members * SWEEP_K * SWEEP_N * steps / wall,
                  "members_status_ok": ok, "loss_mean": float(np.nanmean(ds["loss"].values))}
    log(f"sweep: {members} members in {wall:.3g} s: {members * steps / wall:.3g} member-steps/s")
    res["agreement"] = _sweep_agreement(cfg, fn, pilot, chunk)
    big = min(cfg["sweep_large_chunk"] or 0, members)
    if jax.default_backend() != "cpu" and big > chunk:
        est = 2.0 * wall + 2.0 * compile_s + 5.0  # a larger chunk should not be slower
        if est < budget.for_part("sweep"):
            try:
                _, _, c2, _ = clock.timed(run, pilot, big, big)
                t = time.perf_counter()
                run(grid, seeds, big)
                w2 = time.perf_counter() - t
                res["run_larger_chunks"] = {"chunk_size": big, "compile_s": c2, "wall_s": w2,
                                            "member_steps_per_s": members * steps / w2}
                log(f"sweep, chunks of {big}: {w2:.3g} s: "
                    f"{members * steps / w2:.3g} member-steps/s")
            except Exception as e:  # noqa: BLE001 - an extra: the part's figures stand
                res["run_larger_chunks"] = f"error: {type(e).__name__}: {e}"
        else:
            res["run_larger_chunks"] = "skipped: time budget"


_FNS = {}


def _metric_fn(names, metrics_fn, registry=None):
    """One metric function per name list (the sweep's compiled function is cached on it)."""
    key = (names, id(registry))
    if key not in _FNS:
        _FNS[key] = metrics_fn(list(names) if isinstance(names, tuple) else [names], registry)
    return _FNS[key]


def chunk_agreement(build, fn, grid, seeds, t1, dt, what, drop=(), tol=RTOL_SOLVE):
    """The sweep's own compiled chunk function (jit(vmap(member)), keys
    member_key(0, cell, seed), inputs sharded as `lesde.sweep` shards them) on the CPU
    and on the default device; the outputs named in `drop` are left out of the
    comparison."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from lesde.solve._sweep import _chunk_function

    chunk_fn = _chunk_function(build, fn, float(t1), float(dt), None, 0, None)
    m = np.arange(grid.num_cells * seeds)
    cells, s_idx = np.divmod(m, seeds)
    params = {k: jnp.asarray(v) for k, v in grid.params(cells).items()}
    args = (params, jnp.asarray(cells, jnp.int32), jnp.asarray(s_idx, jnp.int32))

    def run(dev):
        sharding = NamedSharding(Mesh(np.array([dev]), ("batch",)), PartitionSpec("batch"))
        metrics, status = chunk_fn(*jax.device_put(args, sharding))
        return {k: v for k, v in metrics.items() if k not in drop}, status

    return agreement(run, tol, what)


def _sweep_agreement(cfg, fn, pilot, chunk):
    """One chunk of the timed sweep (the pilot's)."""
    build, t1 = sweep_build(cfg["sweep_steps"])
    return chunk_agreement(build, fn, pilot, chunk, t1, SWEEP_DT,
                           f"loss of one chunk ({chunk} members) of the sweep")


SPRING_CONFIG = Path(lesde.__file__).parent / "configs" / "spring_phase.yaml"


def spring_config(scale: dict | None, seeds: int | None = None):
    """The shipped spring phase sweep; `scale` ({side, steps}) shrinks its grid and
    horizon."""
    import yaml

    from lesde.runs import parse_config, SweepConfig

    data = yaml.safe_load(SPRING_CONFIG.read_text())
    if scale:
        for axis in data["sweep"]["axes"]:
            for name, v in axis.items():
                if isinstance(v, dict):
                    kind, (lo, hi, _) = next(iter(v.items()))
                    axis[name] = {kind: [lo, hi, scale["side"]]}
        data["solve"]["t1"] = scale["steps"]
    if seeds:
        data["sweep"]["seeds"] = seeds
    return parse_config(data, source=str(SPRING_CONFIG), schema=SweepConfig)


_SPRING_BUILD = {}


def spring_build(config):
    key = id(config)
    if key not in _SPRING_BUILD:
        _SPRING_BUILD[key] = (config, lambda p: config.build(p))
    return _SPRING_BUILD[key][1]


def part_spring(cfg, budget: Budget, clock: CompileClock, res: dict) -> None:
    from lesde.metrics import METRIC_DIMS, metrics_fn

    config = spring_config(cfg["spring_scale"])
    s = config.sweep
    fn = _metric_fn(tuple(config.metrics), metrics_fn, config.registry)
    build = spring_build(config)
    steps = int(config.solve.t1)
    members = s.num_cells * s.seeds

    def run():
        return lesde.sweep(build, s.grid(), t1=config.solve.t1, dt=config.solve.dt, fn=fn,
                           seeds=s.seeds, seed=config.solve.seed, chunk_size=s.chunk_size,
                           progress=False, metric_dims=METRIC_DIMS)

    ds, first, compile_s, _ = clock.timed(run)
    res.update({"job": {"config": "lesde/configs/spring_phase.yaml" + (
        f" scaled to {cfg['spring_scale']}" if cfg["spring_scale"] else ""),
        "cells": s.num_cells, "seeds": s.seeds, "members": members, "steps": steps,
        "metrics": config.metrics},
        "chunk_size": int(ds.attrs["chunk_size"]), "compile_s": compile_s, "first_call_s": first})
    run_s = max(first - compile_s, 1e-3)
    # room for the repeats: the part's share less the agreement's CPU run
    room = budget.for_part("spring") - 1.5 * first
    repeats = repeats_within(run_s, room, cfg["repeats"]) if room > run_s else 0
    if repeats:
        times = timed_runs(run, repeats)
        res["run_s"] = summary(times)
        med = statistics.median(times)
    else:
        res["run_s"] = "skipped: time budget; first call minus compile seconds used"
        med = run_s
    res["member_steps_per_s"] = members * steps / med
    res["members_status_ok"] = int((ds["status"].values == 0).sum())
    log(f"spring: {members} members x {steps} steps in {med:.3g} s: "
        f"{members * steps / med:.3g} member-steps/s, compile {compile_s:.2f} s")
    compared = [m for m in config.metrics if m != "shape"]  # shape: a class, not a number
    res["agreement"] = chunk_agreement(
        build, fn, s.grid(), s.seeds, config.solve.t1, config.solve.dt,
        f"{', '.join(compared)} of all {members} members", drop=("shape",))


def part_fit(cfg, budget: Budget, clock: CompileClock, res: dict) -> None:
    import bench_fit as bf
    from lesde.fit._fit import _step

    sizes = SimpleNamespace(**(bf.FULL if cfg["fit"] == "FULL" else bf.QUICK))
    params, loss = on_device(bf.job_a(sizes), devices()[1])  # as the agreement's inputs
    args = on_device(bf.step_args(params, loss, sizes.fit_steps), devices()[1])
    _, step_first, step_compile, _ = clock.timed(_step, *args)
    res.update({"job": {"name": "bench_fit.py job A", "model": "LEODE(General(PiecewiseLinear "
                        "E), 'identity')", "K": sizes.classes, "knots": sizes.knots,
                        "solver_steps": sizes.steps, "save_times": sizes.save_times,
                        "solver": "UnrolledTsit5", "optimizer": "fit's Adam"},
                "compile_s": {"step": step_compile}, "first_call_s": {"step": step_first}})
    calls = cfg["fit_calls"]
    if (step_first - step_compile) * 2 * calls > budget.for_part("fit"):
        calls = 1
    stp = timed_runs(lambda: _step(*args), calls)
    res.update({"step_s": summary(stp), "calls": calls})
    log(f"fit: step {statistics.median(stp) * 1e3:.3g} ms, compile {step_compile:.2f} s")
    # agreement: the same step on the CPU and on the device; compared: the loss and
    # Adam's moments after one step (0.1 g and 0.001 g^2 of the gradient g), not the
    # updated parameters (Adam's first step is lr * sign(g))

    def run(dev):
        _, opt_state, value = _step(*on_device(args, dev))
        return value, opt_state

    res["agreement"] = agreement(
        run, RTOL_GRADIENT, "loss and gradient (Adam's moments after one step) of the step")
    if cfg["fit_forward"] and budget.for_part("fit") > 2 * step_compile:
        # the forward solve alone, for the ratio (after the agreement: optional)
        try:
            _, fwd_first, res["compile_s"]["forward"], _ = clock.timed(bf.forward, params, loss)
            fwd = timed_runs(lambda: bf.forward(params, loss), calls)
            res.update({"forward_s": summary(fwd),
                        "step_over_forward": statistics.median(stp) / statistics.median(fwd)})
            res["first_call_s"]["forward"] = fwd_first
        except Exception as e:  # noqa: BLE001 - an extra: the part's figures stand
            res["forward_s"] = f"error: {type(e).__name__}: {e}"


PARTS = {"reference": part_reference, "sweep": part_sweep, "spring": part_spring,
         "fit": part_fit}


# ---------------------------------------------------------------------------- output
def _num(x, fmt=".3g"):
    return "-" if x is None or isinstance(x, str) else format(x, fmt)


def table(res: dict) -> str:
    env = res.get("environment", {}).get("device", {})
    lines = [
        f"Device check ({res['mode']} mode) on {env.get('device_kind')} "
        f"(backend {env.get('backend')}, {env.get('num_devices')} device(s)); jax "
        f"{res.get('environment', {}).get('versions', {}).get('jax')}, jaxlib "
        f"{res.get('environment', {}).get('versions', {}).get('jaxlib')}; "
        f"{res.get('run_s', 0):.0f} s in all, from the start of the process."
        + (f" Device memory for JAX: {env['memory_stats']['bytes_limit'] / 2**30:.1f} GiB."
           if (env.get("memory_stats") or {}).get("bytes_limit") else "")
        + (" The default device is the CPU: these are CPU figures, not accelerator figures, "
           "and the CPU-vs-device agreement is trivially 0." if env.get("default_is_cpu") else "")
        + (f" ABORTED: {res['aborted']}." if res.get("aborted") else ""),
        "",
        "| part | size | compile s | run s | throughput | CPU vs device (tolerance) | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in res.get("parts_asked", list(PARTS)):
        p = res["parts"].get(name)
        if p is None:
            lines.append(f"| {name} | | | | | | not run |")
            continue
        status = p.get("status", "?")
        ag = p.get("agreement") or {}
        if "max_rel_diff" in ag:
            agree = (f"{ag['max_rel_diff']:.2g} ({ag['tolerance']:g}) "
                     f"{'passed' if ag['passed'] else 'FAILED'}"
                     + (", same device" if ag.get("same_device") else ""))
        else:
            agree = ag.get("status", "-")
        size = comp = run = thr = "-"
        try:
            if name == "reference" and "rows" in p:
                size = ", ".join(f"batch {x['batch']}" for x in p["rows"]) + \
                    f" x {p['job']['K'] * p['job']['n_per_class']} samples x {p['job']['steps']} steps"
                comp = ", ".join(_num(x["compile_s"], ".2f") for x in p["rows"])
                run = ", ".join(_num(x["run_s"]["median_s"]) for x in p["rows"])
                thr = (", ".join(f"{x['sample_steps_per_s']:.3g}" for x in p["rows"])
                       + " sample-steps/s; "
                       + ", ".join(f"{x['fraction_of_stream_bandwidth']:.2g}" for x in p["rows"])
                       + f" of {p['stream_bytes_per_s']['best'] / 1e9:.3g} GB/s")
            elif name == "sweep" and "run" in p:
                r = p["run"]
                size = f"{r['members']} members x {p['job']['steps']} steps, chunk {r['chunk_size']}"
                if "reduced_by_time_budget" in p:
                    size += f" (of {p['job']['members']}: time budget)"
                comp, run = _num(p["compile_s"], ".2f"), _num(r["wall_s"])
                thr = f"{r['member_steps_per_s']:.3g} member-steps/s"
                if isinstance(p.get("run_larger_chunks"), dict):
                    b = p["run_larger_chunks"]
                    thr += f" ({b['member_steps_per_s']:.3g} at chunk {b['chunk_size']})"
            elif name == "spring" and "member_steps_per_s" in p:
                size = f"{p['job']['members']} members x {p['job']['steps']} steps"
                comp = _num(p["compile_s"], ".2f")
                run = _num(p["run_s"]["median_s"]) if isinstance(p["run_s"], dict) else "-"
                thr = f"{p['member_steps_per_s']:.3g} member-steps/s"
            elif name == "fit" and "step_s" in p:
                size = f"K = {p['job']['K']}, {p['job']['solver_steps']} steps"
                comp = f"{p['compile_s']['step']:.2f} (step)"
                run = f"{p['step_s']['median_s']:.3g} (step)"
                thr = (f"step / forward {p['step_over_forward']:.2f}"
                       if "step_over_forward" in p else "-")
        except (KeyError, TypeError) as e:  # a part that stopped half-way
            status += f" (table: {e!r})"
        lines.append(f"| {name} | {size} | {comp} | {run} | {thr} | {agree} | {status} |")
    return "\n".join(lines) + "\n"


def write(res: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # the watchdog thread may write while the main thread adds entries
        try:
            snap = copy.deepcopy(res)
            break
        except RuntimeError:
            time.sleep(0.05)
    else:
        snap = res
    for path, text in ((out, json.dumps(snap, indent=2, default=str)),
                       (out.with_suffix(".md"), table(snap))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def run(quick: bool = False, out: str | Path | None = None, budget_s: float | None = None,
        hard_s: float | None = None, parts: list[str] | None = None) -> dict:
    """Run the device check (`parts`: a subset of PARTS, default all); returns the
    results (also written to `out`)."""
    unknown = sorted(set(parts or ()) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose from {list(PARTS)}")
    cfg = dict(QUICK if quick else FULL)
    out = Path(out) if out else OUT
    budget = Budget(budget_s or cfg["budget_s"])
    hard = hard_s or cfg["hard_s"]
    clock = CompileClock()
    res = {"mode": "quick" if quick else "full", "budget_s": budget.total, "hard_limit_s": hard,
           "process_age_at_start_s": budget.age_at_start,
           "tolerances": {"solves": RTOL_SOLVE, "gradient": RTOL_GRADIENT,
                          "measure": "max |CPU - device| / max |CPU| per output, largest "
                                     "over outputs; same keys, so the same draws"},
           "parts_asked": parts or list(PARTS), "parts": {}}
    try:
        res["environment"] = device_environment()
    except Exception as e:  # noqa: BLE001
        res["environment"] = {"error": repr(e)}
    dev = res["environment"].get("device", {})
    log(f"{res['mode']} mode on {dev.get('default_device')} ({dev.get('device_kind')}, backend "
        f"{dev.get('backend')}); budget {budget.total:.0f} s, hard limit {hard:.0f} s; "
        f"writing {out}")
    if dev.get("default_is_cpu"):
        log("the default device is the CPU: the CPU-vs-device agreement is trivially 0")
    write(res, out)

    def abort():
        res["aborted"] = f"hard time limit {hard:.0f} s reached; the part running was stopped"
        for p in res["parts"].values():
            if p.get("status") == "running":
                p["status"] = "stopped: hard time limit"
        res["run_s"] = budget.elapsed()
        try:
            write(res, out)
        finally:
            log(res["aborted"])
            os._exit(3)

    watchdog = threading.Timer(max(1.0, hard - budget.elapsed()), abort)
    watchdog.daemon = True
    watchdog.start()
    _, default = devices()
    try:
        with jax.default_device(default), jax.default_matmul_precision(PRECISION):
            run_parts(cfg, budget, clock, res, out, parts or list(PARTS))
    finally:
        watchdog.cancel()
    res["run_s"] = budget.elapsed()
    write(res, out)
    print(table(res))
    log(f"written {out} and {out.with_suffix('.md')}")
    return res


def run_parts(cfg, budget, clock, res, out, names):
    """Each part in turn, in its own try/except; the results written after each."""
    for name in names:
        part = PARTS[name]
        room = budget.for_part(name)
        if room <= 0:
            res["parts"][name] = {"status": "skipped: time budget"}
            log(f"{name}: skipped: time budget")
            write(res, out)
            continue
        log(f"{name}: starting ({budget.elapsed():.0f} s elapsed, {room:.0f} s for it)")
        r = res["parts"][name] = {"status": "running"}  # filled in by the part
        t = time.perf_counter()
        try:
            part(cfg, budget, clock, r)
            r["status"] = "ok" if r["status"] == "running" else r["status"]
        except Exception as e:  # noqa: BLE001 - recorded with what it measured; the next runs
            r["status"] = f"error: {type(e).__name__}: {e}"
            r["traceback"] = traceback.format_exc()
            log(f"{name}: {r['status']}")
        r["part_s"] = time.perf_counter() - t
        r["memory_after"] = memory()
        res["run_s"] = budget.elapsed()
        write(res, out)


def main(argv=None, quick: bool | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute on a CPU)")
    ap.add_argument("--out", help=f"results JSON (default {OUT.relative_to(HERE.parent)})")
    ap.add_argument("--budget-s", type=float, help="soft time budget (380 full, 240 quick)")
    ap.add_argument("--hard-s", type=float, help="hard time limit (440 full, 420 quick)")
    ap.add_argument("--parts", nargs="+", choices=list(PARTS), help="only these parts")
    a = ap.parse_args(argv)
    return run(quick=a.quick if quick is None else quick, out=a.out, budget_s=a.budget_s,
               hard_s=a.hard_s, parts=a.parts)


if __name__ == "__main__":
    main()
