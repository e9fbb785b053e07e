"""The per-sample locally elastic SDE and its class-mean limit, the LE-ODE."""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from .._checks import as_float_array, check_finite, check_nonnegative, check_positive_int
from .._tsit5 import UnrolledTsit5
from ._base import AbstractDynamics
from ._classes import Classes
from ._gradient import AbstractGradient, GRADIENT_MODELS, gradient_model
from ._impact import AbstractImpact
from ._noise import Noise, NoiseTerm


def _as_gradient(gradient) -> AbstractGradient:
    if isinstance(gradient, str):
        return gradient_model(gradient)
    if not isinstance(gradient, AbstractGradient):
        raise ValueError(
            f"gradient must be a gradient model or one of {sorted(GRADIENT_MODELS)}; got "
            f"{gradient!r}"
        )
    return gradient


def _check_parts(impact, gradient: AbstractGradient, num_classes: int, dim) -> int:
    """Check that impact and gradient model act on K classes in R^p; return p (default:
    the head's width, else K)."""
    if dim is None:
        dim = num_classes if gradient.head_matrix is None else int(gradient.head_matrix.shape[1])
    dim = check_positive_int("dim", dim)
    gradient.check(num_classes, dim)
    if not isinstance(impact, AbstractImpact):
        raise ValueError(
            f"impact must be an impact (e.g. lesde.LocallyElastic(alpha, beta) or "
            f"lesde.General(E)), got {impact!r}"
        )
    impact.check(num_classes)
    return dim


def _rms(x: Array) -> Array:
    """sqrt(mean_i |x_i|^2) over the rows x_i of a (rows, p) array, scaled by max|x| so
    that the squares cannot overflow."""
    big = jnp.max(jnp.abs(x))
    safe = jnp.where(big > 0, big, 1.0)
    return big * jnp.sqrt(jnp.mean(jnp.sum((x / safe) ** 2, axis=-1)))


def _first_positive(*scales: Array) -> Array:
    """The first of the scales that is > 0 (the last one if none is)."""
    out = scales[-1]
    for s in reversed(scales[:-1]):
        out = jnp.where(s > 0, s, out)
    return out


def _check_init_values(model) -> None:
    """m0 finite and s0 >= 0: at construction, and again after either is replaced."""
    check_finite("init_mean", model.init_mean)
    check_nonnegative("init_std", model.init_std)


def _init_params(init_mean, init_std, dim):
    mean = as_float_array("init_mean", init_mean)
    std = as_float_array("init_std", init_std)
    if mean.ndim not in (0, 1) or (mean.ndim == 1 and mean.shape[0] != dim):
        raise ValueError(
            f"init_mean must be a scalar or a vector of length dim = {dim}, got shape "
            f"{tuple(mean.shape)}"
        )
    if std.ndim != 0:
        raise ValueError(f"init_std must be a scalar, got shape {tuple(std.shape)}")
    return mean, std


