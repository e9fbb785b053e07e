"""Real networks and their training: shapes and modes of the networks, `train_sgd` against
a step-by-step replay of plain SGD, `train_separation` against directly computed
separation measures, and the layer-wise separation of linear networks.

Everything runs on tiny random data (tens of samples of shape (8,)) and one small network
shape (width 8, depth 3) wherever possible, so that compiled operations are shared and the
file stays fast on a CPU. Reference values are computed independently: forward passes
written out in NumPy from the weights, SGD replayed with optax, metrics applied directly.
"""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from lesde.metrics import linearly_separable, separation_fuzziness, trace_ratio
from lesde.nets import apply as _apply
from lesde.nets import BNMLP, from_arrays, LeNet, log_spaced_steps, make_network, MLP, train_separation, train_sgd
from lesde.nets._train import _fuzziness_by_layer


K = 3
D_IN = 8
SMALL = dict(width=8, depth=3)  # the network shape used throughout
EPS = 1e-5  # equinox BatchNorm's default eps


def clone(state):
    """A reusable copy of an equinox State (a training-mode call invalidates its input)."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    return jax.tree_util.tree_unflatten(treedef, leaves)


@eqx.filter_jit
def _jit_apply(net, x, state, key, inference):
    return _apply(net, x, state, key=key, inference=inference)


def apply(net, x, state, *, key=None, inference=False):
    """`lesde.nets.apply`, compiled (eager op-by-op dispatch is slow), on a copy of `state`
    so that the caller's state stays usable."""
    return _jit_apply(net, jnp.asarray(x), clone(state), key, inference)


def blobs(n, dim, *, seed, sep=3.0, num_classes=K):
    """n samples of shape (dim,): Gaussian blobs around random class means (`sep` times a
    standard normal), labels cycling 0..K-1."""
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((num_classes, dim))
    y = np.arange(n) % num_classes
    x = means[y] + rng.standard_normal((n, dim))
    return x.astype(np.float32), y


def np_mlp(net, x, act=lambda h: np.maximum(h, 0.0)):
    """The MLP's forward pass written out in NumPy (float64) from its weights, for a batch
    x (B, ...): (logits (B, K), [representations (B, .)])."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    feats = [h]
    for layer in net.layers[:-1]:
        h = act(h @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias, np.float64))
        feats.append(h)
    last = net.layers[-1]
    return h @ np.asarray(last.weight, np.float64).T + np.asarray(last.bias, np.float64), feats


def ce(logits, labels):
    """Cross-entropy of integer labels, in float64."""
    z = np.asarray(logits, np.float64)
    picked = np.take_along_axis(z, np.asarray(labels)[..., None], -1)[..., 0]
    return np.logaddexp.reduce(z, axis=-1) - picked


@pytest.fixture(scope="module")
def mlp_data():
    """30 training and 12 validation samples of shape (8,), 3 overlapping classes."""
    x, y = blobs(30, D_IN, seed=1, sep=1.0)
    xv, yv = blobs(12, D_IN, seed=2, sep=1.0)
    return from_arrays(x, y, x_val=xv, y_val=yv, num_classes=K, name="tiny")


# ======================================================================================
# 1. Networks


def random_weights(shapes, seed=0):
    """A module of `eqx.filter_eval_shape` with each array leaf drawn at random (~ the
    scale of a standard initialisation), which avoids running the eager initialiser."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        scale = 1 / np.sqrt(np.prod(leaf.shape[1:])) if len(leaf.shape) > 1 else 0.1
        return jnp.asarray(scale * rng.standard_normal(leaf.shape), leaf.dtype)

    return jax.tree.map(draw, shapes)


def test_lenet_shapes(getkey):
    key = getkey()
    net, state = eqx.filter_eval_shape(make_network, "lenet", key, input_shape=(1, 32, 32), num_classes=4)
    assert isinstance(net, LeNet) and net.fc1.weight.shape == (120, 400) and net.fc3.weight.shape == (4, 84)
    net = random_weights(net)
    x = jr.normal(getkey(), (2, 1, 32, 32))
    logits, _, feats = apply(net, x, eqx.nn.State(net), inference=True)
    assert logits.shape == (2, 4)
    assert tuple(f.shape[1:] for f in feats) == ((1024,), (1176,), (400,), (120,), (84,))
    assert all(f.shape[0] == 2 for f in feats)
    np.testing.assert_array_equal(feats[0], np.asarray(x).reshape(2, -1))
    # the fully connected tail, written out
    relu = lambda h: np.maximum(h, 0.0)  # noqa: E731
    w = {n: (np.asarray(getattr(net, n).weight), np.asarray(getattr(net, n).bias)) for n in ("fc1", "fc2", "fc3")}
    f1 = relu(np.asarray(feats[2]) @ w["fc1"][0].T + w["fc1"][1])
    np.testing.assert_allclose(feats[3], f1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats[4], relu(f1 @ w["fc2"][0].T + w["fc2"][1]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits, np.asarray(feats[4]) @ w["fc3"][0].T + w["fc3"][1], rtol=1e-4, atol=1e-5)
    # the first stage, written out: 6 valid 5 x 5 convolutions, ReLU, 2 x 2 max pooling
    k, b = np.asarray(net.conv1.weight)[:, 0], np.asarray(net.conv1.bias)[:, 0, 0]
    img = np.asarray(x[0, 0], np.float64)
    patches = np.lib.stride_tricks.sliding_window_view(img, (5, 5))  # (28, 28, 5, 5)
    conv = np.einsum("ijuv,cuv->cij", patches, k) + b[:, None, None]
    pooled = relu(conv).reshape(6, 14, 2, 14, 2).max(axis=(2, 4))
    np.testing.assert_allclose(feats[1][0], pooled.reshape(-1), rtol=1e-4, atol=1e-5)


def test_lenet_input_too_small():
    key = jr.key(0)
    # 16 x 16 is the smallest size: 16 -> conv 12 -> pool 6 -> conv 2 -> pool 1
    net = eqx.filter_eval_shape(LeNet, (1, 16, 16), 3, key=key)
    assert net.fc1.weight.shape == (120, 16)
    net = eqx.filter_eval_shape(LeNet, (3, 20, 28), 3, key=key)  # (20, 28) -> (2, 4)
    assert net.conv1.weight.shape[1] == 3 and net.fc1.weight.shape == (120, 16 * 2 * 4)
    for shape in [(1, 15, 15), (1, 32, 15), (1, 15, 32)]:
        with pytest.raises(ValueError, match="too small"):
            eqx.filter_eval_shape(LeNet, shape, 3, key=key)
    with pytest.raises(ValueError, match="input_shape"):
        eqx.filter_eval_shape(LeNet, (32, 32), 3, key=key)


@pytest.mark.parametrize("activation", ["relu", "tanh", "linear"])
def test_mlp_shapes_and_forward(getkey, activation):
    net, _ = eqx.filter_eval_shape(
        make_network, "mlp", getkey(), input_shape=(2, 4), num_classes=5, width=7, depth=4, activation=activation
    )
    assert isinstance(net, MLP) and not net.uses_batch_stats
    net = random_weights(net)
    state = eqx.nn.State(net)
    assert [lay.weight.shape for lay in net.layers] == [(7, 8), (7, 7), (7, 7), (5, 7)]
    x = jr.normal(getkey(), (6, 2, 4))
    logits, _, feats = apply(net, x, state, inference=True)
    assert logits.shape == (6, 5)
    assert tuple(f.shape for f in feats) == ((6, 8), (6, 7), (6, 7), (6, 7))
    act = {"relu": lambda h: np.maximum(h, 0.0), "tanh": np.tanh, "linear": lambda h: h}[activation]
    want_logits, want_feats = np_mlp(net, x, act)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-5)
    for f, w in zip(feats, want_feats):
        np.testing.assert_allclose(f, w, rtol=1e-4, atol=1e-5)


