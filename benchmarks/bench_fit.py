"""Cost of one optimisation step of `lesde.fit.fit` (solve, reverse-mode gradient through
the solver, Adam update) against the forward solve alone, measured in the same run.
Target: (time per fit step) / (time per forward solve) < 4.

Job A (the requirement): K = 10 classes, p = 10, the planted LE-ODE
`LEODE(General(E(t)), "identity", 10)` with E(t) piecewise linear through 6 knots on
[0, T], T = 1000, solved from fixed initial class means, gives the class means at 101 save
times (`ClassMeans`). The loss is `ClassMeanLoss(data, num_steps=1000)` (--steps; the
LE-ODE's default solver, `lesde.solve.UnrolledTsit5`: diffrax's Tsit5 with its stages
written out; reverse mode by diffrax's `RecursiveCheckpointAdjoint` with one checkpoint per
step, lesde's default), started from a perturbed E; the free parameters are the
6 x 10 x 10 knot values of a general E (600 scalars), whose knot lookup is
`PiecewiseLinear`'s `searchsorted(method="compare_all")`.

Job B (a second configuration users hit): the softmax-CE LE-SDE
`LESDE(LocallyElastic(alpha(t), beta(t)), "ce", Classes.balanced(10, 10),
Noise(independent=sigma))`, alpha and beta piecewise linear through 6 knots, a constant
sigma (13 free scalars), `ClassMeanLoss(data, num_steps=1000, ensemble=8)`: 8 fixed keys,
1000 Euler-Maruyama steps each, their class means averaged; the data are the class means
of 8 other paths of the planted model.

Timed for each job (compilation excluded; first calls and compile seconds reported apart):
- forward: `eqx.filter_jit(lambda p, l: l.value(p))(params, loss)`, one solve + the loss;
- fit step: `lesde.fit._fit._step(diff, opt_state, static, loss, optimizer, scale)`, the
  exact jitted function `fit` calls per step, its arguments built as `fit` builds them
  (`rescale_time` to the last data time, `eqx.partition` by `free_parameters`, and
  `fit`'s own optimizer: Adam, learning rate 0.05, cosine decay over --fit-steps).
Each repeat times --calls back-to-back calls of each (`block_until_ready` after every
call; the order forward/step alternates between repeats); a repeat's figure is its total
/ calls, the ratio is per repeat; median / min / max over --repeats interleaved repeats.

Also timed, one call per repeat interleaved with the repeats: a whole `lesde.fit.fit(params,
loss, steps=--fit-steps, progress=False, patience=None)` on job A, its wall time / fit-steps
against job A's step time measured just before it (--calls calls; the Python loop's
overhead: the per-step `float` of
the loss, bookkeeping, dispatch), as called and minus any compile seconds inside the call.
The process's first `fit` call compiles `_step` for fit's optimizer object (reported
apart); later calls must not re-compile (recorded).

Correctness, checked before timing (the script fails otherwise): the fit step's returned
loss equals the forward loss at the same parameters (relative 1e-5); the gradient of the
step's objective (`eqx.filter_grad`) agrees with a central finite difference in float32,
relative tolerance 1e-2, for the entry with the largest gradient and for the directional
derivative along a fixed random direction, each entry moved by ~1% of its own size (the
figures, typically 1e-4 apart, are recorded).

Diagnostics (job A, --skip-diagnostics to leave out): the ratio, forward and step time
for variants, each against its own forward, interleaved in one run (so their figures
compare with one another, and with the diagnostics' own job A row, not with the main
table's repeats): value_and_grad without the Adam update; the gradient split into its
primal pass (`jax.vjp`, residuals returned) and its backward pass (the vjp applied), each
against the forward; what lesde's two speed-ups of this step buy, each undone in turn:
`solver=diffrax.Tsit5()` (diffrax's loop over the stages inside every step, which reverse
mode recomputes inside the solve's own checkpoint recomputation), PiecewiseLinear with
jax's default `searchsorted` method (a loop of log2(M) iterations inside every stage; a
subclass defined here, lesde is not modified) and both (lesde before the two changes); a
constant E (no schedule lookup); Euler instead of UnrolledTsit5; 2 save times instead of
101; the same step written by hand with `loss.residuals(p, adjoint)` for checkpoints =
steps (control) and for binomial checkpointing (`RecursiveCheckpointAdjoint()`); the same
loss with the solve written by hand as a `lax.scan` of diffrax Tsit5 steps (no
`diffeqsolve`; JAX's own reverse mode of a scan, storing every residual: what a user could
write without lesde); and the dispatch cost of the jitted boundary (a do-nothing
`eqx.filter_jit` function called with `_step`'s arguments, 100 calls).

Usage: python benchmarks/bench_fit.py [--repeats 7] [--calls 5] [--steps 1000]
       [--fit-steps 50] [--skip-diagnostics] [--out benchmarks/results/fit.json]
(smoke run, a minute or two: --quick, i.e. K = 3, 50 solver steps, 11 save times,
2 repeats of 5 calls, 5 fit steps; it writes no file unless --out is given)
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

import lesde
from lesde.fit._fit import _step
from lesde.fit._params import free_parameters, rescale_time

sys.path.insert(0, str(Path(__file__).parent))
from _reference import CompileClock, summary, write_result  # noqa: E402

T_END, LR, SEED = 1000.0, 0.05, 0
FULL = dict(classes=10, per_class=10, ensemble=8, steps=1000, save_times=101, knots=6,
            repeats=7, calls=5, fit_steps=50)
QUICK = dict(classes=3, per_class=4, ensemble=2, steps=50, save_times=11, knots=4,
             repeats=2, calls=5, fit_steps=5)
VALUE_RTOL, FD_RTOL, FD_REL_STEP = 1e-5, 1e-2, 1e-2
TARGET = 4.0
BASELINE = "job A (UnrolledTsit5, compare_all lookup: lesde's defaults)"
UNDONE = ("diffrax.Tsit5 (stage loop)",
          "jax's default searchsorted for the knot lookup (subclass here)",
          "diffrax.Tsit5 + default searchsorted (lesde before both changes)")


class PiecewiseLinearDefaultSearch(lesde.PiecewiseLinear):
    """Diagnostic only: `PiecewiseLinear` with the knot lookup lesde used before, jax's
    default `searchsorted` method (a loop of log2(M) iterations, nested inside every solver
    stage) instead of `method="compare_all"` (one vectorised comparison)."""

    def _interp(self, t):
        ts, vs = self.times, self.values
        if ts.shape[0] == 1:
            return vs[0]
        j = jnp.clip(jnp.searchsorted(ts, t, side="right") - 1, 0, ts.shape[0] - 2)
        w = jnp.clip((t - ts[j]) / (ts[j + 1] - ts[j]), 0.0, 1.0)
        return vs[j] + w * (vs[j + 1] - vs[j])


# --- the jobs ----------------------------------------------------------------------------

def job_a(a, *, schedule=lesde.PiecewiseLinear, constant=False, solver=None, save_times=None):
    """(params, loss) of job A: planted LE-ODE data, a perturbed general E to start from."""
    K, M = a.classes, a.knots
    rng = np.random.default_rng(SEED)
    knots = np.linspace(0.0, T_END, M)
    base = 0.02 * np.eye(K) + 0.004 * (np.ones((K, K)) - np.eye(K))  # int_0^T E / K ~ 2
    planted = np.stack([base * (1 + 0.5 * np.cos(j)) + 0.003 * rng.normal(size=(K, K))
                        for j in range(M)])
    y0 = 0.1 * np.eye(K) + 0.05 * rng.normal(size=(K, K))
    ts = np.linspace(0.0, T_END, a.save_times)
    model = lesde.LEODE(lesde.General(lesde.PiecewiseLinear(knots, planted)), "identity", K)
    xbar = np.asarray(lesde.simulate(model, t1=T_END, dt=T_END / a.steps, y0=y0, ts=ts).ys)
    if save_times is not None:  # a subset of the same data (diagnostic)
        keep = np.round(np.linspace(0, a.save_times - 1, save_times)).astype(int)
        ts, xbar = ts[keep], xbar[keep]
    loss = lesde.fit.ClassMeanLoss(lesde.fit.ClassMeans(ts, xbar), num_steps=a.steps,
                                   solver=solver)
    start = 0.8 * planted + 0.002 * rng.normal(size=planted.shape)
    E = lesde.Constant(start.mean(0)) if constant else schedule(knots, start)
    return lesde.fit.Parameters(lesde.LEODE(lesde.General(E), "identity", K)), loss


def job_b(a):
    """(params, loss) of job B: class means of a planted softmax-CE LE-SDE (8 paths,
    other keys than the loss's), perturbed alpha, beta, sigma to start from."""
    K, M = a.classes, a.knots
    classes = lesde.Classes.balanced(K, a.per_class)
    knots = np.linspace(0.0, T_END, M)
    decay = 1.0 / (1.0 + np.arange(M))

    def model(alpha, beta, sigma):
        impact = lesde.LocallyElastic(lesde.PiecewiseLinear(knots, alpha),
                                      lesde.PiecewiseLinear(knots, beta))
        return lesde.LESDE(impact, "ce", classes,
                           noise=lesde.Noise(independent=lesde.Constant(sigma)))

    alpha, beta, sigma = 0.06 * (0.5 + decay), 0.01 * (0.5 + decay), 0.005
    planted = model(alpha, beta, sigma)
    ts = np.linspace(0.0, T_END, a.save_times)

    def means(key):
        return lesde.simulate(planted, t1=T_END, dt=T_END / a.steps, key=key, ts=ts,
                              fn=lambda t, x, m: m.classes.mean(x)).ys

    keys = jax.random.split(jax.random.key(SEED + 1), a.ensemble)
    xbar = np.asarray(jnp.mean(jax.jit(jax.vmap(means))(keys), axis=0))
    loss = lesde.fit.ClassMeanLoss(lesde.fit.ClassMeans(ts, xbar), num_steps=a.steps,
                                   ensemble=a.ensemble, seed=SEED)
    return lesde.fit.Parameters(model(0.8 * alpha, 1.2 * beta, 1.5 * sigma)), loss


forward = eqx.filter_jit(lambda p, l: l.value(p))


def fit_optimizer(fit_steps):
    """The optimizer `fit` builds by default (method 'adam', learning_rate 0.05, schedule
    'cosine'), written out so as not to depend on lesde's private helper."""
    return optax.adam(optax.cosine_decay_schedule(LR, fit_steps, alpha=0.01))


def step_args(params, loss, fit_steps, optimizer=None):
    """`_step`'s arguments as `fit` builds them (default optimizer: fit's own)."""
    scale = float(max(abs(loss.times[-1]), 1e-12))
    optimizer = optimizer or fit_optimizer(fit_steps)
    diff, static = eqx.partition(rescale_time(params, scale), free_parameters(params))
    return diff, optimizer.init(diff), static, loss, optimizer, scale


def objective(diff, static, loss, scale):
    """The function `_step` differentiates."""
    return loss.value(rescale_time(eqx.combine(diff, static), 1.0 / scale))


def residual_value(adjoint):
    """The least-squares loss with the solve's adjoint given (diagnostic)."""
    return lambda p, loss: jnp.sum(loss.residuals(p, adjoint) ** 2) / loss.num_fit


def scan_value(steps, save_times):
    """Diagnostic: job A's loss with the solve written by hand as a `lax.scan` of diffrax
    Tsit5 steps (no `diffeqsolve`, no checkpointing: JAX's own reverse mode of a scan),
    saving every steps / (save_times - 1) steps; the same E schedule, drift and loss."""
    per, dt = steps // (save_times - 1), T_END / steps

    def value(p, loss):
        model, solver = p.model, diffrax.Tsit5()
        term = diffrax.ODETerm(lambda t, y, args: model.drift(t, y))
        y0 = loss.data.xbar[0]

        def step(carry, i):
            y, state = carry
            y, _, _, state, _ = solver.step(term, i * dt, (i + 1) * dt, y, None, state, False)
            return (y, state), None

        def segment(carry, k):
            carry, _ = jax.lax.scan(step, carry, k * per + jnp.arange(per))
            return carry, carry[0]

        carry = (y0, solver.init(term, 0.0, dt, y0, None))
        _, ys = jax.lax.scan(segment, carry, jnp.arange(save_times - 1))
        ys = jnp.concatenate([y0[None], ys])
        err = jnp.sqrt(loss.weight)[..., None] * (ys - loss.data.xbar) / loss.scale
        return jnp.sum(err**2) / loss.num_fit

    return value


def hand_pair(value_fn, params, args):
    """(forward, step) of `value_fn(params, loss)`, the step written as `_step` is."""
    diff, opt_state, static, loss, optimizer, scale = args
    fwd = eqx.filter_jit(value_fn)

    @eqx.filter_jit
    def step(diff, opt_state, static, loss, optimizer, scale):
        def obj(d):
            return value_fn(rescale_time(eqx.combine(d, static), 1.0 / scale), loss)

        value, grads = eqx.filter_value_and_grad(obj)(diff)
        updates, opt_state = optimizer.update(grads, opt_state, diff)
        return eqx.apply_updates(diff, updates), opt_state, value

    return (lambda: fwd(params, loss)), (lambda: step(*args))


@eqx.filter_jit
def value_and_grad_only(diff, static, loss, scale):
    return eqx.filter_value_and_grad(objective)(diff, static, loss, scale)


@eqx.filter_jit
def primal_pass(diff, static, loss, scale):
    """The forward half of the gradient: the value and the vjp (its residuals: the
    checkpoints) returned, so they are computed."""
    return jax.vjp(lambda d: objective(d, static, loss, scale), diff)


@eqx.filter_jit
def backward_pass(vjp):
    """The backward half: the vjp applied to a unit cotangent."""
    (grads,) = vjp(jnp.ones(()))
    return grads


# --- checks ------------------------------------------------------------------------------

def check(name, params, loss, args):
    """Step value = forward value; gradient = central finite difference (float32)."""
    diff, opt_state, static, loss, optimizer, scale = args
    fwd = float(forward(params, loss))
    _, _, value = _step(*args)
    value = float(value)
    rel_value = abs(value - fwd) / abs(fwd)
    assert rel_value <= VALUE_RTOL, f"{name}: step loss {value} != forward loss {fwd}"

    f = eqx.filter_jit(objective)
    grad = eqx.filter_jit(eqx.filter_grad(objective))(diff, static, loss, scale)
    flat, unravel = jax.flatten_util.ravel_pytree(diff)
    g = np.asarray(jax.flatten_util.ravel_pytree(grad)[0], dtype=np.float64)
    x = np.asarray(flat, dtype=np.float64)
    floor = 1e-3 * float(np.abs(x).max())

    def fd(direction):
        """Central difference along `direction`, step FD_REL_STEP (the direction carries
        each entry's own scale, so every entry moves by ~1% of itself)."""
        up = f(unravel(jnp.asarray(x + FD_REL_STEP * direction, flat.dtype)), static, loss, scale)
        down = f(unravel(jnp.asarray(x - FD_REL_STEP * direction, flat.dtype)), static, loss, scale)
        return (float(up) - float(down)) / (2 * FD_REL_STEP)

    i = int(np.argmax(np.abs(g)))  # the entry with the largest gradient
    e = np.zeros_like(x)
    e[i] = max(abs(x[i]), floor)
    v = np.random.default_rng(SEED).normal(size=x.shape) * np.maximum(np.abs(x), floor)
    out = {"loss_forward": fwd, "loss_step": value, "relative_difference_loss": rel_value,
           "rtol_loss": VALUE_RTOL, "fd_relative_step": FD_REL_STEP, "fd_rtol": FD_RTOL,
           "dtype": str(flat.dtype), "free_scalars": int(x.size)}
    for what, d in (("entry", e), ("random_direction", v)):
        ad, num = float(g @ d), fd(d)
        rel = abs(ad - num) / max(abs(num), 1e-30)
        out[f"gradient_{what}"] = {"autodiff": ad, "finite_difference": num,
                                   "relative_difference": rel}
        assert rel <= FD_RTOL, (f"{name}: gradient ({what}) {ad} != finite difference {num} "
                                f"(relative difference {rel:.3g})")
    out["gradient_entry"]["index"] = i
    return out


# --- timing ------------------------------------------------------------------------------

def per_call(fn, calls):
    t = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t) / calls