class LESDE(AbstractDynamics):
    r"""The locally elastic SDE: one SDE per training sample i = 1..N,

        dX_i = -(1/K) sum_{k'} E_{y_i k'}(t) Gbar_{k'}(t) dt + sigma_ind(t) dW_i
               + sigma_sh(t) dW_{y_i},
        Gbar_{k'} = (1/n_{k'}) sum_{j: y_j = k'} G(X_j, k'),

    with X_i in R^p, K classes, impact matrix E(t) (K x K), loss-gradient model G and
    Ito additive noise. Each SGD step draws a sample uniformly, from class k' with
    chance 1/K. The drift is the same for all samples of a class, so one evaluation
    costs O(N p + K^2 p) (class sums; no N x N matrix is formed).

    Initial state X_i(0) ~ N(m0, s0^2 I) (m0 = `init_mean`, s0 = `init_std`), unless
    `lesde.simulate` is given one.

    **Arguments:**
    - `impact`: an impact (`LocallyElastic(alpha, beta)` or `General(E)`).
    - `gradient`: a gradient model or its name ('identity', 'projected', 'linear-ce',
      'ce').
    - `classes`: the sample labels (`Classes(labels, K)` or `Classes.balanced(K, n)`).
    - `noise`: a `Noise`; default none.
    - `dim`: p; default: the head's width if the gradient model has a head, else K.
    - `init_mean`, `init_std`: m0 (scalar or length p) and s0 >= 0; defaults 0, 0.05.
    """

    impact: AbstractImpact
    gradient: AbstractGradient
    classes: Classes
    noise: Noise
    init_mean: Float[Array, "*p"]
    init_std: Float[Array, ""]
    dim: int = eqx.field(static=True)

    def __init__(
        self,
        impact: AbstractImpact,
        gradient: Any,
        classes: Classes,
        noise: Noise | None = None,
        dim: int | None = None,
        init_mean: Any = 0.0,
        init_std: Any = 0.05,
    ):
        if not isinstance(classes, Classes):
            raise ValueError(
                f"classes must be lesde.Classes(labels, num_classes), got {type(classes).__name__}"
            )
        gradient = _as_gradient(gradient)
        dim = _check_parts(impact, gradient, classes.num_classes, dim)
        if noise is None:
            noise = Noise()
        if not isinstance(noise, Noise):
            raise ValueError(f"noise must be lesde.Noise(...), got {type(noise).__name__}")
        self.impact = impact
        self.gradient = gradient
        self.classes = classes
        self.noise = noise
        self.dim = dim
        self.init_mean, self.init_std = _init_params(init_mean, init_std, dim)

    def __check_init__(self):
        _check_init_values(self)

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    @property
    def state_shape(self):
        return (self.classes.num_samples, self.dim)

    def class_drift(self, t, x: Float[Array, "N p"]) -> Float[Array, "K p"]:
        """The common drift of each class, -(1/K) E(t) Gbar(t)."""
        return self.impact_drift(t, self.gradient.class_mean(x, self.classes))

    def impact_drift(self, t, gbar: Float[Array, "K p"]) -> Float[Array, "K p"]:
        """-(1/K) E(t) Gbar for given class-mean gradients Gbar."""
        return -self.impact.apply(t, gbar) / self.num_classes

    def drift(self, t, x):
        return self.classes.gather(self.class_drift(t, x))

    @property
    def sample_classes(self) -> Classes:
        """The labels of the state's rows, one row per sample."""
        return self.classes

    def class_major_drift(self, t, z: Float[Array, "K p n"]) -> Float[Array, "K p n"]:
        """The drift computed in the class-major layout: Gbar from z directly (softmax
        along the feature axis, means along the sample axis) and the class drift
        broadcast over the sample axis, so the state is never transposed to (N, p)."""
        c = self.impact_drift(t, self.gradient.class_mean_class_major(z))
        return jnp.broadcast_to(c[:, :, None], z.shape)

    def initial_state(self, key):
        z = jr.normal(key, self.state_shape)
        return self.init_mean + self.init_std * z

    def brownian_shape(self):
        if self.noise.is_zero:
            return None
        return self.noise.brownian_shape(self.classes, self.dim)

    def noise_term(self, path):
        if self.noise.is_zero:
            return None
        return NoiseTerm(self.noise, self.classes, path)

    def check_on_grid(self, ts):
        self.noise.check_on_grid(ts)

    def resolution_scale(self, x: Float[Array, "N p"]) -> Float[Array, ""]:
        r"""The within-class spread s_W = sqrt((1/N) sum_i |X_i - Xbar_{y_i}|^2), the
        finest structure the LE-SDE's measurements read (NC1, Tr Sigma_W, margins).

        The drift is the same for every sample of a class, so the within-class
        deviations move only with the noise (~ sigma sqrt(t)) while the class means
        may grow exponentially: with the identity model the common mode grows as
        exp((alpha + (K-1) beta) t / K). Once eps max|X| is no longer far below s_W,
        the deviations are rounding noise (see `AbstractDynamics.resolution_scale`).
        Without any within-class spread (no noise and no initial spread, or one
        sample per class) the scale is the spread of the class means about their
        mean, and without that too, max|X|."""
        c = self.classes
        means = c.mean(x)
        within = _rms(x - c.gather(means))
        between = _rms(means - jnp.mean(means, axis=0))
        return _first_positive(within, between, jnp.max(jnp.abs(x)))

    def logits(self, x: Float[Array, "N p"]) -> Float[Array, "N K"]:
        """z_i = W X_i through the gradient model's head (W = I by default)."""
        return x @ self.gradient.head(self.num_classes, x.dtype).T

    def class_mean_ode(self) -> "LEODE":
        """The LE-ODE of this model's class means (same impact, gradient and head)."""
        return LEODE(
            self.impact,
            self.gradient,
            self.num_classes,
            dim=self.dim,
            init_mean=self.init_mean,
            init_std=self.init_std,
        )


