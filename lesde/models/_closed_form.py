"""Exact solutions of the LE-ODE for the linear gradient models.

With a locally elastic impact E(t) = (alpha - beta) I + beta 1 1^T, write
A(t) = int_0^t alpha and B(t) = int_0^t beta.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._gradient import Identity, LinearCE, Projected, simplex_directions
from ._impact import General, LocallyElastic
from ._le_sde import LEODE


def identity_rates(alpha, beta, num_classes: int):
    """Eigenvalues of E/K for the identity model (dXbar/dt = E Xbar / K):
    (alpha + (K-1) beta)/K on the all-ones direction, (alpha - beta)/K (multiplicity K-1).
    Returns (rate on 1, rate on sum-zero directions)."""
    K = num_classes
    return (alpha + (K - 1) * beta) / K, (alpha - beta) / K


def projected_rates(alpha, beta, num_classes: int):
    """Rates of y_k = <Xbar_k, d_k>/|d_k|^2 for the projected model:
    dy/dt = (1/K) [(alpha + beta/(K-1)) I - (beta/(K-1)) 1 1^T] y.
    Returns (rate on y proportional to 1, rate on sum(y) = 0) =
    ((alpha - beta)/K, (alpha + beta/(K-1))/K)."""
    K = num_classes
    return (alpha - beta) / K, (alpha + beta / (K - 1)) / K


def projected_euler_factors(alpha, beta, num_classes: int):
    """One explicit Euler step of size 1 on the projected model multiplies the symmetric
    mode (y proportional to 1) by exactly 1 + (alpha - beta)/K and the sum-zero modes
    by 1 + (alpha + beta/(K-1))/K."""
    sym, anti = projected_rates(alpha, beta, num_classes)
    return 1 + sym, 1 + anti


def projected_coordinates(xbar: Float[Array, "*t K K"]) -> Float[Array, "*t K"]:
    """y_k = <Xbar_k, d_k> / |d_k|^2 = (Xbar_kk - mean(Xbar_k)) K/(K-1)."""
    K = xbar.shape[-1]
    d = simplex_directions(K, xbar.dtype)
    return jnp.sum(xbar * d, axis=-1) * (K / (K - 1))


def _integrals(model: LEODE, t):
    if not isinstance(model.impact, LocallyElastic):
        raise ValueError(
            f"this closed form needs a LocallyElastic impact, got "
            f"{type(model.impact).__name__}"
        )
    return model.impact.alpha.integral(t), model.impact.beta.integral(t)


def closed_form(model: LEODE, xbar0: Float[Array, "K p"], t) -> Float[Array, "..."]:
    r"""The exact LE-ODE solution at time t (a scalar) from Xbar(0) = `xbar0`.

    - identity model (locally elastic E), with mu = (1/K) sum_k Xbar_k:
        mu(t) = mu(0) exp((A + (K-1) B)/K),
        Xbar_k(t) - mu(t) = (Xbar_k(0) - mu(0)) exp((A - B)/K).
      Returns Xbar(t), shape (K, p).
    - projected model (locally elastic E): y(t) = ybar(0) exp((A - B)/K) 1
        + (y(0) - ybar(0) 1) exp((A + B/(K-1))/K), ybar = mean_k y_k.
      Returns y(t) = `projected_coordinates(Xbar(t))`, shape (K,): the other components
      of Xbar are not in closed form for time-varying impacts (those along 1 never move).
    - linear-ce model: Xbar_k(t) = Xbar_k(0) + (1/K) sum_k' [int_0^t E]_{k k'} W^T d_k',
      i.e. Xbar_k(0) + ((A - B)/K) W^T d_k for a locally elastic E. Returns Xbar(t).
    """
    K = model.num_classes
    g = model.gradient
    if isinstance(g, Identity):
        A, B = _integrals(model, t)
        mu0 = jnp.mean(xbar0, axis=0, keepdims=True)
        return mu0 * jnp.exp((A + (K - 1) * B) / K) + (xbar0 - mu0) * jnp.exp((A - B) / K)
    if isinstance(g, Projected):
        A, B = _integrals(model, t)
        y0 = projected_coordinates(xbar0)
        ybar = jnp.mean(y0)
        return ybar * jnp.exp((A - B) / K) + (y0 - ybar) * jnp.exp((A + B / (K - 1)) / K)
    if isinstance(g, LinearCE):
        pull = simplex_directions(K, xbar0.dtype) @ g.head(K, xbar0.dtype)  # rows W^T d_k
        if isinstance(model.impact, General):
            return xbar0 + model.impact.schedule.integral(t) @ pull / K
        A, B = _integrals(model, t)
        return xbar0 + ((A - B) / K) * pull
    raise ValueError(f"no closed form for the {g.name!r} gradient model")
