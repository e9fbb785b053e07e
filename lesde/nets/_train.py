"""Training real networks with optax, vmapped over independent trials, with the logs of
the two experiments the theories are tested on.

- `train_sgd` (experiment 1, the LE-SDE authors'): plain SGD, batch size 1; per step the
  drawn sample, its label, its logits before the update and its loss; validation every
  `eval_every` steps; optional snapshots of the logits of all training samples.
- `train_separation` (experiment 2, the spring-block authors'): Adam on the BatchNorm MLP
  over a grid of nonlinearity and noise; per-layer separation D_l at chosen epochs, the load
  curve and test accuracy.

Trial i of a run depends only on (seed, i): running trials [0, 1, 2] together gives the
same trials as running each alone.
"""

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import xarray as xr

from .._checks import check_positive_int, show
from ..metrics import (
    load_curve,
    ntk_impact,
    separation_fuzziness,
    separation_gains,
    separation_law,
    trace_ratio,
)
from ..solve import ChunkStore
from ._data import Dataset
from ._networks import apply, make_network

# Independent streams of one trial's key.
_INIT, _DATA, _DROPOUT, _NOISE = 0, 1, 2, 3


def _ce(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _trial_ids(trials: Any) -> np.ndarray:
    if isinstance(trials, bool):
        raise ValueError(f"trials must be a positive int or a list of trial ids; got {trials!r}")
    if isinstance(trials, int | np.integer):
        if trials < 1:
            raise ValueError(f"trials must be >= 1; got {trials}")
        return np.arange(int(trials))
    ids = np.asarray(trials)
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu" or (ids < 0).any():
        raise ValueError(f"trials must be a positive int or a list of ids >= 0; got {show(trials)}")
    if len(set(ids.tolist())) != ids.size:
        raise ValueError(f"trials: ids must be distinct; got {show(trials)}")
    return ids


def _positive(name: str, value: Any, integer: bool = False) -> Any:
    """A positive int (`integer`; `check_positive_int`) or a finite number > 0, named by
    `name` in the error."""
    if integer:
        return check_positive_int(name, value)
    bad = isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)
    if bad or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {show(value)}")
    return float(value)