def test_mlp_depth_one_is_a_linear_readout(getkey):
    net, _ = eqx.filter_eval_shape(make_network, "mlp", getkey(), input_shape=(D_IN,), num_classes=K, depth=1)
    net = random_weights(net)
    state = eqx.nn.State(net)
    x = jr.normal(getkey(), (5, D_IN))
    logits, _, feats = apply(net, x, state)
    assert len(feats) == 1 and feats[0].shape == (5, D_IN)
    lay = net.layers[0]
    want = np.asarray(x) @ np.asarray(lay.weight).T + np.asarray(lay.bias)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)


def test_bnmlp_shapes(getkey):
    # shapes only: traced abstractly, nothing is computed
    def run(key, inference):
        net, state = make_network("bn_mlp", key, input_shape=(2, 4), num_classes=K, width=7, depth=4)
        assert isinstance(net, BNMLP) and net.uses_batch_stats
        assert len(net.linears) == 3 and len(net.norms) == 3
        return _apply(net, jnp.zeros((5, 2, 4)), state, key=key, inference=inference)

    for inference in (False, True):
        logits, _, feats = eqx.filter_eval_shape(run, getkey(), inference)
        assert logits.shape == (5, K)
        assert tuple(f.shape for f in feats) == ((5, 8), (5, 7), (5, 7), (5, 7))


def small_bnmlp(key, **options):
    return make_network("bn_mlp", key, input_shape=(D_IN,), num_classes=K, **SMALL, **options)


def test_bnmlp_eval_mode_is_per_sample(getkey):
    net, state = small_bnmlp(getkey(), negative_slope=0.2, dropout=0.5)
    x = 2.0 * jr.normal(getkey(), (6, D_IN)) + 1.0
    logits, _, feats = apply(net, x, state, inference=True)
    for i in range(6):
        li, _, fi = apply(net, x[i : i + 1], state, inference=True)
        np.testing.assert_allclose(logits[i], li[0], rtol=1e-5, atol=1e-6)
        for f, g in zip(feats, fi):
            np.testing.assert_allclose(f[i], g[0], rtol=1e-5, atol=1e-6)
    # the same sample in another batch: the same output
    perm = jnp.array([5, 0, 3, 1, 2, 4])
    lp, _, _ = apply(net, x[perm], state, inference=True)
    np.testing.assert_allclose(lp, logits[perm], rtol=1e-5, atol=1e-6)
    # no dropout in evaluation mode: a key changes nothing
    lk, _, _ = apply(net, x, state, key=getkey(), inference=True)
    np.testing.assert_allclose(lk, logits, rtol=1e-6)


def test_bnmlp_train_mode_uses_batch_statistics(getkey):
    net, state = small_bnmlp(getkey(), negative_slope=0.2)
    x = 2.0 * jr.normal(getkey(), (6, D_IN)) + 1.0
    key = getkey()
    logits, _, feats = apply(net, x, state, key=key, inference=False)
    # the input BatchNorm normalises each feature by the batch's mean and (biased) variance
    xb = np.asarray(x, np.float64)
    np.testing.assert_allclose(feats[0], (xb - xb.mean(0)) / np.sqrt(xb.var(0) + EPS), rtol=1e-4, atol=1e-4)
    # the first hidden block: BatchNorm over the batch of its linear map, then LeakyReLU(0.2)
    w1, b1 = np.asarray(net.linears[0].weight), np.asarray(net.linears[0].bias)
    lin = np.asarray(feats[0], np.float64) @ w1.T + b1
    z = (lin - lin.mean(0)) / np.sqrt(lin.var(0) + EPS)
    np.testing.assert_allclose(feats[1], np.where(z >= 0, z, 0.2 * z), rtol=1e-4, atol=1e-4)
    # so sample 0's output depends on the rest of the batch (the others doubled here)
    mixed = x * jnp.array([1, 2, 2, 2, 2, 2.0])[:, None]
    other, _, _ = apply(net, mixed, state, key=key, inference=False)
    assert np.max(np.abs(np.asarray(other[0]) - np.asarray(logits[0]))) > 1e-3
    # while in evaluation mode it does not
    e1, _, _ = apply(net, x, state, inference=True)
    e2, _, _ = apply(net, mixed, state, inference=True)
    np.testing.assert_allclose(e1[0], e2[0], rtol=1e-5, atol=1e-6)