class LEODE(AbstractDynamics):
    r"""The LE-ODE of class means (no noise):

        dXbar_k/dt = -(1/K) sum_{k'} E_{k k'}(t) G(Xbar_{k'}, k'),   k = 0..K-1.

    For the linear gradient models (identity, projected, linear-ce) the class means of
    the LE-SDE follow it exactly in expectation (and exactly without noise); for the
    softmax-CE model the class mean of G is not G of the class mean, so it is refused.

    Initial state Xbar_k(0) ~ N(m0, s0^2 I) unless given.

    **Arguments:** `impact`, `gradient` (linear), `num_classes` K, `dim` p (default as for
    `LESDE`), `init_mean`, `init_std`.
    """

    impact: AbstractImpact
    gradient: AbstractGradient
    init_mean: Float[Array, "*p"]
    init_std: Float[Array, ""]
    num_classes: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(
        self,
        impact: AbstractImpact,
        gradient: Any,
        num_classes: int,
        dim: int | None = None,
        init_mean: Any = 0.0,
        init_std: Any = 0.05,
    ):
        K = check_positive_int("num_classes", num_classes)
        gradient = _as_gradient(gradient)
        if not gradient.is_linear:
            raise ValueError(
                f"the LE-ODE needs a linear gradient model ('identity', 'projected', "
                f"'linear-ce'), got gradient = {gradient.name!r}: the class mean of its G is "
                f"not G of the class mean; simulate the LESDE instead"
            )
        dim = _check_parts(impact, gradient, K, dim)
        self.impact = impact
        self.gradient = gradient
        self.num_classes = K
        self.dim = dim
        self.init_mean, self.init_std = _init_params(init_mean, init_std, dim)

    def __check_init__(self):
        _check_init_values(self)

    @property
    def state_shape(self):
        return (self.num_classes, self.dim)

    def drift(self, t, x):
        g = self.gradient(x, jnp.arange(self.num_classes), self.num_classes)
        return -self.impact.apply(t, g) / self.num_classes

    def trial_minor_drift(self, t, z: Float[Array, "K p B"]) -> Float[Array, "K p B"]:
        """The drift of B LE-ODEs at once, stored with the trials on the minor axis
        (z[k, c, b] = Xbar_{b, k c}): the gradient model's `trial_minor` and E(t) acting
        on the class axis, so every vector operation runs along the B trials."""
        return -self.impact.apply(t, self.gradient.trial_minor(z)) / self.num_classes

    def default_solver(self) -> UnrolledTsit5:
        """`UnrolledTsit5` ('tsit5'): the LE-ODE has no noise and a smooth drift, and on
        its small state the unrolled stages make reverse-mode gradients cheaper."""
        return UnrolledTsit5()

    def initial_state(self, key):
        return self.init_mean + self.init_std * jr.normal(key, self.state_shape)

    def resolution_scale(self, x: Float[Array, "K p"]) -> Float[Array, ""]:
        r"""The spread of the class means about their mean,
        sqrt((1/K) sum_k |Xbar_k - mu|^2) with mu = (1/K) sum_k Xbar_k: the part of the
        state that separates the classes, against the common mode mu (which grows as
        exp((alpha + (K-1) beta) t / K) under the identity model); max|X| if it is 0."""
        return _first_positive(_rms(x - jnp.mean(x, axis=0)), jnp.max(jnp.abs(x)))

    def brownian_shape(self):
        return None

    def noise_term(self, path):
        return None

    def check_on_grid(self, ts):
        pass
