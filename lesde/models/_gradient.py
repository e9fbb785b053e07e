"""Loss-gradient models G(x, k) in R^p: the gradient of the per-sample loss at feature x
of a class-k sample.

Notation: K classes, e_k the k-th unit vector of R^K, d_k = e_k - 1/K the simplex
direction of class k (|d_k|^2 = (K-1)/K), P_k = d_k d_k^T / |d_k|^2, and a fixed linear
head W in R^{K x p} mapping features to logits z = W x (default p = K, W = I).
"""

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jaxtyping import Array, Float, Int

from .._checks import as_float_array, check_finite, check_positive_int
from ._registry import register_class, registered
from ._classes import Classes
from ._ops import axis_dot, axis_sum


def simplex_directions(num_classes: int, dtype=None) -> Float[Array, "K K"]:
    """Rows d_k = e_k - 1/K."""
    eye = jnp.eye(num_classes, dtype=dtype or jnp.result_type(float))
    return eye - 1.0 / num_classes


def _head_or_identity(head, num_classes, dtype):
    return jnp.eye(num_classes, dtype=dtype) if head is None else head.astype(dtype)


class AbstractGradient(eqx.Module):
    """A loss-gradient model G(x, k)."""

    name: ClassVar[str]
    is_linear: ClassVar[bool]
    """True if G(., k) is affine, so that the class mean of G is G of the class mean
    (then the LE-ODE of class means is exact)."""

    @abc.abstractmethod
    def __call__(
        self, x: Float[Array, "*b p"], k: Int[Array, "*b"], num_classes: int
    ) -> Float[Array, "*b p"]:
        """G(x, k), batched over leading axes of `x` and `k`."""

    def class_mean(self, x: Float[Array, "N p"], classes: Classes) -> Float[Array, "K p"]:
        """Gbar_k = mean over samples j of class k of G(X_j, k), in O(N p)."""
        k = jnp.arange(classes.num_classes)
        if self.is_linear:
            return self(classes.mean(x), k, classes.num_classes)
        return classes.mean(self(x, classes.labels, classes.num_classes))

    def class_mean_class_major(self, z: Float[Array, "K p n"]) -> Float[Array, "K p"]:
        """Gbar from the state in the class-major layout z[k, c, j] = X_{k n + j, c} (K
        balanced classes of n samples, sorted), without going back to (N, p)."""
        K = z.shape[0]
        if self.is_linear:
            return self(jnp.mean(z, axis=2), jnp.arange(K), K)
        x = z.transpose(0, 2, 1).reshape(-1, z.shape[1])
        return self.class_mean(x, Classes.balanced(K, z.shape[2]))

    def trial_minor(self, z: Float[Array, "K p B"]) -> Float[Array, "K p B"]:
        """G(z[k, :, b], k) for the K class rows of B states stored with the trials on
        the minor axis (the LE-ODE's class means, batched for
        `lesde.solve.simulate_ensemble`). Default: `__call__` vmapped over the trial
        axis; the linear models compute it in that layout directly."""
        K = z.shape[0]
        return jax.vmap(lambda x: self(x, jnp.arange(K), K), in_axes=-1, out_axes=-1)(z)

    head_matrix: AbstractVar[Float[Array, "K p"] | None]
    """The fixed linear head W (None: W = I, p = K)."""

    def head(self, num_classes: int, dtype=None) -> Float[Array, "K p"]:
        """The linear head W mapping features to logits z = W x."""
        return _head_or_identity(self.head_matrix, num_classes, dtype or jnp.result_type(float))

    def check(self, num_classes: int, dim: int) -> None:
        """Raise a ValueError if this model cannot act on K classes in R^p."""
        check_positive_int("num_classes", num_classes)
        check_positive_int("dim", dim)
        _check_head(self.head_matrix, num_classes, dim, self.name)