def test_bnmlp_dropout(getkey):
    x = jr.normal(getkey(), (6, D_IN))
    init, k1, k2 = getkey(), getkey(), getkey()
    for q in (0.0, 0.5):
        net, state = small_bnmlp(init, dropout=q)
        l1, _, f1 = apply(net, x, state, key=k1, inference=False)
        l2, _, f2 = apply(net, x, state, key=k2, inference=False)
        # the first hidden block is measured before its dropout: never affected
        np.testing.assert_allclose(f1[1], f2[1], rtol=1e-6)
        if q == 0.0:
            np.testing.assert_allclose(l1, l2, rtol=1e-6)
            np.testing.assert_allclose(f1[2], f2[2], rtol=1e-6)
        else:
            assert np.max(np.abs(np.asarray(l1) - np.asarray(l2))) > 1e-3
            assert np.max(np.abs(np.asarray(f1[2]) - np.asarray(f2[2]))) > 1e-3
    with pytest.raises(ValueError, match="key"):
        apply(net, x, state, inference=False)


def test_bnmlp_running_statistics_change(getkey):
    net, state = small_bnmlp(getkey())
    x = 3.0 * jr.normal(getkey(), (6, D_IN)) + 2.0
    before, _, fb = apply(net, x, state, inference=True)
    # fresh running statistics are mean 0, variance 1: the input norm is x / sqrt(1 + eps)
    np.testing.assert_allclose(fb[0], np.asarray(x) / np.sqrt(1 + EPS), rtol=1e-5, atol=1e-5)
    _, new_state, _ = apply(net, x, state, key=getkey(), inference=False)
    old_leaves, new_leaves = jax.tree.leaves(state), jax.tree.leaves(new_state)
    assert len(old_leaves) == len(new_leaves)
    assert any(not np.array_equal(a, b) for a, b in zip(old_leaves, new_leaves))
    after, _, _ = apply(net, x, new_state, inference=True)
    assert np.max(np.abs(np.asarray(after) - np.asarray(before))) > 1e-3
    # a training-mode call does not depend on the running statistics
    key = getkey()
    t1, _, _ = apply(net, x, state, key=key, inference=False)
    t2, _, _ = apply(net, x, new_state, key=key, inference=False)
    np.testing.assert_allclose(t1, t2, rtol=1e-5, atol=1e-6)


def _input_norm_stats(net, state):
    """The (mean, variance) the input BatchNorm uses in evaluation mode, read off its
    outputs at x = 0 and x = 1: out(x) = (x - m) / sqrt(v + eps)."""
    _, _, feats = apply(net, jnp.stack([jnp.zeros(D_IN), jnp.ones(D_IN)]), state, inference=True)
    out0, out1 = np.asarray(feats[0][0], np.float64), np.asarray(feats[0][1], np.float64)
    s = 1.0 / (out1 - out0)
    return -out0 * s, s**2 - EPS


@pytest.fixture
def one_update(getkey):
    """A batch x and the input BatchNorm's evaluation-mode (mean, variance) after one
    training-mode call of a fresh BNMLP on x (its affine part is still the identity)."""
    net, state = small_bnmlp(getkey())
    x = 3.0 * jr.normal(getkey(), (6, D_IN)) + 2.0
    _, state1, _ = apply(net, x, state, key=getkey(), inference=False)
    return np.asarray(x, np.float64), *_input_norm_stats(net, state1)


def test_bnmlp_running_mean_follows_pytorch_momentum(one_update):
    """BNMLP's docstring: running statistics with 'momentum 0.9 per update, as PyTorch's
    0.1'. From mean 0, one update gives running mean = 0.9 * 0 + 0.1 * batch mean."""
    x, m, _ = one_update
    np.testing.assert_allclose(m, 0.1 * x.mean(0), rtol=1e-3, atol=1e-4)


def test_bnmlp_running_variance_follows_pytorch_momentum(one_update):
    """As above: from variance 1, one update gives running variance = 0.9 * 1 + 0.1 *
    batch variance (PyTorch takes the unbiased batch variance; biased is accepted too)."""
    x, _, v = one_update
    lo, hi = 0.9 + 0.1 * x.var(0), 0.9 + 0.1 * x.var(0, ddof=1)
    assert np.all(v >= lo * (1 - 1e-3)) and np.all(v <= hi * (1 + 1e-3)), (v, lo, hi)


