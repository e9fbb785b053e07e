"""Trial-steps per second of experiment 1's training, lesde against what a user would
otherwise run, measured side by side in one run:

- **lesde**: `lesde.nets.train_sgd`, all trials vmapped in one compiled scan, the per-step
  log (sample, label, logits before the update, loss) kept in device memory and copied to
  the host once per segment, the validation loss and accuracy every `--eval-every` steps.
- **the LE-SDE authors' PyTorch loop** (if torch is installed: `pip install
  ".[bench-torch]"`; lesde never needs it), written out from their protocol: one trial at
  a time; per step a sample drawn on the host, `model.train()`, forward, cross-entropy,
  `loss.item()`, backward, `optim.SGD` step; then `model.eval()` and the loss and accuracy
  on the whole validation set; a log row (trial, step, sample, label, K logits, training
  loss, validation loss and accuracy) appended to a list, the table built at the end.
  Two variants: *as the authors ran it* (float64 network and data, validation after every
  step) and *the same work as lesde* (float32, validation every `--eval-every` steps).
  torch runs on --torch-threads threads (default 1, its fastest here for batch size 1).
- **a Python loop of a jitted single-trial step** (what a JAX user writes first): one
  `eqx.filter_jit` step (forward, softmax cross-entropy, grad, `optax.sgd` update,
  returning the logits and the loss) called once per step per trial, the sample index
  drawn on the host, the data on the device; a jitted validation at step 0 and every
  `--eval-every` steps; the logged logits and losses copied to the host at the end of
  the trial. The same work and logging as lesde.

The job: LeNet on GeoMNIST (`lesde.nets.geomnist(n_per_class=100)`, K = 3, 240 training
and 60 validation images), plain SGD at learning rate 0.005, batch size 1, 100 trials of
S = 200 steps (--trials, --steps). Throughput is trial-steps per second, compilation
excluded on every side (lesde: `train_sgd` compiles once per configuration, so a warm
call compiles nothing, which the script checks; its warm wall time includes the network
initialisation, the validation passes and assembling the log). The loops are timed on a
few trials (--ref-trials, --torch-trials) and their cost is per trial-step, so they are
scaled to all trials. Repeats are interleaved; medians with min and max.

- **Where lesde's time goes**: the vmapped gradient of LeNet alone (forward and backward
  of one sample per trial, no update, no logging) is timed beside the whole step.
- **At the authors' data size** (--authors-size): 1500 training and 1500 validation
  images (`geomnist(n_per_class=1000, val_fraction=0.5)`), lesde with 10 trials and the
  authors' loop as they ran it, timed on 30 steps (its validation pass over 1500 images
  every step is what it spends its time on).
- **Under load**: with --load N, the lesde run and the jitted loop are timed again while N
  processes spin on the CPU (the 'never slower than the loop under load' check).
- **Correctness**, checked before timing (the script fails otherwise): from trial 0's
  initial network and with the sample indices lesde logged, the jitted loop gives lesde's
  logged training losses (rtol 1e-4) and the PyTorch loop (lesde's initial parameters
  copied in) gives them within rtol 1e-3 in float32 and float64.

Usage: python benchmarks/bench_train.py [--steps 200] [--trials 100] [--repeats 3]
       [--load 2] [--authors-size] [--out benchmarks/results/train.json]
(smoke run, well under a minute: --quick, i.e. 10 trials, 20 steps, 1 repeat; it writes
no file unless --out is given)
"""

import argparse
import os
import statistics
import subprocess
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
FULL = dict(trials=100, steps=200, repeats=3, ref_trials=10, torch_trials=4, eval_every=100)
QUICK = dict(trials=10, steps=20, repeats=1, ref_trials=2, torch_trials=1, eval_every=10)
RTOL_JAX, RTOL_TORCH = 1e-4, 1e-3


# ----------------------------------------------------------------------------- lesde
def run_lesde(data, trials, steps, eval_every):
    return train_sgd(data, network=NETWORK, trials=trials, steps=steps, eval_every=eval_every,
                     learning_rate=LR, seed=SEED)


def initial_network(data, trial):
    """Trial `trial`'s initial network and state, as `train_sgd` builds them."""
    key = jr.fold_in(jr.fold_in(jr.key(SEED), trial), _INIT)
    return make_network(NETWORK, key, input_shape=data.input_shape, num_classes=data.num_classes)