GRADIENT_MODELS: dict[str, type[AbstractGradient]] = {}
"""Name -> gradient model class, for `gradient_model`, `LESDE(gradient=name)` and the
`gradient` key of configs; `register_gradient` adds to it."""


def register_gradient(cls: type[AbstractGradient]) -> type[AbstractGradient]:
    """Register a gradient model class under its `name` (a class decorator), so that
    `gradient_model(name)`, `LESDE(..., gradient=name)` and configs (`gradient: name`)
    build it. The class must be a concrete subclass of `AbstractGradient` with a `name`,
    `is_linear` and a `head_matrix` field (None: W = I), and be constructible as `cls()`.

    Example (the hinge-like gradient of a margin loss, a new module of your own):

        import equinox as eqx, jax, jax.numpy as jnp
        from typing import ClassVar
        from lesde.models import AbstractGradient, register_gradient

        @register_gradient
        class Margin(AbstractGradient):
            \"\"\"G(x, k) = -softplus(1 - x_k) e_k: pulls the own logit up to 1.\"\"\"
            name: ClassVar[str] = "margin"
            is_linear: ClassVar[bool] = False
            head_matrix: None = None

            def __call__(self, x, k, num_classes):
                e = jax.nn.one_hot(k, num_classes, dtype=x.dtype)
                own = jnp.sum(x * e, axis=-1, keepdims=True)
                return -jax.nn.softplus(1 - own) * e
    """
    return register_class(GRADIENT_MODELS, cls, AbstractGradient, "gradient model",
                          "register_gradient", identifier=False)


def _check_head(head, num_classes, dim, model):
    if head is None:
        if dim != num_classes:
            raise ValueError(
                f"the {model} model without a head needs dim p = num_classes K (W = I), got "
                f"dim = {dim} and num_classes = {num_classes}; pass head=W of shape (K, p)"
            )
    elif tuple(head.shape) != (num_classes, dim):
        raise ValueError(
            f"the {model} model's head must have shape (num_classes, dim) = "
            f"({num_classes}, {dim}), got shape {tuple(head.shape)}"
        )


def _as_head(head):
    if head is None:
        return None
    w = as_float_array("head", head)
    check_finite("head", w)
    if w.ndim != 2:
        raise ValueError(f"head must be a 2-D (K, p) matrix, got shape {tuple(w.shape)}")
    return w


@register_gradient
class Identity(AbstractGradient):
    """The authors' I-model: G(x, k) = -x.

    **Arguments:** `head`: W of shape (K, p), used only to form logits (loss, accuracy);
    None means W = I (p = K).
    """

    name: ClassVar[str] = "identity"
    is_linear: ClassVar[bool] = True
    head_matrix: Float[Array, "K p"] | None

    def __init__(self, head: Any = None):
        self.head_matrix = _as_head(head)

    def __call__(self, x, k, num_classes):
        return -x

    def trial_minor(self, z):
        return -z


@register_gradient
class Projected(AbstractGradient):
    """The authors' L-model (needs p = K): G(x, k) = -P_k x = -d_k <d_k, x> / |d_k|^2,
    with <d_k, x> = x_k - mean(x) and |d_k|^2 = (K-1)/K."""

    name: ClassVar[str] = "projected"
    is_linear: ClassVar[bool] = True
    head_matrix: None = None

    def __call__(self, x, k, num_classes):
        d = simplex_directions(num_classes, x.dtype)[k]
        coef = axis_dot(d, x, -1, keepdims=True) * (num_classes / (num_classes - 1))
        return -coef * d

    def trial_minor(self, z):
        # Row by row along the trial axis: <d_k, z_k> = z_kk - mean_c z_kc for each
        # class k (a (B,) row), then G_kc = -(K/(K-1)) <d_k, z_k> d_kc. The K rows of
        # coefficients are materialised once (the optimization barrier) rather than
        # recomputed inside XLA's fused loop for each of the K p outputs, which then
        # fuse into one loop with the impact and the step (1.5x faster on the LE-ODE
        # of K = 3 with 500 trials).
        K = z.shape[0]
        scale = K / (K - 1)
        coef = [(z[k, k] - axis_sum(z[k], 0) / K) * scale for k in range(K)]
        coef = jax.lax.optimization_barrier(jnp.stack(coef))
        d = simplex_directions(K, z.dtype)
        return -coef[:, None, :] * d[:, :, None]

    def check(self, num_classes, dim):
        if num_classes < 2:
            raise ValueError(f"the projected model needs num_classes >= 2, got {num_classes}")
        if dim != num_classes:
            raise ValueError(
                f"the projected model needs dim p = num_classes K, got dim = {dim} and "
                f"num_classes = {num_classes}"
            )
        super().check(num_classes, dim)