def test_make_network_and_bnmlp_errors(getkey):
    with pytest.raises(ValueError, match="network must be one of"):
        make_network("resnet", getkey(), input_shape=(D_IN,), num_classes=K)
    key = getkey()
    # (the hyperparameters are checked eagerly, before any weight is drawn; under tracing
    # they cannot be, so no eval_shape here)
    build = lambda **kw: BNMLP((D_IN,), K, key=key, **{**SMALL, **kw})  # noqa: E731
    with pytest.raises(ValueError, match="negative_slope"):
        build(negative_slope=1.5)
    with pytest.raises(ValueError, match="negative_slope"):
        build(negative_slope=-0.1)
    with pytest.raises(ValueError, match="dropout"):
        build(dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        build(dropout=float("nan"))
    build(negative_slope=1.0, dropout=0.0)  # the closed ends are allowed
    with pytest.raises(ValueError, match="depth"):
        build(depth=1)
    with pytest.raises(ValueError, match="width"):
        build(width=0)
    with pytest.raises(ValueError, match="activation"):
        eqx.filter_eval_shape(MLP, (D_IN,), K, activation="gelu", key=key)
    with pytest.raises(ValueError, match="num_classes"):
        eqx.filter_eval_shape(MLP, (D_IN,), 1, key=key)


# ======================================================================================
# 2, 3 and 5. train_sgd against a replay of plain SGD

SGD = dict(network="mlp", network_options=SMALL, steps=30, eval_every=10, learning_rate=0.2, seed=7)


def _mlp_logits(net, xi):
    h = xi
    for layer in net.layers[:-1]:
        h = jax.nn.relu(layer.weight @ h + layer.bias)
    return net.layers[-1].weight @ h + net.layers[-1].bias


@eqx.filter_jit
def _sgd_step(net, opt_state, xi, yi, learning_rate):
    """One step of optax.sgd on the cross-entropy of one sample: (new net, new optimiser
    state, the logits before the update)."""

    def loss(net):
        logits = _mlp_logits(net, xi)
        return jax.nn.logsumexp(logits) - logits[yi], logits

    (_, logits), g = eqx.filter_value_and_grad(loss, has_aux=True)(net)
    opt = optax.sgd(learning_rate)
    updates, opt_state = opt.update(g, opt_state, eqx.filter(net, eqx.is_inexact_array))
    return eqx.apply_updates(net, updates), opt_state, logits


def replay(data, samples, *, trial, seed, steps, learning_rate, network_options):
    """Rebuild trial `trial`'s initial MLP as the trainer does (key fold_in(fold_in(key(seed),
    trial), 0)) and apply optax.sgd along the logged samples, the forward pass written out.
    Returns the logits before each update (steps, K) and the networks at steps 0..steps."""
    key = jr.fold_in(jr.fold_in(jr.key(seed), trial), 0)
    net, _ = make_network("mlp", key, input_shape=data.input_shape, num_classes=data.num_classes, **network_options)
    opt_state = optax.sgd(learning_rate).init(eqx.filter(net, eqx.is_inexact_array))
    x, y = data.x_train, data.y_train
    nets, rows = [net], []
    for t in range(steps):
        j = int(samples[t])
        net, opt_state, logits = _sgd_step(net, opt_state, x[j], y[j], learning_rate)
        rows.append(np.asarray(logits))
        nets.append(net)
    return np.stack(rows), nets


@pytest.fixture(scope="module")
def sgd_run(mlp_data):
    """Three trials with snapshots, and the replays of trials 0 and 2."""
    ds = train_sgd(mlp_data, trials=[0, 1, 2], snapshot_steps=[0, 10, 30], **SGD)
    kw = dict(seed=SGD["seed"], steps=SGD["steps"], learning_rate=SGD["learning_rate"], network_options=SMALL)
    replays = {i: replay(mlp_data, ds.sample.values[i], trial=i, **kw) for i in (0, 2)}
    return ds, replays


def test_train_sgd_log_layout(sgd_run, mlp_data):
    ds, _ = sgd_run
    assert ds.logits.dims == ("trial", "step", "class")
    assert ds.logits.shape == (3, 30, K)
    np.testing.assert_array_equal(ds.trial, [0, 1, 2])
    np.testing.assert_array_equal(ds.step, np.arange(30))
    np.testing.assert_array_equal(ds.eval_step, [0, 10, 20, 30])
    samples = ds.sample.values
    assert samples.min() >= 0 and samples.max() < mlp_data.num_train
    # uniform draws with replacement: 30 draws from 30 samples repeat some and differ by trial
    assert all(8 < np.unique(s).size < 30 for s in samples)
    assert not np.array_equal(samples[0], samples[1])
    np.testing.assert_array_equal(ds.label.values, np.asarray(mlp_data.y_train)[samples])
    assert ds.attrs["learning_rate"] == SGD["learning_rate"] and ds.attrs["network"] == "mlp"
    assert ds.attrs["sampling"] == "uniform" and ds.attrs["seed"] == SGD["seed"]


def test_train_sgd_logits_equal_replayed_forward_pass(sgd_run, mlp_data):
    ds, replays = sgd_run
    for i, (logits, _) in replays.items():
        np.testing.assert_allclose(ds.logits.values[i], logits, rtol=1e-5, atol=1e-6)
        want_loss = ce(logits, np.asarray(mlp_data.y_train)[ds.sample.values[i]])
        np.testing.assert_allclose(ds.train_loss.values[i], want_loss, rtol=1e-5, atol=1e-6)
    # training did something: the replayed network changes along the run
    assert np.max(np.abs(np.diff(replays[0][0], axis=0))) > 1e-2


def test_train_sgd_validation_equals_replayed_network(sgd_run, mlp_data):
    ds, replays = sgd_run
    xv, yv = mlp_data.x_val, np.asarray(mlp_data.y_val)
    for i, (_, nets) in replays.items():
        for e, t in enumerate(ds.eval_step.values):
            logits, _ = np_mlp(nets[t], xv)
            np.testing.assert_allclose(ds.val_loss.values[i, e], ce(logits, yv).mean(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(ds.val_acc.values[i, e], np.mean(logits.argmax(-1) == yv), atol=1e-6)
    assert abs(ds.val_loss.values[0, 0] - ds.val_loss.values[0, -1]) > 1e-3


def test_train_sgd_snapshots_equal_replayed_network(sgd_run, mlp_data):
    ds, replays = sgd_run
    assert ds.features.dims == ("trial", "snapshot_step", "train_sample", "class")
    np.testing.assert_array_equal(ds.snapshot_step, [0, 10, 30])
    np.testing.assert_array_equal(ds.train_labels, np.asarray(mlp_data.y_train))
    for i, (_, nets) in replays.items():
        for s, t in enumerate(ds.snapshot_step.values):
            want, _ = np_mlp(nets[t], mlp_data.x_train)
            np.testing.assert_allclose(ds.features.values[i, s], want, rtol=1e-5, atol=1e-6)
    # a snapshot at step t is the network *before* update t: it holds step t's logged logits
    for i in range(3):
        for s, t in [(0, 0), (1, 10)]:
            j = ds.sample.values[i, t]
            np.testing.assert_allclose(ds.features.values[i, s, j], ds.logits.values[i, t], rtol=1e-5, atol=1e-6)


def test_train_sgd_snapshot_step_not_an_eval_step(mlp_data):
    for snaps in ([0, 15], [40], [-10]):
        with pytest.raises(ValueError, match="snapshot_steps"):
            train_sgd(mlp_data, trials=1, snapshot_steps=snaps, **SGD)


def test_vmapped_trials_equal_trials_one_by_one(sgd_run, mlp_data):
    together, _ = sgd_run  # trials [0, 1, 2] as one vmapped computation
    for i in range(3):
        alone = train_sgd(mlp_data, trials=[i], **SGD)
        np.testing.assert_array_equal(alone.trial, [i])
        np.testing.assert_array_equal(alone.sample.values[0], together.sample.values[i])
        np.testing.assert_allclose(alone.logits.values[0], together.logits.values[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alone.train_loss.values[0], together.train_loss.values[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alone.val_loss.values[0], together.val_loss.values[i], rtol=1e-5, atol=1e-6)
    # distinct trials are distinct networks
    assert not np.allclose(together.logits.values[0, 0], together.logits.values[1, 0])


# ======================================================================================
# 4. epoch sampling


def test_epoch_sampling_draws_each_sample_once_per_epoch(mlp_data):
    # 60 steps = 2 epochs of 30; eval_every = 20 does not divide them: epochs straddle
    # the compiled segments
    ds = train_sgd(mlp_data, trials=3, sampling="epoch", **{**SGD, "steps": 60, "eval_every": 20})
    np.testing.assert_array_equal(ds.trial, [0, 1, 2])  # a count T means ids 0..T-1
    s = ds.sample.values
    for trial in range(3):
        blocks = s[trial].reshape(2, 30)
        for block in blocks:
            np.testing.assert_array_equal(np.sort(block), np.arange(30))
        assert not np.array_equal(blocks[0], blocks[1])  # a fresh permutation each epoch
    assert not np.array_equal(s[0], s[1])  # and per trial
    np.testing.assert_array_equal(ds.label.values, np.asarray(mlp_data.y_train)[s])
    assert ds.attrs["sampling"] == "epoch"


# ======================================================================================
# 6. train_sgd input checks


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(network="bn_mlp"), "bn_mlp"),
        (dict(network="vgg"), "network"),
        (dict(trials=0), "trials"),
        (dict(trials=[-1]), "trials"),
        (dict(trials=[1, 1]), "trials"),
        (dict(trials=[]), "trials"),
        (dict(trials=True), "trials"),
        (dict(steps=0), "steps"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(eval_every=0), "eval_every"),
        (dict(sampling="shuffle"), "sampling"),
    ],
)
def test_train_sgd_rejects(mlp_data, kwargs, field):
    kw = dict(network="mlp", network_options=SMALL, trials=1, steps=4, eval_every=2)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=field):
        train_sgd(mlp_data, **kw)


# ======================================================================================
# 7. train_separation

SEP = dict(seeds=2, epochs=2, seed=5, **SMALL)
SLOPES, RATES = [0.0, 1.0], [1e-3, 1e-2]


@pytest.fixture(scope="module")
def sep_data():
    x, y = blobs(30, D_IN, seed=11, sep=1.5)
    xv, yv = blobs(9, D_IN, seed=12, sep=1.5)
    return from_arrays(x, y, x_val=xv, y_val=yv, num_classes=K, name="tiny")


@pytest.fixture(scope="module")
def sep_grid(sep_data):
    return train_separation(sep_data, negative_slope=SLOPES, learning_rate=RATES, **SEP)


def test_train_separation_layout(sep_grid):
    ds = sep_grid
    dims = ("negative_slope", "learning_rate", "seed", "epoch", "layer")
    assert ds.D.dims == dims and ds.D_trace.dims == dims
    assert ds.D.shape == (2, 2, 2, 2, 3)
    np.testing.assert_array_equal(ds.negative_slope, SLOPES)
    np.testing.assert_allclose(ds.learning_rate, RATES)
    np.testing.assert_array_equal(ds.seed, [0, 1])
    np.testing.assert_array_equal(ds.epoch, [0, 2])
    np.testing.assert_array_equal(ds.layer, [0, 1, 2])
    for name in ("train_loss", "train_acc", "test_acc", "curvature", "correlation", "rho"):
        assert ds[name].dims == dims[:-1], name
    for name in ("train_acc", "test_acc"):
        assert np.all((ds[name].values >= 0) & (ds[name].values <= 1))
    assert np.all(np.isfinite(ds.D.values)) and np.all(ds.D.values > 0)
    # the scalar axes are attributes
    assert ds.attrs["dropout"] == 0.0 and ds.attrs["data_noise"] == 0.0
    assert ds.attrs["batch_size"] == 30 and ds.attrs["depth"] == 3 and ds.attrs["num_classes"] == K


def test_train_separation_hyperparameters_reach_members(sep_grid):
    d = sep_grid.D.values  # (slope, lr, seed, epoch, layer)
    dtr = sep_grid.D_trace.values
    # epoch 0 is the initialisation: the same for both learning rates
    np.testing.assert_allclose(d[:, 0, :, 0], d[:, 1, :, 0], rtol=1e-6)
    np.testing.assert_allclose(dtr[:, 0, :, 0], dtr[:, 1, :, 0], rtol=1e-6)
    # the slope changes the forward pass from the first hidden block on, not the input's
    np.testing.assert_allclose(d[0, :, :, 0, 0], d[1, :, :, 0, 0], rtol=1e-6)
    rel = np.abs(d[0, :, :, 0, 1:] - d[1, :, :, 0, 1:]) / d[0, :, :, 0, 1:]
    assert np.all(rel > 1e-3), rel
    # the seeds give different initialisations
    assert np.all(np.abs(d[:, :, 0, 0, 1:] - d[:, :, 1, 0, 1:]) > 1e-4 * d[:, :, 0, 0, 1:])
    # after training the learning rates differ
    rel = np.abs(d[:, 0, :, 1, 1:] - d[:, 1, :, 1, 1:]) / d[:, 0, :, 1, 1:]
    assert np.all(rel > 1e-4), rel
    loss = sep_grid.train_loss.values
    assert np.all(np.abs(loss[:, 0, :, 1] - loss[:, 1, :, 1]) > 1e-5)


def test_train_separation_epoch0_equals_direct_computation(sep_grid, sep_data):
    x, y = sep_data.x_train, np.asarray(sep_data.y_train)
    for a_i, a in enumerate(SLOPES):
        for s in range(2):
            key = jr.fold_in(jr.fold_in(jr.key(SEP["seed"]), s), 0)
            net, state = small_bnmlp(key, negative_slope=a, dropout=0.0)
            logits, _, feats = apply(net, x, state, inference=True)
            assert len(feats) == 3
            d = [float(separation_fuzziness(h, y, K)) for h in feats]
            dtr = [float(trace_ratio(h, y, K)) for h in feats]
            acc = np.mean(np.argmax(np.asarray(logits), -1) == y)
            loss = ce(logits, y).mean()
            for lr_i in range(2):
                np.testing.assert_allclose(sep_grid.D.values[a_i, lr_i, s, 0], d, rtol=1e-4)
                np.testing.assert_allclose(sep_grid.D_trace.values[a_i, lr_i, s, 0], dtr, rtol=1e-4)
                np.testing.assert_allclose(sep_grid.train_acc.values[a_i, lr_i, s, 0], acc, atol=1e-6)
                np.testing.assert_allclose(sep_grid.train_loss.values[a_i, lr_i, s, 0], loss, rtol=1e-5)


def test_train_separation_batch_size_dimension(sep_grid, sep_data):
    """A list of batch sizes is a dimension; seed i initialises alike in every call."""
    ds = train_separation(sep_data, negative_slope=0.0, learning_rate=RATES[0], batch_size=[10], **SEP)
    assert ds.D.dims == ("batch_size", "seed", "epoch", "layer")
    np.testing.assert_array_equal(ds.batch_size, [10])
    assert "batch_size" not in ds.attrs and ds.attrs["negative_slope"] == 0.0
    d, full = ds.D.values[0], sep_grid.D.values[0, 0]  # (seed, epoch, layer) each
    np.testing.assert_allclose(d[:, 0], full[:, 0], rtol=1e-5)  # the same initialisation
    # 3 Adam steps per epoch instead of the full batch's 1
    assert np.all(np.abs(d[:, 1, 1:] - full[:, 1, 1:]) > 1e-5 * full[:, 1, 1:])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(negative_slope=1.5), "negative_slope"),
        (dict(negative_slope=[0.0, -0.5]), "negative_slope"),
        (dict(dropout=1.0), "dropout"),
        (dict(data_noise=1.5), "data_noise"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(batch_size=1), "batch_size"),
        (dict(batch_size=31), "batch_size"),
        (dict(batch_size=[]), "batch_size"),
        (dict(eval_epochs=[0, 3]), "eval_epochs"),
        (dict(eval_epochs=[-1]), "eval_epochs"),
        (dict(epochs=0), "epochs"),
        (dict(seeds=0), "seeds"),
    ],
)
def test_train_separation_rejects(sep_data, kwargs, field):
    kw = dict(seeds=1, epochs=2, width=4, depth=2)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=field):
        train_separation(sep_data, **kw)