def initial_networks(data, trials):
    """All trials' initial networks as `train_sgd` builds them, vmapped: (params, static,
    states)."""
    nets, states = eqx.filter_vmap(lambda i: initial_network(data, i))(jnp.arange(trials))
    params, static = eqx.partition(nets, eqx.is_inexact_array)
    return params, static, states


def gradient_only(data, trials):
    """The vmapped LeNet gradient of one sample per trial (no update, no logging): the
    part of lesde's step that is the network's own arithmetic. Returns (fn, args)."""
    params, static, states = initial_networks(data, trials)
    x = jnp.asarray(data.x_train)[jnp.arange(trials) % data.x_train.shape[0]]
    y = jnp.asarray(data.y_train)[jnp.arange(trials) % data.x_train.shape[0]]

    def one(p, s, x, y):
        def loss(p):
            logits, _ = eqx.combine(p, static)(x, s)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jax.grad(loss)(p)

    return jax.jit(jax.vmap(one)), (params, states, x, y)


def validation_only(data, trials):
    """One validation pass of every trial, as `train_sgd` runs it. Returns (fn, args)."""
    from lesde.nets._train import _evaluate

    params, static, states = initial_networks(data, trials)
    return (lambda *args: _evaluate(*args, static)), (
        params, states, jnp.asarray(data.x_val), jnp.asarray(data.y_val))


# --------------------------------------------------------------- loop of jitted steps
def make_step_fn(opt):
    """The user's jitted single-trial SGD step: (net, state, opt_state, x, y, j) ->
    (net, opt_state, logits, loss) on training sample j, and the jitted validation
    (net, state, xv, yv) -> (loss, accuracy)."""

    @eqx.filter_jit
    def step_fn(net, state, opt_state, x, y, j):
        def loss_fn(net):
            logits, _ = net(x[j], state)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[j]), logits

        (loss, logits), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(net)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(net, eqx.is_inexact_array))
        return eqx.apply_updates(net, updates), opt_state, logits, loss

    @eqx.filter_jit
    def validate(net, state, xv, yv):
        logits = jax.vmap(lambda xi: net(xi, state, inference=True)[0])(xv)
        return (jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yv)),
                jnp.mean(jnp.argmax(logits, -1) == yv))

    return step_fn, validate


def init_trial(data, opt, trial):
    net, state = initial_network(data, trial)
    return net, state, opt.init(eqx.filter(net, eqx.is_inexact_array))


def reference_trial(fns, init, x, y, xv, yv, indices, eval_every):
    """One trial of the loop, with lesde's logging: per step the sample, its logits and
    loss (kept on the device, copied to the host at the end), the validation loss and
    accuracy at step 0 and after every `eval_every` steps. Returns the losses."""
    step_fn, validate = fns
    net, state, opt_state = init
    rows, vals = [], [validate(net, state, xv, yv)]
    for t, j in enumerate(indices):
        net, opt_state, logits, loss = step_fn(net, state, opt_state, x, y, j)
        rows.append((j, logits, loss))
        if (t + 1) % eval_every == 0:
            vals.append(validate(net, state, xv, yv))
    logits = np.asarray(jnp.stack([r[1] for r in rows]))
    losses = np.asarray(jnp.stack([r[2] for r in rows]))
    jax.device_get(vals)
    return losses, logits


def host_indices(trial, steps, num_train):
    """The indices a user draws on the host, one per step."""
    rng = np.random.default_rng([SEED, trial])
    for _ in range(steps):
        yield np.int32(rng.integers(num_train))


# ------------------------------------------------------------ the authors' torch loop
def torch_lenet(torch, num_classes, dtype):
    """LeNet-5 as the authors define it (conv 6@5x5, pool, conv 16@5x5, pool, fc 120, fc
    84, fc K, ReLU), in `dtype`."""
    nn, F = torch.nn, torch.nn.functional

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84)
            self.fc3, self.pool = nn.Linear(84, num_classes), nn.MaxPool2d(2, 2)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = F.relu(self.fc1(x.view(-1, 16 * 5 * 5)))
            return self.fc3(F.relu(self.fc2(x)))

    return LeNet().to(dtype)


def copy_into_torch(torch, model, net):
    """lesde's LeNet parameters into the torch LeNet (same layouts: OIHW, (out, in))."""
    with torch.no_grad():
        for name in ("conv1", "conv2", "fc1", "fc2", "fc3"):
            t, e = getattr(model, name), getattr(net, name)
            t.weight.copy_(torch.from_numpy(np.array(e.weight)).to(t.weight.dtype))
            t.bias.copy_(torch.from_numpy(np.array(e.bias).reshape(-1)).to(t.bias.dtype))


