"""Equinox networks whose training the theories describe.

Every network maps ONE input to its K logits and also returns its layer representations:

    logits, state, features = net.forward(x, state, key=key, inference=inference)

`state` is an `equinox.nn.State` (running BatchNorm statistics; empty for networks
without BatchNorm); `features` is a tuple of the representations on which the law of data
separation is measured (the input, then each hidden block; logits excluded). `apply`
runs a network over a batch, under `jax.vmap` with the axis name BatchNorm needs.
Build a network with its state through `equinox.nn.make_with_state`, e.g.
`net, state = make_network("lenet", key, input_shape=(1, 32, 32), num_classes=3)`.
"""

import abc
import math
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import show

BATCH_AXIS = "batch"


class AbstractNetwork(eqx.Module):
    """A classifier of single inputs into `num_classes` logits.

    Subclasses implement `forward`; `__call__` returns the logits and the state only.
    """

    num_classes: eqx.AbstractVar[int]

    @abc.abstractmethod
    def forward(
        self, x: Array, state: eqx.nn.State, *, key: PRNGKeyArray | None, inference: bool
    ) -> tuple[Float[Array, " K"], eqx.nn.State, tuple[Array, ...]]:
        """One input x -> (logits, new state, layer representations)."""

    @property
    def uses_batch_stats(self) -> bool:
        """Whether training mode normalises by batch statistics (needs batches of >= 2)."""
        return False

    def __call__(self, x, state, *, key=None, inference=False):
        logits, state, _ = self.forward(x, state, key=key, inference=inference)
        return logits, state


def apply(
    net: AbstractNetwork,
    x: Float[Array, "B *shape"],
    state: eqx.nn.State,
    *,
    key: PRNGKeyArray | None = None,
    inference: bool = False,
) -> tuple[Float[Array, "B K"], eqx.nn.State, tuple[Array, ...]]:
    """Run `net` over a batch: (logits (B, K), new state, representations (B, ...) each).

    In training mode BatchNorm layers normalise by the statistics of this batch and update
    their running statistics; `key` drives dropout (one key per sample is split from it).
    """
    batch = x.shape[0]
    keys = None if key is None else jr.split(key, batch)

    def one(xi, ki):
        return net.forward(xi, state, key=ki, inference=inference)

    in_axes = (0, None if keys is None else 0)
    return jax.vmap(one, in_axes=in_axes, out_axes=(0, None, 0), axis_name=BATCH_AXIS)(x, keys)


def _conv_out(size: int, kernel: int) -> int:
    return size - kernel + 1