def test_train_separation_rejects_empty_validation_set():
    x, y = blobs(12, 4, seed=0)
    data = from_arrays(x, y, val_fraction=0.0, num_classes=K)
    assert data.num_val == 0
    with pytest.raises(ValueError, match="validation set"):
        train_separation(data, seeds=1, epochs=1, width=4, depth=2)


@pytest.mark.parametrize("value", [0, -2, 2.5, 3.0, True, "3", None])
def test_integer_arguments_must_be_positive_ints(sep_data, value):
    """Counts go through `check_positive_int`: the message names the field and the value."""
    want = re.escape(f"must be a positive integer, got {value!r}")
    with pytest.raises(ValueError, match="seeds " + want):
        train_separation(sep_data, seeds=value, epochs=1, width=4, depth=2)
    with pytest.raises(ValueError, match="num " + want):
        log_spaced_steps(10, value)
    assert log_spaced_steps(np.int64(10), 3).tolist() == [0, 2, 10]


def test_fuzziness_by_layer_is_one_svd_and_matches_each_layer():
    """D of all layers from one batched SVD, the features zero-padded to a common width,
    equals `separation_fuzziness` of each layer, for layers narrower and wider than K (one
    LAPACK call per program: several at once can deadlock XLA's CPU thread pool)."""
    rng = np.random.default_rng(3)
    y = jnp.asarray(np.arange(40) % K)
    feats = [jnp.asarray(rng.normal(size=(40, w)) + 3 * rng.normal(size=w), jnp.float32) for w in (8, 2, 5)]
    fn = jax.jit(_fuzziness_by_layer, static_argnums=2)
    want = [float(separation_fuzziness(h, y, K)) for h in feats]
    np.testing.assert_allclose(fn(feats, y, K), want, rtol=1e-5)
    if jax.default_backend() == "cpu":
        assert fn.lower(feats, y, K).as_text().count("custom_call @lapack") == 1