def torch_trial(torch, model, tensors, indices, trial, validate_every):
    """One trial of the authors' loop. Returns the log table and the training losses."""
    import pandas as pd

    x, y, xv, yv = tensors
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0)
    loss_fn = torch.nn.CrossEntropyLoss()
    rows, val_loss, val_acc = [], float("nan"), float("nan")
    for step, j in enumerate(indices):
        j = int(j)
        model.train()
        out = model(x[j:j + 1])
        loss = loss_fn(out, y[j:j + 1])
        train_loss = loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if (step + 1) % validate_every == 0:
            model.eval()
            with torch.no_grad():
                vo = model(xv)
                val_loss = loss_fn(vo, yv).item()
                val_acc = (vo.argmax(-1) == yv).double().mean().item()
        rows.append((trial, step, j, int(y[j]), *out[0].tolist(), train_loss, val_loss, val_acc))
    k = len(rows[0]) - 7
    cols = ["trial", "itr", "smp", "y", *[f"y_logit{c}" for c in range(k)], "tr_loss",
            "val_loss", "val_acc"]
    return pd.DataFrame(rows, columns=cols), np.asarray([r[4 + k] for r in rows])


def torch_tensors(torch, data, dtype):
    return (torch.from_numpy(np.array(data.x_train)).to(dtype),
            torch.from_numpy(np.asarray(data.y_train, np.int64)),
            torch.from_numpy(np.array(data.x_val)).to(dtype),
            torch.from_numpy(np.asarray(data.y_val, np.int64)))