def time_pairs(pairs, repeats, calls, extra=None):
    """Interleaved repeats of (forward, step) pairs. `extra(r, runs)` is called once per
    repeat after the pairs. Returns {name: {"forward": [...], "step": [...]}}."""
    runs = {name: {"forward": [], "step": []} for name in pairs}
    for r in range(repeats):
        for name, (fwd, stp) in pairs.items():
            order = (("forward", fwd), ("step", stp))
            for kind, fn in (order if r % 2 == 0 else order[::-1]):
                runs[name][kind].append(per_call(fn, calls))
        if extra is not None:
            extra(r, runs)
    return runs


def ratio_summary_of(ratios):
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "per_repeat": ratios}


def ratio_summary(runs):
    return ratio_summary_of([s / f for s, f in zip(runs["step"], runs["forward"])])


def git_state():
    """The commit of the lesde checkout and its uncommitted files under lesde/ (the
    figures are for the code as it was when the benchmark ran)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--", "lesde")
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted_under_lesde": status.splitlines() if status else []}


def compile_pair(clock, fwd, stp):
    _, fw, fc, _ = clock.timed(fwd)
    _, sw, sc, _ = clock.timed(stp)
    return {"forward_first_call_s": fw, "forward_compile_s": fc,
            "step_first_call_s": sw, "step_compile_s": sc}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: " + str(QUICK))
    ap.add_argument("--repeats", type=int, help="interleaved repeats (>= 5 for figures)")
    ap.add_argument("--calls", type=int, help="calls timed per repeat (>= 5)")
    ap.add_argument("--steps", type=int, help="solver steps (1000)")
    ap.add_argument("--classes", type=int, help="K = p (10)")
    ap.add_argument("--per-class", type=int, help="LE-SDE samples per class (10)")
    ap.add_argument("--ensemble", type=int, help="LE-SDE paths per loss (8)")
    ap.add_argument("--save-times", type=int, help="data times (101)")
    ap.add_argument("--knots", type=int, help="knots of the piecewise-linear schedules (6)")
    ap.add_argument("--fit-steps", type=int, help="steps of the timed fit() calls (50)")
    ap.add_argument("--skip-diagnostics", action="store_true")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/fit.json; "
                                  "none with --quick)")
    a = ap.parse_args(argv)
    for k, v in (QUICK if a.quick else FULL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.out is None and not a.quick:
        a.out = str(Path(__file__).parent / "results" / "fit.json")
    assert a.repeats >= 1 and a.calls >= 1 and a.fit_steps >= 1
    load_at_start = os.getloadavg()
    clock = CompileClock()

    # --- jobs, arguments, correctness
    jobs = {"A": job_a(a), "B": job_b(a)}
    args = {k: step_args(p, l, a.fit_steps) for k, (p, l) in jobs.items()}
    pairs = {k: ((lambda p=p, l=l: forward(p, l)), (lambda x=args[k]: _step(*x)))
             for k, (p, l) in jobs.items()}
    compile_s = {k: compile_pair(clock, *pairs[k]) for k in pairs}
    checks = {k: check(k, *jobs[k], args[k]) for k in jobs}

    # --- fit() calls, interleaved with the main repeats
    params_a, loss_a = jobs["A"]

    def run_fit():
        r, wall, comp, _ = clock.timed(lesde.fit.fit, params_a, loss_a, steps=a.fit_steps,
                                    progress=False, patience=None)
        assert r.stopped == "max_steps" and len(r.history) == a.fit_steps, (r.stopped,
                                                                             len(r.history))
        return wall, comp

    first_fit_wall, first_fit_compile = run_fit()  # compiles _step for fit's optimizer
    fit_runs = {"fit_wall_s": [], "fit_compile_s": [], "step_A_just_before_s": []}

    def fit_repeat(r, runs):
        fit_runs["step_A_just_before_s"].append(per_call(pairs["A"][1], a.calls))
        w, c = run_fit()
        fit_runs["fit_wall_s"].append(w)
        fit_runs["fit_compile_s"].append(c)

    runs = time_pairs(pairs, a.repeats, a.calls, extra=fit_repeat)
    step_a = fit_runs["step_A_just_before_s"]
    n = a.fit_steps
    fit_ratios = {
        "fit() as called": [w / n / s for w, s in zip(fit_runs["fit_wall_s"], step_a)],
        "fit() minus compile seconds in the call":
            [(w - c) / n / s for w, c, s in zip(fit_runs["fit_wall_s"],
                                                fit_runs["fit_compile_s"], step_a)],
    }

    # --- diagnostics
    diagnostics = None
    if not a.skip_diagnostics:
        diagnostics = run_diagnostics(a, clock, jobs["A"], args["A"])

    ratio = {k: ratio_summary(runs[k]) for k in runs}
    result = {
        "job": {
            "A": {"model": "LEODE(General(PiecewiseLinear E), 'identity')", "K": a.classes,
                  "p": a.classes, "knots": a.knots, "free_scalars": checks["A"]["free_scalars"],
                  "t_end": T_END, "save_times": a.save_times, "solver_steps": a.steps,
                  "solver": "lesde.solve.UnrolledTsit5 (the LE-ODE default, 'tsit5')",
                  "schedule_lookup": "searchsorted(method='compare_all') (lesde's)",
                  "adjoint": "RecursiveCheckpointAdjoint(checkpoints=steps) (lesde default)",
                  "loss": "ClassMeanLoss"},
            "B": {"model": "LESDE(LocallyElastic(PiecewiseLinear alpha, beta), 'ce', "
                           "Noise(independent=Constant sigma))", "K": a.classes,
                  "p": a.classes, "per_class": a.per_class, "ensemble": a.ensemble,
                  "knots": a.knots, "free_scalars": checks["B"]["free_scalars"],
                  "t_end": T_END, "save_times": a.save_times, "solver_steps": a.steps,
                  "solver": "euler (LE-SDE default)", "loss": "ClassMeanLoss"},
            "optimizer": f"fit's own: optax.adam(cosine_decay_schedule({LR}, {a.fit_steps}, "
                         "alpha=0.01))",
            "calls_per_repeat": a.calls, "quick": a.quick,
            "dtype": str(jnp.result_type(float)), "target_ratio": TARGET,
        },
        "ratio_step_over_forward": {
            f"A (LE-ODE, UnrolledTsit5, {a.steps} steps)": ratio["A"],
            f"B (LE-SDE ce, Euler, {a.steps} steps, ensemble {a.ensemble})": ratio["B"]},
        "meets_target_A": ratio["A"]["median"] < TARGET,
        "timings_s_per_call": {f"{k} {kind}": summary(runs[k][kind])
                               for k in runs for kind in ("forward", "step")},
        "fit_loop": {
            "ratio_(fit wall / fit_steps) / step": {k: ratio_summary_of(v)
                                                    for k, v in fit_ratios.items()},
            "fit_steps": n,
            "timings_s": {k: summary(v) for k, v in fit_runs.items()},
            "first_fit_call_in_process": {"wall_s": first_fit_wall,
                                          "compile_s": first_fit_compile},
            "later_calls_recompile": any(c > 0.05 for c in fit_runs["fit_compile_s"]),
        },
        "compile_s": compile_s,
        "correctness": checks,
        "diagnostics_A": diagnostics,
        "raw_runs_s": {"pairs": runs, "fit": fit_runs},
        "repeats": a.repeats,
        "extra_versions": {"optax": optax.__version__, "lesde_git": git_state()},
        "load_average_1_5_15min_at_start": load_at_start,
    }
    if a.out:
        write_result(result, a.out, ["ratio_step_over_forward", "meets_target_A"])

    print()
    print(f"{'':72s}{'median':>10s}{'min':>10s}{'max':>10s}")
    print(f"job A: UnrolledTsit5 (lesde's LE-ODE default), {a.steps} steps; job B: Euler, "
          f"ensemble {a.ensemble}")
    rows = [("A forward (ms)", [1e3 * t for t in runs["A"]["forward"]]),
            ("A fit step (ms)", [1e3 * t for t in runs["A"]["step"]]),
            ("A ratio step / forward", ratio["A"]["per_repeat"]),
            ("B forward (ms)", [1e3 * t for t in runs["B"]["forward"]]),
            ("B fit step (ms)", [1e3 * t for t in runs["B"]["step"]]),
            ("B ratio step / forward", ratio["B"]["per_repeat"]),
            (f"fit({n} steps) wall / {n} / A step", fit_ratios["fit() as called"]),
            ("  same, minus compile seconds in the call",
             fit_ratios["fit() minus compile seconds in the call"]),
            ("compile seconds per fit() call (after the first)", fit_runs["fit_compile_s"])]
    for name, v in rows:
        print(f"{name:72s}{statistics.median(v):10.4g}{min(v):10.4g}{max(v):10.4g}")
    if diagnostics:
        print("diagnostics (job A variants, timed together in one interleaved run):")
        print(f"{'  ratio step / forward':72s}{'median':>10s}{'min':>10s}{'max':>10s}"
              f"{'fwd ms':>10s}{'step ms':>10s}")
        for k, v in diagnostics.items():
            if "ratio" in v:
                r = v["ratio"]
                print(f"{'  ' + k:72s}{r['median']:10.4g}{r['min']:10.4g}{r['max']:10.4g}"
                      f"{1e3 * v['forward_s']['median_s']:10.4g}"
                      f"{1e3 * v['step_s']['median_s']:10.4g}")
        d = diagnostics["dispatch: do-nothing filter_jit call with _step's arguments"]
        print(f"  dispatch of a do-nothing filter_jit call with _step's arguments: "
              f"{1e3 * d['median_s']:.3g} ms (median)")
    for k in ("A", "B"):
        c = compile_s[k]
        print(f"{k}: compile forward {c['forward_compile_s']:.2f} s, step "
              f"{c['step_compile_s']:.2f} s; check: loss rel. diff "
              f"{checks[k]['relative_difference_loss']:.1e}, gradient vs FD rel. diff "
              f"{checks[k]['gradient_entry']['relative_difference']:.1e} (entry), "
              f"{checks[k]['gradient_random_direction']['relative_difference']:.1e} "
              f"(random direction)")
    verdict = "meets" if ratio["A"]["median"] < TARGET else "DOES NOT meet"
    print(f"job A ratio {ratio['A']['median']:.2f} (median): {verdict} the target < {TARGET}")


def run_diagnostics(a, clock, job, args):
    """Job A's ratio for variants, each against its own forward, interleaved."""
    params, loss = job
    diff, opt_state, static, _, optimizer, scale = args
    pairs, notes = {}, {}

    def add(name, note, p, l):
        x = step_args(p, l, a.fit_steps, optimizer)
        pairs[name] = ((lambda: forward(p, l)), (lambda: _step(*x)))
        notes[name] = note

    add(BASELINE, "the same as job A, timed again with the diagnostics", params, loss)
    pairs["value_and_grad only (no Adam update)"] = (
        pairs[BASELINE][0],
        lambda: value_and_grad_only(diff, static, loss, scale))
    notes["value_and_grad only (no Adam update)"] = "the step without optimizer.update"
    _, vjp = primal_pass(diff, static, loss, scale)
    pairs["split: primal pass of the gradient (jax.vjp, checkpoints stored)"] = (
        pairs[BASELINE][0], lambda: primal_pass(diff, static, loss, scale))
    notes["split: primal pass of the gradient (jax.vjp, checkpoints stored)"] = (
        "ratio = this pass / forward; residual floats: "
        f"{sum(np.size(x) for x in jax.tree_util.tree_leaves(vjp))}")
    pairs["split: backward pass alone (the vjp applied)"] = (
        pairs[BASELINE][0], lambda: backward_pass(vjp))
    notes["split: backward pass alone (the vjp applied)"] = (
        "ratio = this pass / forward: recomputation of each step from its checkpoint "
        "plus the step's vjp")
    add(UNDONE[0],
        "ClassMeanLoss(solver=diffrax.Tsit5()): diffrax's loop over the stages in every "
        "step instead of lesde's UnrolledTsit5 (same tableau, same results to rounding)",
        *job_a(a, solver=diffrax.Tsit5()))
    add(UNDONE[1],
        "PiecewiseLinear's lookup as lesde had it: jax's default searchsorted method (a "
        "loop) instead of method='compare_all'",
        *job_a(a, schedule=PiecewiseLinearDefaultSearch))
    add(UNDONE[2], "both speed-ups undone", *job_a(a, solver=diffrax.Tsit5(),
                                         schedule=PiecewiseLinearDefaultSearch))
    add("constant E (no schedule lookup)", "E constant in time (100 free scalars)",
        *job_a(a, constant=True))
    add("Euler instead of UnrolledTsit5", "ClassMeanLoss(solver='euler')",
        *job_a(a, solver="euler"))
    add("2 save times instead of the data's", "data at t0 and T only",
        *job_a(a, save_times=2))
    for name, note, value_fn in (
            ("hand step, RecursiveCheckpointAdjoint(checkpoints=steps) (control)",
             "_step written out with loss.residuals(p, adjoint)",
             residual_value(diffrax.RecursiveCheckpointAdjoint(checkpoints=a.steps))),
            ("hand step, RecursiveCheckpointAdjoint() (binomial checkpoints)",
             "diffrax's default online binomial checkpointing",
             residual_value(diffrax.RecursiveCheckpointAdjoint())),
            ("hand-written lax.scan of diffrax Tsit5 steps (no diffeqsolve)",
             "what a user would write without lesde; JAX's reverse mode of a scan",
             scan_value(a.steps, a.save_times) if a.steps % (a.save_times - 1) == 0 else None)):
        if value_fn is not None:
            pairs[name] = hand_pair(value_fn, params, args)
            notes[name] = note

    compiles = {k: compile_pair(clock, *v) for k, v in pairs.items()}
    values = {}
    for k, (fwd, stp) in pairs.items():
        out = stp()  # (diff, opt_state, value), (value, grads), (value, vjp) or grads
        if isinstance(out, tuple):
            values[k] = (float(fwd()), float(out[2] if len(out) == 3 else out[0]))
    for k in UNDONE:  # the same model and loss as job A, computed another way
        rel = abs(values[k][0] - values[BASELINE][0]) / abs(values[BASELINE][0])
        assert rel <= VALUE_RTOL, f"{k}: loss {values[k][0]} != job A's {values[BASELINE][0]}"
    runs = time_pairs(pairs, a.repeats, a.calls)
    out = {}
    for k in pairs:
        out[k] = {"note": notes[k], "ratio": ratio_summary(runs[k]),
                  "forward_s": summary(runs[k]["forward"]), "step_s": summary(runs[k]["step"]),
                  "compile_s": compiles[k], "loss_forward_and_step": values.get(k)}
    # the cost of the filter_jit boundary with _step's arguments: a jitted function that
    # takes them and does nothing (flattening, static-argument hashing, cache lookup,
    # launching an executable)
    noop = eqx.filter_jit(lambda diff, opt_state, static, loss, optimizer, scale: diff)
    jax.block_until_ready(noop(*args))
    dispatch = [per_call(lambda: noop(*args), 100) for _ in range(a.repeats)]
    out["dispatch: do-nothing filter_jit call with _step's arguments"] = summary(dispatch)
    return out


if __name__ == "__main__":
    main()