# ======================================================================================
# 8. D_l of linear networks


def rotation(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def test_linear_network_with_scaled_rotations_keeps_separation(x64):
    """Each layer h -> c Q h + b (Q orthogonal) leaves D = Tr(Sigma_W Sigma_B^+) and
    D_tr = Tr Sigma_W / Tr Sigma_B unchanged: they are equal across layers."""
    rng = np.random.default_rng(0)
    p, depth = 6, 5
    x, y = blobs(60, p, seed=21, sep=1.0)
    x = jnp.asarray(x, jnp.float64)
    scales = (0.3, 2.0, 5.0, 0.7)
    weights = [c * rotation(rng, p) for c in scales] + [rng.standard_normal((K, p))]
    biases = [5.0 * rng.standard_normal(p) for _ in scales] + [rng.standard_normal(K)]
    shape = eqx.filter_eval_shape(MLP, (p,), K, width=p, depth=depth, activation="linear", key=jr.key(0))
    net = eqx.tree_at(
        lambda m: [lay.weight for lay in m.layers] + [lay.bias for lay in m.layers],
        shape,
        [jnp.asarray(w) for w in weights] + [jnp.asarray(b) for b in biases],
    )
    state = eqx.nn.State(net)
    _, _, feats = apply(net, x, state, inference=True)
    assert len(feats) == depth and feats[1].dtype == jnp.float64
    np.testing.assert_allclose(feats[1], np.asarray(x) @ weights[0].T + biases[0], rtol=1e-10, atol=1e-10)
    d = np.array([float(separation_fuzziness(h, y, K)) for h in feats])
    dtr = np.array([float(trace_ratio(h, y, K)) for h in feats])
    np.testing.assert_allclose(d, d[0], rtol=1e-4)
    np.testing.assert_allclose(dtr, dtr[0], rtol=1e-4)
    # a non-conformal first layer (one axis stretched) changes D_tr: the equality above is
    # a property of the scaled rotations
    stretch = np.diag([10.0, 1, 1, 1, 1, 1])
    net2 = eqx.tree_at(lambda m: m.layers[0].weight, net, jnp.asarray(stretch @ weights[0]))
    _, _, feats2 = apply(net2, x, state, inference=True)
    assert abs(float(trace_ratio(feats2[1], y, K)) / dtr[0] - 1) > 1e-2


def test_linear_network_preserves_linear_separability(getkey):
    """An injective linear map preserves linear separability (and its absence)."""
    rng = np.random.default_rng(3)
    y = np.arange(60) % K
    x_sep = (12.0 * np.eye(K, D_IN)[y] + rng.standard_normal((60, D_IN))).astype(np.float32)
    net, state = make_network("mlp", getkey(), input_shape=(D_IN,), num_classes=K, activation="linear", **SMALL)
    for lay in net.layers[:-1]:  # width 8 >= input dim 8: every hidden layer injective
        assert np.linalg.matrix_rank(np.asarray(lay.weight)) == D_IN
    _, _, feats = apply(net, x_sep, state, inference=True)
    assert len(feats) == 3
    assert [bool(linearly_separable(h, y, K)) for h in feats] == [True] * 3
    # identical class distributions (labels independent of the inputs): not separable
    x_mix = rng.standard_normal((60, D_IN)).astype(np.float32)
    _, _, feats = apply(net, x_mix, state, inference=True)
    assert not linearly_separable(feats[0], y, K)


# ======================================================================================
# 8. the spring-block authors' protocol: data noise, early stopping, measures, compiling


def test_data_noise_redraws_exactly_floor_sB_labels_and_scales_the_input_noise():
    """floor(s B) labels at distinct positions are redrawn (as the authors' randperm), the
    others kept; the input noise has std s * std(batch)."""
    from lesde.nets._train import _data_noise

    b, k = 2000, 10
    x = jr.normal(jr.key(0), (b, 5)) * 3.0
    y = jnp.arange(b) % k
    for s in (0.0, 0.3, 0.7):
        count = int(np.floor(s * b + 1e-9))
        keys = tuple(jr.split(jr.key(1), 3))
        xn, yn = _data_noise(keys, x, y, jnp.float32(s), jnp.int32(count), k)
        changed = np.asarray(yn != y)
        # a redrawn label keeps its value with probability 1/K: about count (1 - 1/K) change
        assert changed.sum() <= count
        if count:
            assert abs(changed.sum() - count * (1 - 1 / k)) < 4 * np.sqrt(count * 0.09) + 1
        std = float(np.std(np.asarray(xn - x)))
        np.testing.assert_allclose(std, s * float(np.std(np.asarray(x), ddof=1)), rtol=0.05, atol=1e-7)
    # exactly `count` positions are chosen: with K = 1 << labels never collide... use a
    # label outside the redraw range to count the chosen positions exactly
    y_out = jnp.full(b, k)  # label k is never drawn by randint(0, k)
    _, yn = _data_noise(tuple(jr.split(jr.key(2), 3)), x, y_out, jnp.float32(0.3), jnp.int32(600), k)
    assert int(np.sum(np.asarray(yn) != k)) == 600


def test_bnmlp_without_dropout_layers_equals_dropout_zero():
    key = jr.key(3)
    x = jr.normal(jr.key(4), (16, D_IN))
    a, sa = small_bnmlp(key, negative_slope=0.2, dropout=0.0)
    b, sb = small_bnmlp(key, negative_slope=0.2, dropout=None)
    la, _, fa = _apply(a, x, sa, key=jr.key(5), inference=False)
    lb, _, fb = _apply(b, x, sb, inference=False)  # no key needed without dropout
    np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    for fa_l, fb_l in zip(fa, fb):
        np.testing.assert_array_equal(np.asarray(fa_l), np.asarray(fb_l))
    a, sa = small_bnmlp(key, negative_slope=0.2, dropout=0.0)
    with pytest.raises(ValueError, match="needs a key for dropout"):
        _apply(a, x, sa, inference=False)


def test_grid_with_dropout_keeps_the_q0_cells_of_a_grid_without(sep_data):
    """Dropout layers are built only when some member has q > 0; a q = 0 member trains
    the same either way (same data order and noise streams)."""
    kw = dict(SEP, negative_slope=0.3, learning_rate=1e-2, data_noise=0.2)
    plain = train_separation(sep_data, dropout=0.0, **kw)
    mixed = train_separation(sep_data, dropout=[0.0, 0.2], **kw)
    np.testing.assert_allclose(mixed.D.sel(dropout=0.0).values, plain.D.values, rtol=1e-5)
    assert np.all(np.abs(mixed.D.sel(dropout=0.2).values[:, 1] - plain.D.values[:, 1]) > 0)


def test_early_stopping_freezes_a_member_after_the_epoch_that_met_the_criterion(sep_data):
    """stop_loss above every loss: each member trains exactly one epoch, and its measures
    at the last epoch equal those of a one-epoch run."""
    kw = dict(SEP, negative_slope=SLOPES, learning_rate=1e-2)
    kw["epochs"] = 4
    stopped = train_separation(sep_data, stop_loss=100.0, eval_epochs=[0, 1, 4], **kw)
    assert np.all(stopped.stop_epoch.values == 1)
    kw["epochs"] = 1
    one = train_separation(sep_data, stop_loss=None, **kw)
    np.testing.assert_array_equal(stopped.D.sel(epoch=4).values, one.D.sel(epoch=1).values)
    np.testing.assert_array_equal(stopped.test_acc.sel(epoch=4).values, one.test_acc.sel(epoch=1).values)
    # never stopping: every member trains all epochs
    kw["epochs"] = 3
    full = train_separation(sep_data, stop_loss=None, **kw)
    assert np.all(full.stop_epoch.values == 3) and np.isnan(full.attrs["stop_loss"])


@pytest.mark.parametrize("measure", ["log_trace_ratio", "fuzziness"])  # both variables, log or not
def test_load_curve_statistics_follow_the_chosen_measure(sep_grid, sep_data, measure):
    from lesde.metrics import load_curve, separation_gains
    from lesde.nets import MEASURES

    ds = sep_grid if measure == "log_trace_ratio" else train_separation(
        sep_data, negative_slope=SLOPES, learning_rate=RATES, measure=measure, **SEP
    )
    assert ds.attrs["measure"] == measure
    variable, log = MEASURES[measure]
    m = ds[variable].values.astype(np.float64)
    m = np.log(m) if log else m
    curve = load_curve(separation_gains(m))
    np.testing.assert_allclose(ds.curvature.values, np.asarray(curve.curvature), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ds.nonuniformity.values, np.asarray(curve.nonuniformity), rtol=1e-4, atol=1e-5)
    lo, hi = m.min(-1, keepdims=True), m.max(-1, keepdims=True)
    np.testing.assert_allclose(ds.curve.values, (m - lo) / (hi - lo), atol=2e-4)
    assert np.nanmin(ds.curve.values) == 0.0 and np.nanmax(ds.curve.values) == pytest.approx(1.0)


def test_unknown_measure_and_bad_stop_loss_are_refused(sep_data):
    with pytest.raises(ValueError, match="measure must be one of"):
        train_separation(sep_data, seeds=1, epochs=1, width=4, depth=2, measure="D")
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="stop_loss"):
            train_separation(sep_data, seeds=1, epochs=1, width=4, depth=2, stop_loss=bad)


