"""Shared by the benchmarks. The hand-written reference a user would write: Euler-Maruyama
of the softmax-CE LE-SDE with independent noise in a jax.lax.scan, class sums, step i's
noise from fold_in(key, i) (the same noise as lesde's FoldInBrownianPath, so the two
compute the same trajectories); timing helpers (`timeit`, `summary`, `CompileClock`) and
the writing of results with the environment."""

import statistics
import time

import jax
import jax.numpy as jnp


def scan_member_fn(classes, steps: int, dt: float, init_std: float = 0.05):
    """(alpha, beta, sigma, key) -> final state, for a balanced `lesde.Classes`."""
    K = classes.num_classes
    labels, counts = classes.labels, classes.counts
    N = classes.num_samples

    def member(alpha, beta, sigma, key):
        init_key, bm_key = jax.random.split(key)
        x0 = init_std * jax.random.normal(init_key, (N, K))
        sqrt_dt = jnp.sqrt(dt)

        def step(x, i):
            s = jax.nn.softmax(x, axis=-1)
            gbar = jax.ops.segment_sum(s, labels, K, indices_are_sorted=True) / counts[:, None]
            gbar = gbar - jnp.eye(K)
            eg = (alpha - beta) * gbar + beta * jnp.sum(gbar, axis=0, keepdims=True)
            drift = -(eg / K)[labels]
            dw = jax.random.normal(jax.random.fold_in(bm_key, i), x.shape) * sqrt_dt
            return x + drift * dt + sigma * dw, None

        x, _ = jax.lax.scan(step, x0, jnp.arange(steps))
        return x

    return member


def tuned_scan_member_fn(classes, steps: int, dt: float, init_std: float = 0.05):
    """The same job written for speed by hand: the state laid out class-major (K, p, n)
    so that the loops run over the n samples of a class, class means as a reshape-sum,
    the drift broadcast over a class. It draws the initial state and the increments as
    lesde does in its class-major layout (initial state in (N, p), increments of step i
    in (K, p, n) from fold_in(key, i)), so it computes lesde's trajectories exactly."""
    K, N = classes.num_classes, classes.num_samples
    n = N // K

    def member(alpha, beta, sigma, key):
        init_key, bm_key = jax.random.split(key)
        x0 = init_std * jax.random.normal(init_key, (N, K))
        z0 = x0.reshape(K, n, K).transpose(0, 2, 1)
        sqrt_dt = jnp.sqrt(dt)
        eye = jnp.eye(K)

        def step(z, i):
            s = jax.nn.softmax(z, axis=1)
            gbar = jnp.mean(s, axis=2) - eye
            eg = (alpha - beta) * gbar + beta * jnp.sum(gbar, axis=0, keepdims=True)
            dw = jax.random.normal(jax.random.fold_in(bm_key, i), z.shape) * sqrt_dt
            return z - (eg / K)[:, :, None] * dt + sigma * dw, None

        z, _ = jax.lax.scan(step, z0, jnp.arange(steps))
        return z.transpose(0, 2, 1).reshape(N, K)

    return member


def counting_build(build, name: str):
    """`build` wrapped to count its traces: calls whose parameter `name` is traced, not
    the sweep's concrete probe call. Returns (wrapped build, list with one entry per
    trace)."""
    traces = []

    def counted(params):
        if isinstance(params[name], jax.core.Tracer):
            traces.append(1)
        return build(params)

    return counted, traces


def timeit(fn, args, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return times


class CompileClock:
    """Trace + lowering + XLA compile seconds, from `jax.monitoring` events (one clock per
    process: the listener it registers stays registered)."""

    def __init__(self):
        self.events = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if event.startswith("/jax/core/compile/"):
            self.events.append((event.rsplit("/", 1)[-1], duration))

    def timed(self, fn, *args, **kwargs):
        """(result, wall seconds, compile seconds, compile seconds by phase)."""
        self.events.clear()
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kwargs))
        wall = time.perf_counter() - t
        phases = {}
        for name, d in self.events:
            phases[name] = phases.get(name, 0.0) + d
        return out, wall, sum(phases.values()), phases


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def environment() -> dict:
    """Versions, machine, load average and thread settings, recorded with every figure."""
    import os
    import platform
    import sys

    import diffrax
    import equinox
    import numpy
    import scipy

    import lesde

    return {
        "versions": {
            "python": sys.version.split()[0], "jax": jax.__version__,
            "diffrax": diffrax.__version__, "equinox": equinox.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "lesde": lesde.__version__,
        },
        "machine": {
            "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "load_average_1_5_15min_at_end": os.getloadavg(),
            "env": {v: os.environ.get(v) for v in
                    ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")},
        },
    }


def write_result(result: dict, out, show: list[str]) -> None:
    """Add the environment, write `result` as JSON to `out` (via a temporary file, so an
    interrupted run leaves no partial file) and print the `show` entries."""
    import json
    from pathlib import Path

    result = {**result, **environment()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(json.dumps({k: result[k] for k in show}, indent=2))
    print(f"written {out}")