def log_spaced_steps(steps: int, num: int, multiple: int = 1) -> np.ndarray:
    """About `num` log-spaced steps in [0, steps], rounded to multiples of `multiple`,
    always including 0 and `steps` (the snapshot times of a long run)."""
    steps = _positive("steps", steps, integer=True)
    num = _positive("num", num, integer=True)
    grid = np.unique(np.round(np.geomspace(1, steps + 1, num) - 1).astype(int))
    grid = np.unique(np.concatenate([[0], (grid // multiple) * multiple, [steps]]))
    return grid


def train_sgd(
    data: Dataset,
    *,
    network: str = "lenet",
    network_options: dict | None = None,
    trials: int | Sequence[int] = 100,
    steps: int = 10_000,
    learning_rate: float = 0.005,
    eval_every: int = 100,
    snapshot_steps: Sequence[int] | None = None,
    impact_steps: Sequence[int] | None = None,
    impact_samples: int = 10,
    sampling: str = "uniform",
    seed: int = 0,
    progress: bool = False,
) -> xr.Dataset:
    r"""Train independent trials of a network with plain SGD, batch size 1, no momentum or
    weight decay, all trials as one vmapped computation (experiment 1).

    At step t (t = 0..steps-1) trial i draws a training sample j_t (uniformly with
    replacement, `sampling="uniform"`, or from a fresh permutation each epoch,
    `sampling="epoch"`) and updates

        w <- w - eta grad_w CE(f(x_j, w), y_j),

    logging j_t, y_j, the logits f(x_j, w) *before* the update and the loss. After every
    `eval_every` updates (and at 0 and at the end) it evaluates the validation loss and
    accuracy; at `snapshot_steps` (each a multiple of `eval_every`, or `steps`) it saves
    the logits of all training samples; at `impact_steps` (likewise) it measures each
    trial's class-level impact matrix from its empirical neural tangent kernel on the
    first `impact_samples` training samples of each class (`lesde.metrics.ntk_impact`
    with the learning rate, so E_hat is in the units of the LE-SDE impact with time in
    SGD steps).

    **Arguments:**
    - `data`: a `Dataset` (its training labels are the ones trained on: corrupt them with
      `corrupt_labels` / `Dataset.with_train_labels` first).
    - `network`: "lenet", "mlp" or "bn_mlp" (BatchNorm needs batches of >= 2: refused
      here), `network_options` its constructor options.
    - `trials`: a count (ids 0..T-1) or explicit ids; trial i depends only on (seed, i).
    - `steps`, `learning_rate`, `eval_every`, `sampling`, `seed`; `progress`: a tqdm bar.

    **Returns:** the trajectory log (`lesde.io.make_log` format) with dims trial, step,
    class, eval_step; with snapshots, also `features` (trial, snapshot_step, train_sample,
    class) and `train_labels` (train_sample); with impact steps, `impact` (trial,
    impact_step, class_row, class_col) and `impact_ratio` (trial, impact_step), the
    local-elasticity ratio.
    """
    from ..io import make_log

    ids = _trial_ids(trials)
    steps = _positive("steps", steps, integer=True)
    eta = _positive("learning_rate", learning_rate)
    eval_every = _positive("eval_every", eval_every, integer=True)
    if sampling not in ("uniform", "epoch"):
        raise ValueError(f"sampling must be 'uniform' or 'epoch'; got {sampling!r}")
    eval_steps = np.unique(np.concatenate([np.arange(0, steps, eval_every), [steps]]))
    snaps = np.zeros(0, int) if snapshot_steps is None else np.unique(np.asarray(snapshot_steps, int))
    impacts = np.zeros(0, int) if impact_steps is None else np.unique(np.asarray(impact_steps, int))
    for name, chosen in (("snapshot_steps", snaps), ("impact_steps", impacts)):
        bad = [int(s) for s in chosen if s not in set(eval_steps.tolist())]
        if bad:
            raise ValueError(
                f"{name} must be multiples of eval_every={eval_every} in [0, {steps}] "
                f"(or {steps}); got {bad[:5]}"
            )
    impact_idx = _impact_samples(data, impact_samples) if impacts.size else None
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xv, yv = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    num_train, k = x.shape[0], data.num_classes
    opts = dict(network_options or {})

    root = jr.key(seed)
    keys = jax.vmap(lambda i: jr.fold_in(root, i))(jnp.asarray(ids))
    nets, states = eqx.filter_vmap(
        lambda kk: make_network(network, jr.fold_in(kk, _INIT), input_shape=data.input_shape, num_classes=k, **opts)
    )(keys)
    if nets.uses_batch_stats:
        raise ValueError(f"network {network!r} normalises by batch statistics; batch size 1 cannot train it")
    params, static = eqx.partition(nets, eqx.is_inexact_array)
    opt_state = jax.vmap(optax.sgd(eta).init)(params)

    def segment(p, o, s, keys, ts, x, y):
        return _sgd_segment(p, o, s, keys, ts, x, y, static, eta, sampling)

    def evaluate(p, s, xv, yv):
        return _evaluate(p, s, xv, yv, static)

    def snapshot(p, s, x):
        return _snapshot(p, s, x, static)

    n = ids.size
    log = dict(
        sample=np.zeros((n, steps), np.int32),
        label=np.zeros((n, steps), np.int32),
        logits=np.zeros((n, steps, k), np.float32),
        train_loss=np.zeros((n, steps), np.float32),
    )
    val_loss = np.full((n, eval_steps.size), np.nan, np.float32)
    val_acc = np.full((n, eval_steps.size), np.nan, np.float32)
    feats = np.zeros((n, snaps.size, num_train, k), np.float32)
    impact = np.zeros((n, impacts.size, k, k), np.float32)
    ratio = np.zeros((n, impacts.size), np.float32)
    bar = _bar(progress, steps, "SGD steps")
    try:
        for e, t0 in enumerate(eval_steps):
            if xv.shape[0]:
                vl, va = evaluate(params, states, xv, yv)
                val_loss[:, e], val_acc[:, e] = np.asarray(vl), np.asarray(va)
            if t0 in snaps:
                feats[:, int(np.searchsorted(snaps, t0))] = np.asarray(snapshot(params, states, x))
            if t0 in impacts:
                i = int(np.searchsorted(impacts, t0))
                for tr in range(n):
                    model = jax.tree.map(lambda a: a[tr] if eqx.is_array(a) else a, (eqx.combine(params, static), states))
                    est = ntk_impact(_eval_logits, model, x[impact_idx], y[impact_idx], k, learning_rate=eta)
                    impact[tr, i], ratio[tr, i] = np.asarray(est.matrix), float(est.ratio)
            if t0 == steps:
                break
            t1 = min(t0 + eval_every, steps)
            (params, opt_state), rows = segment(params, opt_state, states, keys, jnp.arange(t0, t1), x, y)
            for name, arr in zip(log, rows):
                log[name][:, t0:t1] = np.asarray(arr)
            bar.update(t1 - t0)
            if xv.shape[0]:
                bar.set_postfix(val_acc=f"{np.nanmean(val_acc[:, e]):.3f}")
    finally:
        bar.close()
    if not xv.shape[0]:
        eval_steps = eval_steps[:0]
        val_loss, val_acc = val_loss[:, :0], val_acc[:, :0]
    ds = make_log(
        log["sample"], log["label"], log["logits"], log["train_loss"], val_loss, val_acc,
        eval_steps=eval_steps,
        trials=ids,
        attrs=dict(network=network, learning_rate=eta, sampling=sampling, seed=int(seed), dataset=data.name),
    )
    if snaps.size:
        ds["features"] = (("trial", "snapshot_step", "train_sample", "class"), feats)
        ds = ds.assign_coords(snapshot_step=snaps)
        ds["train_labels"] = ("train_sample", np.asarray(data.y_train, np.int32))
    if impacts.size:
        ds["impact"] = (("trial", "impact_step", "class_row", "class_col"), impact)
        ds["impact_ratio"] = (("trial", "impact_step"), ratio)
        ds = ds.assign_coords(impact_step=impacts)
        ds.attrs["impact_samples_per_class"] = int(impact_samples)
    return ds


@eqx.filter_jit
def _sgd_segment(p, o, s, keys, ts, x, y, static, eta, sampling):
    """SGD steps `ts` of every trial (vmapped), batch size 1: per step the drawn sample,
    its label, its logits before the update and its loss. Compiled once per shape and
    configuration (`eta`, `sampling` static), not per call: a run in blocks of trials
    compiles once."""
    opt = optax.sgd(eta)
    num_train = x.shape[0]

    def draw(key, t):
        kd = jr.fold_in(jr.fold_in(key, _DATA), t)
        if sampling == "uniform":
            return jr.randint(kd, (), 0, num_train)
        perm = jr.permutation(jr.fold_in(jr.fold_in(key, _DATA), -1 - t // num_train), num_train)
        return perm[t % num_train]

    def one_trial(p, o, s, key):
        def step(carry, t):
            p, o = carry
            j = draw(key, t)

            def loss_fn(p):
                net = eqx.combine(p, static)
                logits, _ = net(x[j], s, key=jr.fold_in(jr.fold_in(key, _DROPOUT), t))
                return _ce(logits, y[j]), logits

            (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
            updates, o = opt.update(g, o, p)
            return (optax.apply_updates(p, updates), o), (j, y[j], logits, loss)

        return jax.lax.scan(step, (p, o), ts)

    return jax.vmap(one_trial)(p, o, s, keys)


@eqx.filter_jit
def _evaluate(p, s, xv, yv, static):
    """Validation loss and accuracy of every trial (vmapped), in evaluation mode."""
    def one(p, s):
        logits, _, _ = apply(eqx.combine(p, static), xv, s, inference=True)
        return jnp.mean(_ce(logits, yv)), jnp.mean(jnp.argmax(logits, -1) == yv)

    return jax.vmap(one)(p, s)


@eqx.filter_jit
def _snapshot(p, s, x, static):
    """The logits of all samples `x` for every trial (vmapped), in evaluation mode."""
    return jax.vmap(lambda p, s: apply(eqx.combine(p, static), x, s, inference=True)[0])(p, s)


def _eval_logits(model, x):
    """Logits of one input in evaluation mode; `model` = (network, state)."""
    net, state = model
    return net(x, state, inference=True)[0]


def _impact_samples(data: Dataset, per_class: Any) -> np.ndarray:
    """Indices of the first `per_class` training samples of each class (the fixed set on
    which the tangent kernel is measured)."""
    per_class = _positive("impact_samples", per_class, integer=True)
    y = np.asarray(data.y_train)
    counts = np.bincount(y, minlength=data.num_classes)
    if per_class < 2 or counts.min() < per_class:
        raise ValueError(
            f"impact_samples must be an int in [2, {counts.min()}] (the smallest class has "
            f"{counts.min()} training samples); got {per_class}"
        )
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(data.num_classes)])


def _bar(progress: bool, total: int, desc: str, unit: str = "step"):
    from .._progress import progress_bar

    return progress_bar(total=total, desc=desc, disable=not progress, unit=unit)


# ----------------------------------------------------------------------------------------
# Experiment 2


GRID_AXES = ("negative_slope", "data_noise", "learning_rate", "dropout")

MEASURES = {
    "log_trace_ratio": ("D_trace", True),
    "trace_ratio": ("D_trace", False),
    "log_fuzziness": ("D", True),
    "fuzziness": ("D", False),
}
"""Layer-wise separation measures of the load curve: name -> (variable, logarithm).
The spring-block authors' figures plot the log of the trace ratio (`trace_ratio`); He and
Su's law of data separation uses the fuzziness D (`separation_fuzziness`)."""

_PLATEAU = 1e-10  # the authors also stop when the epoch loss changes by less than this


def _axis(name: str, value: Any, lo: float, hi: float, hi_open: bool = False, positive: bool = False):
    """A grid axis: (values, is_dim)."""
    is_dim = not np.isscalar(value)
    vals = np.atleast_1d(np.asarray(value, dtype=float))
    if vals.ndim != 1 or vals.size == 0:
        raise ValueError(f"{name} must be a number or a 1-D list of numbers; got {show(value)}")
    for v in vals:
        ok = np.isfinite(v) and lo <= v and (v < hi if hi_open else v <= hi) and (v > 0 or not positive)
        if not ok:
            rng = f"({lo}, {hi}]" if positive else f"[{lo}, {hi}{')' if hi_open else ']'}"
            raise ValueError(f"{name} values must lie in {rng}; got {v}")
    return vals, is_dim


def _measure_name(measure: Any) -> str:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {sorted(MEASURES)}; got {show(measure)}")
    return measure


def train_separation(
    data: Dataset,
    *,
    seeds: int = 10,
    epochs: int = 100,
    learning_rate: Any = 1e-3,
    negative_slope: Any = 0.0,
    dropout: Any = 0.0,
    data_noise: Any = 0.0,
    batch_size: Any = None,
    width: int = 100,
    depth: int = 8,
    eval_epochs: Sequence[int] | None = None,
    measure: str = "log_trace_ratio",
    stop_loss: float | None = 1e-4,
    seed: int = 0,
    chunk_size: int | None = None,
    store: str | Path | None = None,
    fingerprint: str = "",
    progress: bool = False,
) -> xr.Dataset:
    r"""Train the BatchNorm MLP (`BNMLP`) with Adam on a grid of nonlinearity and noise,
    all cells and seeds of one batch size as one vmapped computation, and measure the
    layer-wise data separation (experiment 2, the spring-block authors' protocol).

    **Training** (as the authors' script): Adam (learning rate eta, betas 0.9, 0.999),
    cross-entropy, minibatches of `batch_size` from a fresh permutation each epoch (a last
    partial batch is dropped; None = full batch). Data noise s, at every step: floor(s B)
    of the B labels of the batch, chosen at random, are redrawn uniformly in 0..K-1, and
    every input gets Gaussian noise of standard deviation s * std(X_B) (the unbiased std
    over all values of the batch). Early stopping (`stop_loss`): a member stops after the
    first epoch whose mean training loss is below `stop_loss`, or changed by less than
    1e-10 from the previous epoch; its network is frozen from then on (`stop_epoch` is the
    number of epochs it trained). None trains every member for `epochs` epochs.

    **Measures**, at each epoch in `eval_epochs` (default 0 and `epochs`; epoch 0 is the
    initialisation), on the clean training set in evaluation mode, for each layer l = 0..L-1
    (the input after its BatchNorm, then each hidden block's activation; logits excluded):

        D_l = Tr(Sigma_W Sigma_B^+)   (`separation_fuzziness`, He and Su's D)
        D_tr_l = Tr(Sigma_W) / Tr(Sigma_B)   (`trace_ratio`)

    The load curve is that of `measure` m_l (default log D_tr_l, what the authors plot):
    its gains d_l = m_{l-1} - m_l (`separation_gains`) give the curvature, non-uniformity
    and shape (`load_curve`), and `curve` is the min-max normalised curve

        curve_l = (m_l - min_j m_j) / (max_j m_j - min_j m_j)

    (1 at the input and 0 at the last layer for a curve that separates monotonically; NaN
    for a flat one). Also: the Pearson correlation and decay ratio of log D
    (`separation_law`), training loss and accuracy on the clean set, and the accuracy on
    the validation set (the test accuracy).

    **Arguments:** `learning_rate` (> 0), `negative_slope` (a in [0, 1]: 0 = ReLU, 1 =
    linear), `dropout` (q in [0, 1)), `data_noise` (s in [0, 1]): a number, or a list that
    becomes a grid dimension; `batch_size`: an int in [2, N], None, or a list (a
    dimension; each size compiles once); `seeds`: seed i gives the same initialisation in
    every cell; `measure`: a key of `MEASURES`; `stop_loss`: a number > 0 or None;
    `chunk_size`: members (cells x seeds) trained at once (default all of one batch
    size); `store`: a folder for finished chunks (`lesde.solve.ChunkStore`, as `sweep`'s):
    each chunk is written there when trained, and a call with the same store and
    `fingerprint` (what identifies the computation: a store of another is refused) trains
    only the members not yet there, so an interrupted call resumes, losing at most the
    chunk that was running. Member i of batch size b is trained with the same key and
    hyperparameters whatever the chunk, so a member's results do not depend on the chunk
    size (up to floating-point rounding: XLA may round differently for other batch
    shapes).

    **Returns:** an xarray Dataset with dims (batch_size?, <grid axes given as lists>,
    seed, epoch, layer): `D`, `D_trace`, `curve` (.., epoch, layer); `train_loss`,
    `train_acc`, `test_acc`, `curvature`, `nonuniformity`, `shape` (0 linear, 1 convex,
    -1 concave), `correlation`, `rho` (.., epoch); `stop_epoch` (..). Attributes record
    the fixed hyperparameters, `measure` and `stop_loss`.

    Example: `train_separation(digits(), negative_slope=[0.0, 1.0], data_noise=[0.0, 0.4],
    seeds=2, epochs=20)`.
    """
    seeds = _positive("seeds", seeds, integer=True)
    epochs = _positive("epochs", epochs, integer=True)
    measure = _measure_name(measure)
    if stop_loss is not None:
        stop_loss = _positive("stop_loss", stop_loss)
    axes = {
        "learning_rate": _axis("learning_rate", learning_rate, 0.0, np.inf, positive=True),
        "negative_slope": _axis("negative_slope", negative_slope, 0.0, 1.0),
        "dropout": _axis("dropout", dropout, 0.0, 1.0, hi_open=True),
        "data_noise": _axis("data_noise", data_noise, 0.0, 1.0),
    }
    num_train = int(data.x_train.shape[0])
    sizes, size_dim = _batch_sizes(batch_size, num_train)
    ev = np.array([0, epochs]) if eval_epochs is None else np.unique(np.asarray(eval_epochs, int))
    if ev.size == 0 or ev.min() < 0 or ev.max() > epochs:
        raise ValueError(f"eval_epochs must lie in [0, {epochs}]; got {show(eval_epochs)}")
    if data.x_val.shape[0] == 0:
        raise ValueError("data: the validation set is empty; the test accuracy needs one")
    dims = [n for n in GRID_AXES if axes[n][1]]
    cells = list(itertools.product(*(axes[n][0] for n in GRID_AXES)))
    hyper = np.array([c for c in cells for _ in range(seeds)], dtype=np.float64)  # (M, 4), GRID_AXES order
    member_seed = np.tile(np.arange(seeds), len(cells))
    m = hyper.shape[0]
    chunk = m if chunk_size is None else min(_positive("chunk_size", chunk_size, integer=True), m)

    total = len(sizes) * m  # member b * m + i: member i of batch size b
    st = ChunkStore(store, fingerprint, total) if store is not None else None
    flat: dict[str, np.ndarray] = {}
    done = np.zeros(total, bool)
    for part in st.load(required=_SEPARATION_RESULTS) if st is not None else []:
        ids = part.pop("member")
        _put(flat, ids, part, total)
        done[ids] = True
    todo = [np.flatnonzero(~done[b * m : (b + 1) * m]) for b in range(len(sizes))]
    bar = _bar(progress, sum(-(-t.size // chunk) for t in todo) * epochs, "epochs", unit="epoch")
    try:
        for b, bs in enumerate(sizes):
            for c0 in range(0, todo[b].size, chunk):
                idx = todo[b][c0 : c0 + chunk]
                pad = np.concatenate([idx, np.full(chunk - idx.size, idx[-1])]) if idx.size < chunk else idx
                res = _separation_chunk(
                    data, hyper[pad], member_seed[pad], seed, int(bs), epochs, ev, width, depth,
                    measure, stop_loss, bar,
                )
                res = {n: arr[: idx.size] for n, arr in res.items()}
                if st is not None:
                    st.save(b * m + idx, res)
                _put(flat, b * m + idx, res, total)
    finally:
        bar.close()

    shape = [axes[n][0].size for n in GRID_AXES if axes[n][1]] + [seeds]
    coords = {n: axes[n][0] for n in dims}
    coords.update(seed=np.arange(seeds), epoch=ev, layer=np.arange(depth))
    lead = (["batch_size"] if size_dim else []) + dims + ["seed"]
    if size_dim:
        coords["batch_size"] = np.asarray(sizes)
    variables = {}
    for name, v in flat.items():  # (S * M, ...)
        tail = v.shape[1:]
        arr = v.reshape((len(sizes), *shape, *tail))
        if not size_dim:
            arr = arr[0]
        tail_dims = ["epoch", "layer"][: len(tail)]
        variables[name] = (lead + tail_dims, arr)
    ds = xr.Dataset(variables, coords=coords)
    for n in GRID_AXES:
        if not axes[n][1]:
            ds.attrs[n] = float(axes[n][0][0])
    if not size_dim:
        ds.attrs["batch_size"] = int(sizes[0])
    ds.attrs.update(
        epochs=epochs, width=width, depth=depth, seed=int(seed), dataset=data.name,
        num_classes=data.num_classes, measure=measure,
        stop_loss=float("nan") if stop_loss is None else float(stop_loss),
    )
    return ds


_SEPARATION_RESULTS = ("D", "D_trace", "curve", "train_loss", "train_acc", "test_acc", "curvature",
                       "nonuniformity", "shape", "correlation", "rho", "stop_epoch")
"""The results of each member of `train_separation`, as a chunk of members holds them:
a kept chunk without one of them is refused, and `_separation_chunk` checks that it
returns exactly these (a result added there and not here would leave kept members'
values unset)."""


def _put(flat: dict[str, np.ndarray], ids: np.ndarray, results: dict[str, np.ndarray], total: int) -> None:
    """Put the `results` of members `ids` (members first) into `flat`, arrays over all
    `total` members made on first use."""
    for name, arr in results.items():
        if name not in flat:
            flat[name] = np.empty((total, *arr.shape[1:]), arr.dtype)
        flat[name][ids] = arr


def _batch_sizes(batch_size: Any, num_train: int) -> tuple[list[int], bool]:
    is_dim = isinstance(batch_size, list | tuple | np.ndarray)
    values = list(batch_size) if is_dim else [batch_size]
    if not values:
        raise ValueError("batch_size: an empty list")
    sizes = []
    for b in values:
        b = num_train if b is None else b
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or not 2 <= b <= num_train:
            raise ValueError(
                f"batch_size must be an int in [2, {num_train}] (BatchNorm needs >= 2) or None; got {show(b)}"
            )
        sizes.append(int(b))
    return sizes, is_dim


def _fuzziness_by_layer(feats: Sequence[jax.Array], y: jax.Array, k: int) -> jax.Array:
    """D_l = `separation_fuzziness` of every layer's features (N, p_l), shape (layers,),
    computed with ONE batched SVD.

    The layers are zero-padded to a common width p (zero columns change neither the class
    means nor Sigma_B^+, so D is unchanged) and the rank tolerance stays the default of the
    unpadded layer, max(K, p_l) * eps.

    Why one SVD: jaxlib's CPU LAPACK kernels (here `lapack_sgesdd_ffi`) split a batch whose
    cost passes a threshold (batch x flops >= 2e5) into chunks, schedule them on XLA's
    intra-op thread pool and wait for them on the pool thread that runs the custom call
    (`jax::ParallelBatchMap` -> `absl::BlockingCounter::Wait`). One SVD per layer puts
    several independent SVDs in the compiled measurement, which XLA runs at once; when every
    pool thread is inside one of them no thread is left for the chunks and the program never
    returns, all threads asleep on a futex (e.g. 2 pool threads, width 100, depth 8, 8
    members). With one SVD per program the other pool threads stay free for its chunks.
    """
    widths = [int(h.shape[-1]) for h in feats]
    p = max(widths)
    padded = jnp.stack([jnp.pad(h, ((0, 0), (0, p - w))) for h, w in zip(feats, widths)])
    eps = jnp.finfo(padded.dtype).eps
    rtol = jnp.asarray([max(k, w) * eps for w in widths], padded.dtype)
    return jax.vmap(lambda h, r: separation_fuzziness(h, y, k, rtol=r))(padded, rtol)


def _data_noise(keys, xb, yb, s, count, num_classes):
    """The spring-block authors' data noise on a batch of B samples: `count` (= floor(s B))
    labels, at positions drawn without replacement, are redrawn uniformly in
    0..num_classes-1 (possibly to their old value), and every input value gets Gaussian
    noise of standard deviation s * std(xb) (the unbiased std over all values of the
    batch). `keys`: three keys (positions, new labels, input noise). Returns (noisy xb,
    noisy yb)."""
    kl, kr, kx = keys
    b = yb.shape[0]
    chosen = jnp.zeros(b, bool).at[jr.permutation(kl, b)].set(jnp.arange(b) < count)
    yb = jnp.where(chosen, jr.randint(kr, yb.shape, 0, num_classes), yb)
    xb = xb + s * jnp.std(xb, ddof=1) * jr.normal(kx, xb.shape, xb.dtype)
    return xb, yb


@eqx.filter_jit
def _adam_epoch(params, opt_state, states, active, prev_loss, static, keys, lr, s, count, x, y, epoch,
                batch_size, num_classes, noise, dropout, stop_loss):
    """One epoch of Adam for every member (vmapped); members that are no longer `active`
    keep their parameters, optimiser and BatchNorm state. `noise` and `dropout` (static)
    turn the data noise and the dropout masks on; `count` is each member's floor(s B).
    Compiled once per run and shape: everything that varies between chunks or epochs is
    an argument.

    Returns the new (params, opt_state, states, active, prev_loss) and the epoch loss."""
    opt = optax.scale_by_adam()
    n = x.shape[0]
    steps = n // batch_size

    def one(p, o, st, act, prev, key, lr, s, count):
        perm = jr.permutation(jr.fold_in(jr.fold_in(key, _DATA), epoch), n)

        def step(carry, i):
            p, o, st, total = carry
            kt = jr.fold_in(jr.fold_in(key, _NOISE), epoch * steps + i)
            kl, kr, kx, kdrop = jr.split(kt, 4)
            idx = jax.lax.dynamic_slice(perm, (i * batch_size,), (batch_size,))
            xb, yb = x[idx], y[idx]
            if noise:
                xb, yb = _data_noise((kl, kr, kx), xb, yb, s, count, num_classes)

            def loss_fn(p):
                net = eqx.combine(p, static)
                logits, st2, _ = apply(net, xb, st, key=kdrop if dropout else None, inference=False)
                return jnp.mean(_ce(logits, yb)), st2

            (loss, st2), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
            u, o = opt.update(g, o, p)
            p = optax.apply_updates(p, jax.tree.map(lambda v: -lr * v, u))
            return (p, o, st2, total + loss), None

        (p2, o2, st2, total), _ = jax.lax.scan(
            step, (p, o, st, jnp.zeros((), x.dtype)), jnp.arange(steps)
        )
        loss = total / steps
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(act, a, b), new, old)  # noqa: E731
        p, o, st = keep(p2, p), keep(o2, o), keep(st2, st)
        if stop_loss is None:
            stop = jnp.zeros((), bool)
        else:
            stop = (loss < stop_loss) | (jnp.abs(prev - loss) < _PLATEAU)
        return p, o, st, act & ~stop, jnp.where(act, loss, prev), loss

    return jax.vmap(one)(params, opt_state, states, active, prev_loss, keys, lr, s, count)


@eqx.filter_jit
def _measure_members(params, states, static, x, y, xv, yv, num_classes, measure):
    """The measures of every member (vmapped) on the clean training set and the
    validation set, in evaluation mode. Built once per run."""
    variable, log = MEASURES[measure]

    def one(p, st):
        net = eqx.combine(p, static)
        logits, _, feats = apply(net, x, st, inference=True)
        d = _fuzziness_by_layer(feats, y, num_classes)  # one SVD: see its docstring
        dtr = jnp.stack([trace_ratio(h, y, num_classes) for h in feats])
        seq = {"D": d, "D_trace": dtr}[variable]
        seq = jnp.log(seq) if log else seq
        lo, hi = jnp.min(seq), jnp.max(seq)
        curve = load_curve(separation_gains(seq))
        law = separation_law(d)
        vlogits, _, _ = apply(net, xv, st, inference=True)
        return dict(
            D=d, D_trace=dtr, curve=(seq - lo) / (hi - lo),
            train_loss=jnp.mean(_ce(logits, y)), train_acc=jnp.mean(jnp.argmax(logits, -1) == y),
            test_acc=jnp.mean(jnp.argmax(vlogits, -1) == yv),
            curvature=curve.curvature, nonuniformity=curve.nonuniformity,
            shape=curve.shape_code.astype(jnp.float32),
            correlation=law.correlation, rho=law.rho,
        )

    return jax.vmap(one)(params, states)


def _separation_chunk(data, hyper, member_seed, seed, batch_size, epochs, eval_epochs, width, depth,
                      measure, stop_loss, bar):
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xv, yv = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    k = data.num_classes
    root = jr.key(seed)
    keys = jax.vmap(lambda i: jr.fold_in(root, i))(jnp.asarray(member_seed))
    col = {n: hyper[:, GRID_AXES.index(n)] for n in GRID_AXES}
    lr, slope, q, s = (jnp.asarray(col[n], jnp.float32) for n in ("learning_rate", "negative_slope", "dropout", "data_noise"))
    # floor(s B) in double precision, as the authors' int(s * B) (0.7 * 2560 = 1792, not 1791)
    count = jnp.asarray(np.floor(col["data_noise"] * batch_size + 1e-9).astype(np.int32))
    use_dropout = bool((col["dropout"] > 0).any())  # no dropout layer (no random masks) otherwise
    noise = bool((col["data_noise"] > 0).any())
    nets, states = eqx.filter_vmap(
        lambda kk, a, d: make_network(
            "bn_mlp", jr.fold_in(kk, _INIT), input_shape=data.input_shape, num_classes=k,
            width=width, depth=depth, negative_slope=a, dropout=d if use_dropout else None,
        )
    )(keys, slope, q)
    params, static = eqx.partition(nets, eqx.is_inexact_array)
    opt_state = jax.vmap(optax.scale_by_adam().init)(params)
    members = hyper.shape[0]
    active = jnp.ones(members, bool)
    prev = jnp.full(members, jnp.inf, jnp.float32)
    trained = np.zeros(members, np.int32)
    rows = []
    frozen = None
    for epoch in range(epochs + 1):
        if epoch in eval_epochs:
            if frozen is None:
                row = {name: np.asarray(v) for name, v in _measure_members(params, states, static, x, y, xv, yv, k, measure).items()}
                if not bool(jnp.any(active)):
                    frozen = row  # every member stopped: the networks no longer change
            rows.append(frozen or row)
        if epoch == epochs:
            break
        if frozen is not None or not bool(jnp.any(active)):
            bar.update(1)
            continue
        trained += np.asarray(active, np.int32)
        params, opt_state, states, active, prev, _ = _adam_epoch(
            params, opt_state, states, active, prev, static, keys, lr, s, count, x, y,
            jnp.asarray(epoch), batch_size, k, noise, use_dropout, stop_loss,
        )
        bar.update(1)
    out = {name: np.stack([r[name] for r in rows], axis=1) for name in rows[0]}
    out["stop_epoch"] = trained
    if set(out) != set(_SEPARATION_RESULTS):  # what a kept chunk must hold: the two must agree
        raise AssertionError(f"_SEPARATION_RESULTS {_SEPARATION_RESULTS} is not {tuple(out)}")
    return out