def test_training_compiles_once_per_shape_not_per_chunk_or_run(sep_data, monkeypatch):
    """`_adam_epoch` and `_measure_members` are traced once per shape: a later run of
    three chunks of the same size, with other hyperparameter values, traces nothing."""
    from lesde.nets import _train

    traces = []
    real = _train.apply
    monkeypatch.setattr(_train, "apply", lambda *a, **k: (traces.append(1), real(*a, **k))[1])
    kw = dict(seeds=1, epochs=2, width=5, depth=2, seed=1, chunk_size=2)
    train_separation(sep_data, negative_slope=[0.0, 0.5], **kw)  # one chunk of 2
    assert len(traces) > 0
    traces.clear()
    ds = train_separation(sep_data, negative_slope=[0.1, 0.2, 0.3, 0.4, 0.6, 0.9], learning_rate=1e-2, **kw)
    assert len(traces) == 0 and ds.sizes["negative_slope"] == 6


def test_train_sgd_compiles_once_per_configuration_not_per_call(mlp_data, monkeypatch):
    """A second call with other trials (same count, shapes and configuration), as a run
    in blocks of trials makes, traces nothing: the SGD segment, validation and snapshot
    functions are compiled once."""
    from lesde.nets import _train

    traces = []
    real = _train._ce
    monkeypatch.setattr(_train, "_ce", lambda *a: (traces.append(1), real(*a))[1])
    kw = dict(network="mlp", network_options=dict(width=7, depth=2), steps=6, eval_every=3,
              snapshot_steps=[3], learning_rate=0.05, seed=2)
    first = train_sgd(mlp_data, trials=[0, 1], **kw)
    assert len(traces) > 0
    traces.clear()
    second = train_sgd(mlp_data, trials=[2, 3], **kw)
    assert len(traces) == 0
    assert not np.array_equal(first.logits.values, second.logits.values)