def _check_input_shape(input_shape: Any, ndim: int | None, name: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise ValueError(f"{name}: input_shape must be a tuple of ints; got {show(input_shape)}") from None
    if (ndim is not None and len(shape) != ndim) or any(s < 1 for s in shape):
        want = f"{ndim} positive sizes" if ndim else "positive sizes"
        raise ValueError(f"{name}: input_shape must be {want}; got {shape}")
    return shape


def _check_classes(name: str, num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{name}: num_classes must be an int >= 2; got {show(num_classes)}")
    return num_classes


class LeNet(AbstractNetwork):
    """LeNet-5 style CNN of the LE-SDE authors' experiment:

        conv 6@5x5 -> ReLU -> maxpool 2 -> conv 16@5x5 -> ReLU -> maxpool 2
        -> fc 120 -> ReLU -> fc 84 -> ReLU -> fc K.

    Input (C, H, W) channels first (32 x 32 gives the classic 16 x 5 x 5 = 400 flat
    features). Representations: the flattened input, the flattened output of each pooling
    stage and the two hidden fully connected layers.
    """

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    fc3: eqx.nn.Linear
    pool: eqx.nn.MaxPool2d
    num_classes: int = eqx.field(static=True)
    input_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, input_shape=(1, 32, 32), num_classes: int = 3, *, key: PRNGKeyArray):
        c, h, w = _check_input_shape(input_shape, 3, "LeNet")
        self.num_classes = _check_classes("LeNet", num_classes)
        h2, w2 = (_conv_out(h, 5) // 2), (_conv_out(w, 5) // 2)
        h3, w3 = (_conv_out(h2, 5) // 2), (_conv_out(w2, 5) // 2)
        if min(h3, w3) < 1:
            raise ValueError(
                f"LeNet: input_shape {(c, h, w)} is too small for two 5x5 convolutions with "
                "2x2 pooling (needs H, W >= 16)"
            )
        k1, k2, k3, k4, k5 = jr.split(key, 5)
        self.input_shape = (c, h, w)
        self.conv1 = eqx.nn.Conv2d(c, 6, 5, key=k1)
        self.conv2 = eqx.nn.Conv2d(6, 16, 5, key=k2)
        self.fc1 = eqx.nn.Linear(16 * h3 * w3, 120, key=k3)
        self.fc2 = eqx.nn.Linear(120, 84, key=k4)
        self.fc3 = eqx.nn.Linear(84, num_classes, key=k5)
        self.pool = eqx.nn.MaxPool2d(2, 2)

    def forward(self, x, state, *, key=None, inference=False):
        h1 = self.pool(jax.nn.relu(self.conv1(x)))
        h2 = self.pool(jax.nn.relu(self.conv2(h1)))
        f1 = jax.nn.relu(self.fc1(h2.reshape(-1)))
        f2 = jax.nn.relu(self.fc2(f1))
        return self.fc3(f2), state, (x.reshape(-1), h1.reshape(-1), h2.reshape(-1), f1, f2)


class MLP(AbstractNetwork):
    """A plain multilayer perceptron: h_0 = flatten(x), h_l = act(W_l h_{l-1} + b_l) for
    l = 1..depth-1, logits = W_depth h_{depth-1} + b_depth.

    `activation` is "relu", "tanh" or "linear" (the leaky slope is a `BNMLP` option).
    Representations: h_0, ..., h_{depth-1}.
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: str = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    input_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        input_shape,
        num_classes: int,
        *,
        width: int = 100,
        depth: int = 3,
        activation: Literal["relu", "tanh", "linear"] = "relu",
        key: PRNGKeyArray,
    ):
        self.input_shape = _check_input_shape(input_shape, None, "MLP")
        self.num_classes = _check_classes("MLP", num_classes)
        _check_size("MLP", "width", width, 1)
        _check_size("MLP", "depth", depth, 1)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")
        sizes = [math.prod(self.input_shape)] + [width] * (depth - 1) + [num_classes]
        keys = jr.split(key, depth)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))
        self.activation = activation

    def forward(self, x, state, *, key=None, inference=False):
        h = x.reshape(-1)
        feats = [h]
        act = _ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            h = act(layer(h))
            feats.append(h)
        return self.layers[-1](h), state, tuple(feats)


_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "linear": lambda h: h}


def _check_size(name: str, field: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: {field} must be an int >= {minimum}; got {show(value)}")


def _hyper(name: str, field: str, value: Any, lo: float, hi: float, hi_open: bool) -> Array:
    v = jnp.asarray(value, dtype=float)
    if v.ndim != 0:
        raise ValueError(f"{name}: {field} must be a scalar; got shape {v.shape}")
    try:
        f = float(v)
    except jax.errors.ConcretizationTypeError:
        return v  # traced under vmap: checked where the grid is built
    if not (lo <= f < hi if hi_open else lo <= f <= hi):
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name}: {field} must lie in [{lo}, {hi}{bracket}; got {f}")
    return v


class BatchNorm(eqx.Module):
    """Batch normalisation of one feature vector, as PyTorch's `BatchNorm1d`:

        training:   y = (x - m_B) / sqrt(v_B + eps) * w + b,
                    running <- (1 - momentum) running + momentum (m_B, v_B * n / (n - 1)),
        evaluation: y = (x - m_run) / sqrt(v_run + eps) * w + b,

    with m_B, v_B the mean and (biased) variance over the batch of n samples (the vmapped
    axis named `BATCH_AXIS`), running statistics starting at (0, 1), momentum 0.1.
    Call it under `apply` (which names the batch axis).
    """

    weight: Float[Array, " d"]
    bias: Float[Array, " d"]
    index: eqx.nn.StateIndex
    momentum: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, size: int, *, momentum: float = 0.1, eps: float = 1e-5):
        self.weight = jnp.ones((size,))
        self.bias = jnp.zeros((size,))
        self.index = eqx.nn.StateIndex((jnp.zeros((size,)), jnp.ones((size,))))
        self.momentum = momentum
        self.eps = eps

    def __call__(self, x, state, *, inference: bool):
        if inference:
            mean, var = state.get(self.index)
        else:
            mean = jax.lax.pmean(x, BATCH_AXIS)
            var = jax.lax.pmean((x - mean) ** 2, BATCH_AXIS)
            n = jax.lax.psum(1, BATCH_AXIS)
            run_mean, run_var = state.get(self.index)
            m = self.momentum
            state = state.set(
                self.index, ((1 - m) * run_mean + m * mean, (1 - m) * run_var + m * var * n / (n - 1))
            )
        return (x - mean) / jnp.sqrt(var + self.eps) * self.weight + self.bias, state


class BNMLP(AbstractNetwork):
    """The spring-block authors' MLP: input BatchNorm, then `depth - 1` blocks of

        Linear -> BatchNorm -> LeakyReLU(a) -> Dropout(q),

    then a linear readout (depth 8, width 100 by default). BatchNorm (`BatchNorm`, as
    PyTorch's) uses the batch's statistics in training and running statistics in
    evaluation; dropout is active in training only, scaling kept units by 1/(1-q).

    The leaky slope `negative_slope` (a in [0, 1]: 0 = ReLU, 1 = linear) and the dropout
    rate `dropout` (q in [0, 1)) are array fields, so a grid over them vmaps; they are
    hyperparameters, not trained: the forward pass stops their gradients. `dropout=None`
    builds the network without dropout layers (no random masks are drawn, and training
    needs no key); q = 0 gives the same outputs at the cost of the masks.

    Representations (the spring-block authors' choice): the input after its BatchNorm and
    each hidden block's activation before dropout; the logits are excluded.
    """

    input_norm: BatchNorm
    linears: tuple[eqx.nn.Linear, ...]
    norms: tuple[BatchNorm, ...]
    readout: eqx.nn.Linear
    negative_slope: Float[Array, ""]
    dropout: Float[Array, ""] | None
    num_classes: int = eqx.field(static=True)
    input_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        input_shape,
        num_classes: int,
        *,
        width: int = 100,
        depth: int = 8,
        negative_slope: Any = 0.0,
        dropout: Any | None = 0.0,
        key: PRNGKeyArray,
    ):
        self.input_shape = _check_input_shape(input_shape, None, "BNMLP")
        self.num_classes = _check_classes("BNMLP", num_classes)
        _check_size("BNMLP", "width", width, 1)
        _check_size("BNMLP", "depth", depth, 2)
        self.negative_slope = _hyper("BNMLP", "negative_slope", negative_slope, 0.0, 1.0, False)
        self.dropout = None if dropout is None else _hyper("BNMLP", "dropout", dropout, 0.0, 1.0, True)
        d_in = math.prod(self.input_shape)
        keys = jr.split(key, depth)
        sizes = [d_in] + [width] * (depth - 1)
        self.input_norm = BatchNorm(d_in)
        self.linears = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))
        self.norms = tuple(BatchNorm(width) for _ in range(depth - 1))
        self.readout = eqx.nn.Linear(width, num_classes, key=keys[-1])

    @property
    def uses_batch_stats(self) -> bool:
        return True

    def forward(self, x, state, *, key=None, inference=False):
        a = jax.lax.stop_gradient(self.negative_slope)
        drop = not inference and self.dropout is not None
        q = jax.lax.stop_gradient(self.dropout) if drop else None
        h, state = self.input_norm(x.reshape(-1), state, inference=inference)
        feats = [h]
        keys = [None] * len(self.linears) if key is None or not drop else list(jr.split(key, len(self.linears)))
        for linear, norm, k in zip(self.linears, self.norms, keys):
            h, state = norm(linear(h), state, inference=inference)
            h = jnp.where(h >= 0, h, a * h)
            feats.append(h)
            if drop:
                if k is None:
                    raise ValueError("BNMLP: training mode needs a key for dropout")
                keep = jr.bernoulli(k, 1.0 - q, h.shape)
                h = jnp.where(keep, h / (1.0 - q), 0.0)
        return self.readout(h), state, tuple(feats)


NETWORKS = {"lenet": LeNet, "mlp": MLP, "bn_mlp": BNMLP}


def make_network(
    name: str, key: PRNGKeyArray, *, input_shape, num_classes: int, **options
) -> tuple[AbstractNetwork, eqx.nn.State]:
    """Build a network by name ("lenet", "mlp", "bn_mlp") with its initial state.

    `options` go to the constructor (e.g. width, depth, negative_slope, dropout).
    Under `jax.vmap` over keys this gives independent trials.
    """
    if name not in NETWORKS:
        raise ValueError(f"network must be one of {sorted(NETWORKS)}; got {name!r}")
    return eqx.nn.make_with_state(NETWORKS[name])(input_shape, num_classes, key=key, **options)
