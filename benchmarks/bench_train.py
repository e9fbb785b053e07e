"""Trial-steps per second of experiment 1's training: `lesde.nets.train_sgd` with 100
trials vmapped against a Python loop over trials of a jitted single-trial SGD step (what a
user would write), measured in the same run.

The job: LeNet on GeoMNIST (`lesde.nets.geomnist(n_per_class=100)`, K = 3, 80/20 split:
240 training images), plain SGD (`optax.sgd(0.005)`), batch size 1, 100 independent
trials of S = 200 steps (--trials, --steps). Throughput is in trial-steps per second
(trials x steps / run time), compilation excluded on both sides.

- lesde: `train_sgd(data, network="lenet", trials=100, steps=S, eval_every=S,
  learning_rate=0.005)`. `train_sgd` builds its jitted functions inside each call, so
  EVERY call traces and compiles afresh (a second call does not reuse the first's
  compilation), and each call also has fixed costs that are not steps (network init, the
  validation passes at step 0 and at the end, assembling the log). The run time per step
  is therefore taken from two calls, one of S steps and one of S0 = S // 10 steps
  (--short-steps), each with eval_every = its own steps (so both do exactly two validation
  passes and compile the same two functions), as

      per_step = ((wall_S - compile_S) - (wall_S0 - compile_S0)) / (S - S0),

  compile_* being that call's trace + lowering + XLA compile time summed from
  `jax.monitoring` events. The difference removes the fixed costs; subtracting the
  compile times removes the noise of compilation (a few seconds, varying from call to
  call) from the difference. lesde trial-steps/s = trials / per_step. Also reported: the
  plain slope without subtracting compile times (a cross-check), the compile time of each
  call, the fixed per-call cost, the wall time of a whole S-step call, and the first call
  in the process (a warm-up, not timed with the repeats: it also compiles the one-off
  eager operations of the network init).
- reference: one `eqx.filter_jit` step function (forward, softmax cross-entropy, grad,
  `optax.sgd` update) called once per step per trial in `for trial: for step:`, the
  sample index drawn on the host with `numpy` (`default_rng([seed, trial])`) and passed
  in, the data resident on the device, `block_until_ready` at the end of each trial.
  Initial networks are `make_network("lenet", ...)` with the keys `train_sgd` uses (the
  same initial parameters as lesde's trials), built before the timer. Only --ref-trials
  trials are timed per repeat (their cost per trial-step is constant) and the time is
  scaled linearly to all trials. Its compilation is one call, reported apart.
- Repeats are interleaved (lesde S call, lesde S0 call, reference trials), median / min /
  max over --repeats.
- Correctness, checked before timing (the script fails otherwise): the reference loop run
  on trial 0's initial parameters with the sample indices logged by `train_sgd` gives
  the logged `train_loss` of trial 0 at every step (rtol 1e-4) and the logged labels.

Usage: python benchmarks/bench_train.py [--steps 200] [--trials 100] [--repeats 3]
       [--ref-trials 10] [--out benchmarks/results/train.json]
(smoke run, well under a minute: --quick, i.e. 10 trials, 20 steps, 1 repeat, 2 reference
trials; it writes no file unless --out is given)
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from lesde.nets import geomnist, make_network, train_sgd
from lesde.nets._train import _INIT  # the stream of a trial's key that seeds its init

sys.path.insert(0, str(Path(__file__).parent))
from _reference import CompileClock, summary, write_result  # noqa: E402

NETWORK, LR, SEED, N_PER_CLASS = "lenet", 0.005, 0, 100
FULL = dict(trials=100, steps=200, repeats=3, ref_trials=10)
QUICK = dict(trials=10, steps=20, repeats=1, ref_trials=2)
RTOL = 1e-4


def run_lesde(data, trials, steps):
    return train_sgd(data, network=NETWORK, trials=trials, steps=steps, eval_every=steps,
                     learning_rate=LR, seed=SEED)


def make_step_fn(opt):
    """The user's jitted single-trial SGD step: (net, state, opt_state, x, y, j) ->
    (net, opt_state, loss) on training sample j."""

    @eqx.filter_jit
    def step_fn(net, state, opt_state, x, y, j):
        def loss_fn(net):
            logits, _ = net(x[j], state)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[j])

        loss, grads = eqx.filter_value_and_grad(loss_fn)(net)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(net, eqx.is_inexact_array))
        return eqx.apply_updates(net, updates), opt_state, loss

    return step_fn


def init_trial(data, opt, trial):
    """Trial `trial`'s initial network, state and optimiser state, as in `train_sgd`."""
    key = jr.fold_in(jr.fold_in(jr.key(SEED), trial), _INIT)
    net, state = make_network(NETWORK, key, input_shape=data.input_shape,
                              num_classes=data.num_classes)
    return net, state, opt.init(eqx.filter(net, eqx.is_inexact_array))