# ---------------------------------------------------------------------------- load
def spinners(n):
    """`n` processes that keep a core busy until terminated."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: " + str(QUICK))
    ap.add_argument("--trials", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--eval-every", type=int, help="validation schedule of lesde and of the "
                                                   "same-work torch loop")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--ref-trials", type=int, help="jitted-loop trials timed per repeat")
    ap.add_argument("--torch-trials", type=int, help="torch trials timed per repeat")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch's threads (1: a batch-1 LeNet step has nothing to share out, "
                         "and 2 threads were 2.5-9x slower on the 2-core machine)")
    ap.add_argument("--load", type=int, default=0,
                    help="also time lesde and the jitted loop with this many busy processes")
    ap.add_argument("--n-per-class", type=int, default=N_PER_CLASS)
    ap.add_argument("--authors-size", action="store_true",
                    help="also time lesde (10 trials) and the authors' loop as run (30 steps) "
                         "at the authors' data size: 1500 training and 1500 validation images")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/train.json; "
                                  "none with --quick)")
    a = ap.parse_args(argv)
    for k, v in (QUICK if a.quick else FULL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.out is None and not a.quick:
        a.out = str(Path(__file__).parent / "results" / "train.json")
    assert 1 <= a.ref_trials <= a.trials and 1 <= a.torch_trials <= a.trials
    try:
        import torch
    except ImportError:
        torch = None
        print("torch is not installed: the authors' loop is skipped "
              "(pip install '.[bench-torch]')")
    if torch is not None:
        torch.set_num_threads(a.torch_threads)
    load_at_start = os.getloadavg()

    data = geomnist(n_per_class=a.n_per_class)
    num_train = int(data.x_train.shape[0])
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xv, yv = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    clock = CompileClock()

    # lesde's first call compiles; it gives trial 0's log for the checks
    log, first_wall, first_compile, first_phases = clock.timed(
        run_lesde, data, a.trials, a.steps, a.eval_every)
    logged_j = log["sample"].values[0].astype(np.int32)
    lesde_losses = log["train_loss"].values[0]
    assert np.array_equal(log["label"].values[0], data.y_train[logged_j]), "logged labels"

    def rel_diff(losses):
        return float(np.max(np.abs(np.asarray(losses) - lesde_losses) / np.abs(lesde_losses)))

    # correctness: the loops on trial 0 with lesde's indices give lesde's losses
    opt = optax.sgd(LR)
    fns = make_step_fn(opt)
    (losses, _), ref_first_wall, ref_compile, _ = clock.timed(
        reference_trial, fns, init_trial(data, opt, 0), x, y, xv, yv, iter(logged_j),
        a.eval_every)
    check = {"steps": a.steps, "jitted loop: max relative difference": rel_diff(losses)}
    assert check["jitted loop: max relative difference"] <= RTOL_JAX, check
    net0, _ = initial_network(data, 0)
    dtypes = {} if torch is None else {"float64": torch.float64, "float32": torch.float32}
    for name, dtype in dtypes.items():
        model = torch_lenet(torch, data.num_classes, dtype)
        copy_into_torch(torch, model, net0)
        _, tl = torch_trial(torch, model, torch_tensors(torch, data, dtype), logged_j, 0,
                            a.eval_every)
        check[f"torch {name}: max relative difference"] = rel_diff(tl)
        assert check[f"torch {name}: max relative difference"] <= RTOL_TORCH, check
    print("correctness (trial 0, training losses against lesde's log):", check, flush=True)

    grad_fn, grad_args = gradient_only(data, a.trials)
    jax.block_until_ready(grad_fn(*grad_args))
    val_fn, val_args = validation_only(data, a.trials)
    jax.block_until_ready(val_fn(*val_args))
    passes = len(set(range(0, a.steps, a.eval_every)) | {a.steps})
    inits = [init_trial(data, opt, i) for i in range(a.ref_trials)]
    jax.block_until_ready(inits)
    variants = {}  # name -> (dtype, validate_every)
    if torch is not None:
        variants = {"authors' loop as run (float64, validation every step)": (torch.float64, 1),
                    f"authors' loop, same work (float32, validation every {a.eval_every})":
                        (torch.float32, a.eval_every)}
    tensors = {name: torch_tensors(torch, data, dt) for name, (dt, _) in variants.items()}

    def time_lesde():
        _, w, c, phases = clock.timed(run_lesde, data, a.trials, a.steps, a.eval_every)
        assert "backend_compile_duration" not in phases, f"a warm train_sgd call compiled: {phases}"
        return a.trials * a.steps / w, w

    def time_loop():
        t = time.perf_counter()
        for i in range(a.ref_trials):
            reference_trial(fns, inits[i], x, y, xv, yv, host_indices(i, a.steps, num_train),
                            a.eval_every)
        return a.ref_trials * a.steps / (time.perf_counter() - t)

    def time_torch(name):
        dtype, every = variants[name]
        t = 0.0
        for i in range(a.torch_trials):
            model = torch_lenet(torch, data.num_classes, dtype)  # the authors' init
            t0 = time.perf_counter()
            torch_trial(torch, model, tensors[name], host_indices(i, a.steps, num_train), i, every)
            t += time.perf_counter() - t0
        return a.torch_trials * a.steps / t

    def time_gradient():
        t = time.perf_counter()
        jax.block_until_ready(grad_fn(*grad_args))
        return a.trials / (time.perf_counter() - t)

    def time_validation():
        t = time.perf_counter()
        jax.block_until_ready(val_fn(*val_args))
        return time.perf_counter() - t

    tps = {k: [] for k in ("lesde", "loop of jitted steps", "lesde gradient only", *variants)}
    lesde_wall, val_pass = [], []
    for _ in range(a.repeats):  # interleaved, so machine noise hits all alike
        v, w = time_lesde()
        tps["lesde"].append(v)
        lesde_wall.append(w)
        tps["loop of jitted steps"].append(time_loop())
        tps["lesde gradient only"].append(
            statistics.median([time_gradient() for _ in range(5)]))
        val_pass.append(statistics.median([time_validation() for _ in range(3)]))
        for name in variants:
            tps[name].append(time_torch(name))
        print({k: round(v[-1]) for k, v in tps.items()}, flush=True)

    loaded = {}
    if a.load:
        procs = spinners(a.load)
        try:
            time.sleep(1.0)
            loaded = {"lesde": [], "loop of jitted steps": []}
            for _ in range(a.repeats):
                loaded["lesde"].append(time_lesde()[0])
                loaded["loop of jitted steps"].append(time_loop())
                print("under load:", {k: round(v[-1]) for k, v in loaded.items()}, flush=True)
        finally:
            stop(procs)

    at_size = {}
    if a.authors_size and torch is not None:
        big = geomnist(n_per_class=1000, val_fraction=0.5)  # 500 + 500 per class
        big_trials, big_steps = 10, 30
        run_lesde(big, big_trials, a.steps, a.eval_every)  # compiles for the new shapes
        big_tensors = torch_tensors(torch, big, torch.float64)
        at_size = {"lesde": [], "authors' loop as run (float64, validation every step)": []}
        for i in range(2):
            w = clock.timed(run_lesde, big, big_trials, a.steps, a.eval_every)[1]
            at_size["lesde"].append(big_trials * a.steps / w)
            t = time.perf_counter()
            torch_trial(torch, torch_lenet(torch, big.num_classes, torch.float64), big_tensors,
                        host_indices(i, big_steps, int(big.x_train.shape[0])), i, 1)
            at_size["authors' loop as run (float64, validation every step)"].append(
                big_steps / (time.perf_counter() - t))
            print("at the authors' data size:", {k: round(v[-1], 1) for k, v in at_size.items()},
                  flush=True)

    def ratio(num, den):
        r = [p / q for p, q in zip(num, den)]
        return {"median": statistics.median(r), "min": min(r), "max": max(r)}

    ratios = {"lesde / loop of jitted steps": ratio(tps["lesde"], tps["loop of jitted steps"])}
    for name in variants:
        ratios[f"lesde / {name}"] = ratio(tps["lesde"], tps[name])
    step_s = [1.0 / v for v in tps["lesde"]]
    grad_s = [1.0 / v for v in tps["lesde gradient only"]]
    gradient_share = statistics.median(g / s for g, s in zip(grad_s, step_s))
    validation_share = statistics.median(passes * v / w for v, w in zip(val_pass, lesde_wall))
    if at_size:
        ratios["at the authors' data size: lesde / authors' loop as run"] = ratio(
            at_size["lesde"], at_size["authors' loop as run (float64, validation every step)"])
    if loaded:
        ratios[f"under load ({a.load} busy processes): lesde / loop of jitted steps"] = ratio(
            loaded["lesde"], loaded["loop of jitted steps"])

    result = {
        "job": {"network": NETWORK, "dataset": f"geomnist(n_per_class={a.n_per_class})",
                "num_classes": int(data.num_classes), "train_samples": num_train,
                "val_samples": int(data.x_val.shape[0]), "learning_rate": LR,
                "batch_size": 1, "trials": a.trials, "steps": a.steps,
                "eval_every": a.eval_every, "jitted_loop_trials_timed": a.ref_trials,
                "torch_trials_timed": a.torch_trials, "load_processes": a.load,
                "authors_size": a.authors_size,
                "torch": None if torch is None else torch.__version__,
                "torch_threads": None if torch is None else torch.get_num_threads(),
                "quick": a.quick},
        "throughput_trial_steps_per_s": {k: summary(v) for k, v in tps.items()},
        "throughput_under_load_trial_steps_per_s": {k: summary(v) for k, v in loaded.items()},
        "throughput_at_authors_data_size_trial_steps_per_s": {
            k: summary(v) for k, v in at_size.items()},
        "ratios": ratios,
        "lesde_gradient_share_of_step": gradient_share,
        "lesde_validation_share_of_run": validation_share,
        "lesde_validation_pass_s": summary(val_pass),
        "lesde_warm_call_s": summary(lesde_wall),
        "compile_s": {"lesde first call": first_compile, "lesde first call wall": first_wall,
                      "lesde first call by phase": first_phases, "lesde warm calls": 0.0,
                      "jitted step": ref_compile, "jitted loop first trial wall": ref_first_wall},
        "correctness": check,
        "repeats": a.repeats,
        "load_average_1_5_15min_at_start": load_at_start,
    }
    if a.out:
        write_result(result, a.out, ["throughput_trial_steps_per_s", "ratios", "correctness"])
    print()
    print(f"{'trial-steps per second':62s}{'median':>10s}{'min':>10s}{'max':>10s}")
    for name, v in [*tps.items(), *((f"under load: {k}", v) for k, v in loaded.items()),
                    *((f"authors' size: {k}", v) for k, v in at_size.items())]:
        print(f"{name:62s}{statistics.median(v):10.4g}{min(v):10.4g}{max(v):10.4g}")
    for name, r in ratios.items():
        print(f"{name:62s}{r['median']:10.3g}{r['min']:10.3g}{r['max']:10.3g}")
    print(f"of lesde's run, the vmapped gradient is {gradient_share:.0%} and the {passes} "
          f"validation passes {validation_share:.0%}; first lesde call "
          f"{first_wall:.2f} s (compile {first_compile:.2f} s), warm calls compile nothing")


if __name__ == "__main__":
    main()