@register_gradient
class LinearCE(AbstractGradient):
    """Cross-entropy linearised at zero logits: G(x, k) = -W^T d_k, a constant pull.

    **Arguments:** `head`: W of shape (K, p); None means W = I (p = K).
    """

    name: ClassVar[str] = "linear-ce"
    is_linear: ClassVar[bool] = True
    head_matrix: Float[Array, "K p"] | None

    def __init__(self, head: Any = None):
        self.head_matrix = _as_head(head)

    def __call__(self, x, k, num_classes):
        w = _head_or_identity(self.head_matrix, num_classes, x.dtype)
        pull = simplex_directions(num_classes, x.dtype) @ w  # rows W^T d_k
        return jnp.broadcast_to(-pull[k], x.shape)

    def class_mean(self, x, classes):
        w = _head_or_identity(self.head_matrix, classes.num_classes, x.dtype)
        return -(simplex_directions(classes.num_classes, x.dtype) @ w)

    def trial_minor(self, z):
        K = z.shape[0]
        pull = simplex_directions(K, z.dtype) @ _head_or_identity(self.head_matrix, K, z.dtype)
        return jnp.broadcast_to(-pull[..., None], z.shape)



@register_gradient
class CrossEntropy(AbstractGradient):
    """True softmax cross-entropy through a fixed head:
    G(x, k) = W^T (softmax(W x) - e_k).

    The class mean is W^T (mean_{j in k} softmax(W X_j) - e_k): one segment sum of the
    N x K softmax, O(N K p) for the logits (O(N K) with W = I).

    **Arguments:** `head`: W of shape (K, p); None means W = I (p = K).
    """

    name: ClassVar[str] = "ce"
    is_linear: ClassVar[bool] = False
    head_matrix: Float[Array, "K p"] | None

    def __init__(self, head: Any = None):
        self.head_matrix = _as_head(head)

    def _logits(self, x):
        return x if self.head_matrix is None else x @ self.head_matrix.T.astype(x.dtype)

    def _back(self, g):
        return g if self.head_matrix is None else g @ self.head_matrix.astype(g.dtype)

    def __call__(self, x, k, num_classes):
        s = jax.nn.softmax(self._logits(x), axis=-1)
        return self._back(s - jax.nn.one_hot(k, num_classes, dtype=x.dtype))

    def class_mean(self, x, classes):
        s = classes.mean(jax.nn.softmax(self._logits(x), axis=-1))
        return self._back(s - jnp.eye(classes.num_classes, dtype=x.dtype))

    def class_mean_class_major(self, z):
        # logits and softmax along the feature axis 1, means along the sample axis 2
        if self.head_matrix is not None:
            z = jnp.einsum("cp,kpn->kcn", self.head_matrix.astype(z.dtype), z)
        s = jnp.mean(jax.nn.softmax(z, axis=1), axis=2)
        return self._back(s - jnp.eye(z.shape[0], dtype=z.dtype))



def gradient_model(name: str, **kwargs) -> AbstractGradient:
    """Build a registered gradient model by name: 'identity', 'projected', 'linear-ce',
    'ce' or one added with `register_gradient`."""
    return registered(GRADIENT_MODELS, name, "gradient model", "register_gradient")(**kwargs)