def reference_trial(step_fn, init, x, y, indices):
    """One trial of the loop; `indices` an iterator of sample indices. Returns the losses."""
    net, state, opt_state = init
    losses = []
    for j in indices:
        net, opt_state, loss = step_fn(net, state, opt_state, x, y, j)
        losses.append(loss)
    jax.block_until_ready((net, losses))
    return losses


def host_indices(trial, steps, num_train):
    """The indices a user draws on the host, one per step."""
    rng = np.random.default_rng([SEED, trial])
    for _ in range(steps):
        yield np.int32(rng.integers(num_train))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: " + str(QUICK))
    ap.add_argument("--trials", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--short-steps", type=int, help="S0 of the short lesde call (S // 10)")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--ref-trials", type=int, help="reference trials timed per repeat")
    ap.add_argument("--n-per-class", type=int, default=N_PER_CLASS)
    ap.add_argument("--out", help="results JSON (default benchmarks/results/train.json; "
                                  "none with --quick)")
    a = ap.parse_args(argv)
    for k, v in (QUICK if a.quick else FULL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.short_steps is None:
        a.short_steps = max(2, a.steps // 10)
    if a.out is None and not a.quick:
        a.out = str(Path(__file__).parent / "results" / "train.json")
    assert 2 <= a.short_steps < a.steps, "need 2 <= --short-steps < --steps"
    assert 1 <= a.ref_trials <= a.trials, "need 1 <= --ref-trials <= --trials"
    load_at_start = os.getloadavg()

    data = geomnist(n_per_class=a.n_per_class)
    num_train = int(data.x_train.shape[0])
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    clock = CompileClock()

    # lesde's first call in the process (warm-up) gives trial 0's log for the check
    log, first_wall, first_compile, first_phases = clock.timed(run_lesde, data, a.trials,
                                                               a.steps)

    # correctness: the reference loop on trial 0 with lesde's indices gives lesde's losses
    opt = optax.sgd(LR)
    step_fn = make_step_fn(opt)
    init0 = init_trial(data, opt, 0)
    logged_j = log["sample"].values[0].astype(np.int32)
    assert np.array_equal(log["label"].values[0], data.y_train[logged_j]), "logged labels"
    losses, ref_first_wall, ref_compile, _ = clock.timed(
        reference_trial, step_fn, init0, x, y, iter(logged_j))
    ref_losses = np.asarray(losses)
    lesde_losses = log["train_loss"].values[0]
    rel = np.abs(ref_losses - lesde_losses) / np.abs(lesde_losses)
    assert np.allclose(ref_losses, lesde_losses, rtol=RTOL, atol=0.0), (
        f"reference and lesde losses of trial 0 differ: max relative difference {rel.max():.3g}")
    check = {"trial": 0, "steps": a.steps, "max_relative_difference_train_loss": float(rel.max()),
             "rtol": RTOL, "labels_equal": True}

    inits = [init_trial(data, opt, i) for i in range(a.ref_trials)]
    jax.block_until_ready(inits)
    runs = {k: [] for k in ("wall_S", "compile_S", "wall_S0", "compile_S0", "ref_trials_s")}
    for _ in range(a.repeats):  # interleaved, so machine noise hits both alike
        _, w, c, _ = clock.timed(run_lesde, data, a.trials, a.steps)
        runs["wall_S"].append(w)
        runs["compile_S"].append(c)
        _, w, c, _ = clock.timed(run_lesde, data, a.trials, a.short_steps)
        runs["wall_S0"].append(w)
        runs["compile_S0"].append(c)
        t = 0.0
        for i in range(a.ref_trials):
            t0 = time.perf_counter()
            reference_trial(step_fn, inits[i], x, y, host_indices(i, a.steps, num_train))
            t += time.perf_counter() - t0
        runs["ref_trials_s"].append(t)

    ds = a.steps - a.short_steps
    per_step = [((ws - cs) - (w0 - c0)) / ds for ws, cs, w0, c0 in
                zip(runs["wall_S"], runs["compile_S"], runs["wall_S0"], runs["compile_S0"])]
    raw_slope = [(ws - w0) / ds for ws, w0 in zip(runs["wall_S"], runs["wall_S0"])]
    fixed = [ws - cs - a.steps * p for ws, cs, p in
             zip(runs["wall_S"], runs["compile_S"], per_step)]
    lesde_tps = [a.trials / p for p in per_step]
    lesde_tps_raw = [a.trials / p for p in raw_slope]
    ref_tps = [a.ref_trials * a.steps / t for t in runs["ref_trials_s"]]
    ref_all = [t / a.ref_trials * a.trials for t in runs["ref_trials_s"]]
    ratio = [le / r for le, r in zip(lesde_tps, ref_tps)]
    lesde_run = [a.steps * p for p in per_step]

    result = {
        "job": {"network": NETWORK, "dataset": f"geomnist(n_per_class={a.n_per_class})",
                "num_classes": int(data.num_classes), "train_samples": num_train,
                "val_samples": int(data.x_val.shape[0]), "optimizer": f"optax.sgd({LR})",
                "batch_size": 1, "trials": a.trials, "steps": a.steps,
                "short_steps (S0)": a.short_steps, "trial_steps": a.trials * a.steps,
                "lesde": f"train_sgd(trials={a.trials}, steps=S, eval_every=S); per step = "
                         "((wall_S - compile_S) - (wall_S0 - compile_S0)) / (S - S0)",
                "reference": "Python loop over trials and steps of one eqx.filter_jit SGD "
                             "step, index drawn on the host with numpy, data on device",
                "reference_trials_timed": a.ref_trials, "quick": a.quick},
        "throughput_trial_steps_per_s": {
            "lesde (vmapped, compile and fixed per-call costs excluded)": summary(lesde_tps),
            "reference (python loop of jitted steps)": summary(ref_tps),
            "lesde, plain slope of wall times (cross-check)": summary(lesde_tps_raw)},
        "speedup_lesde_over_reference": {
            "median": statistics.median(ratio), "min": min(ratio), "max": max(ratio)},
        "timings_s": {
            f"lesde run of {a.trials} trials x {a.steps} steps (per_step x S)": summary(lesde_run),
            f"reference {a.trials} trials x {a.steps} steps (EXTRAPOLATED from "
            f"{a.ref_trials} trials)": summary(ref_all),
            f"reference {a.ref_trials} timed trials": summary(runs["ref_trials_s"]),
            "lesde whole call, S steps (compile + fixed + run)": summary(runs["wall_S"]),
            "lesde whole call, S0 steps": summary(runs["wall_S0"]),
            "lesde fixed per-call cost (init, 2 validations, log; no compile)": summary(fixed),
        },
        "compile_s": {
            "lesde, every call (S-step call)": summary(runs["compile_S"]),
            "lesde, every call (S0-step call)": summary(runs["compile_S0"]),
            "lesde first call in process: wall": first_wall,
            "lesde first call in process: compile": first_compile,
            "lesde first call in process: compile by phase": first_phases,
            "reference step_fn (once), with the first trial's wall": {
                "compile": ref_compile, "first_trial_wall": ref_first_wall},
        },
        "correctness": check,
        "raw_runs_s": runs,
        "repeats": a.repeats,
        "load_average_1_5_15min_at_start": load_at_start,
    }
    if a.out:
        write_result(result, a.out, ["throughput_trial_steps_per_s",
                                     "speedup_lesde_over_reference", "compile_s"])
    print()
    print(f"{'':44s}{'median':>10s}{'min':>10s}{'max':>10s}")
    rows = [("lesde, trial-steps/s", lesde_tps),
            ("reference loop, trial-steps/s", ref_tps),
            ("speed-up lesde / reference", ratio),
            ("lesde plain slope (check), trial-steps/s", lesde_tps_raw),
            ("lesde compile, every call (s)", runs["compile_S"]),
            ("lesde fixed per-call cost (s)", fixed),
            ("lesde whole S-step call (s)", runs["wall_S"]),
            (f"reference {a.trials} trials, extrap. (s)", ref_all)]
    for name, v in rows:
        print(f"{name:44s}{statistics.median(v):10.4g}{min(v):10.4g}{max(v):10.4g}")
    print(f"first lesde call {first_wall:.2f} s (compile {first_compile:.2f} s); reference "
          f"step compile {ref_compile:.2f} s; trial 0 losses agree to {rel.max():.2g} (rel)")


if __name__ == "__main__":
    main()
