"""Exact and mean-field results of the spring-block map (Variant A), for tests and for
comparison with simulations. NumPy/SciPy functions of concrete numbers (not traced)."""

from typing import Any

import numpy as np
from scipy import optimize
from scipy.special import ndtr

from .._checks import check_positive_int
from ._spring import CONTROLS


def _number(name: str, x: Any, *, positive: bool = False, nonnegative: bool = False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonnegative and not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def _control(control: str) -> str:
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {list(CONTROLS)}, got {control!r}")
    return control


def spring_equilibrium(
    num_blocks: int,
    *,
    stiffness: float = 1.0,
    mu: float = 0.1,
    load: float = 1.0,
    control: str = "displacement",
) -> np.ndarray:
    r"""Elongations at which the noiseless map (Variant A) from rest x(0) = 0 stops,
    with static friction mu (the blocks only move forward, so mu = mu_fwd):

    - force control, load F: d_l = max(0, F - (L - l + 1) mu) / k, l = 1..L;
    - displacement control, target y: d_j = max(0, c - (L + 1 - j) mu / k), j = 1..L+1
      (spring L+1 is the target spring), with c fixed by sum_j d_j = y;
    - no friction (mu = 0): d_j = y / (L + 1).

    Only the deep springs stretch (a concave load curve). The map reaches these within
    O(eta). Returns the elongations (length L+1 under displacement control, else L).
    """
    L = check_positive_int("num_blocks", num_blocks)
    k = _number("stiffness", stiffness, positive=True)
    mu = _number("mu", mu, nonnegative=True)
    load = _number("load", load)
    if _control(control) == "force":
        depth = L - np.arange(1, L + 1) + 1
        return np.maximum(0.0, load - depth * mu) / k
    if load < 0:
        raise ValueError(f"load (the target y) must be >= 0 for this formula, got {load}")
    offsets = (L + 1 - np.arange(1, L + 2)) * mu / k  # 0 for the target spring
    # m springs stretch (the m with the smallest offsets): m c - sum of their offsets = y
    ordered = np.sort(offsets)
    for m in range(1, L + 2):
        c = (load + ordered[:m].sum()) / m
        if m == L + 1 or c <= ordered[m]:
            break
    return np.maximum(0.0, c - offsets)


def rectified_velocity(force: Any, noise: float, mu_fwd: float, mu_back: float) -> np.ndarray:
    r"""Mean step of a block under a steady force F and shaking s (per unit eta):

        v(F) = E[Phi(F + s xi)] = s g((F - mu_fwd)/s) - s g((-F - mu_back)/s),
        g(z) = E[(z + xi)^+] = z Phi_N(z) + phi(z)

    (phi, Phi_N: the standard normal density and distribution). At F = 0 this is
    h(mu_fwd) - h(mu_back) with h(c) = s phi(c/s) - c Q(c/s) (Q the upper tail): positive
    when mu_back > mu_fwd, the rectified forward push of the shaking. s = 0 gives
    Phi(F) itself. Vectorised over `force`.
    """
    f = np.asarray(force, dtype=float)
    s = _number("noise", noise, nonnegative=True)
    a = _number("mu_fwd", mu_fwd, nonnegative=True)
    b = _number("mu_back", mu_back, nonnegative=True)
    if s == 0:
        return np.where(f > a, f - a, np.where(f < -b, f + b, 0.0))
    return _mean_step(f, s, a, b)


def _mean_step(f, s, a: float, b: float) -> np.ndarray:
    """v(F) of `rectified_velocity` for shaking s > 0 (unchecked; f and s broadcast).
    `scipy.special.ndtr` is Phi_N without `scipy.stats`' per-call overhead, which the
    10^4 steps of `mean_field_gains` would pay each step."""
    def g(z):
        return z * ndtr(z) + np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)

    return s * g((f - a) / s) - s * g((-f - b) / s)


def stationary_gains(
    num_blocks: int,
    *,
    stiffness: float = 1.0,
    noise: float,
    mu_fwd: float,
    mu_back: float | None = None,
    load: float = 1.0,
    control: str = "displacement",
) -> np.ndarray:
    r"""Mean elongations of the shaken map (Variant A, noise s > 0) in its stationary
    state, in the mean-field approximation.

    Every block's mean step vanishes: v(F_l) = 0 (`rectified_velocity`) for the mean
    spring force F_l, so F_l = F* for every block, the root of v. With the springs,
    k (d_{l+1} - d_l) = F*: the elongations change linearly with depth,

        d_j = d_1 + (j - 1) F* / k,

    fixed by sum_{j=1}^{L+1} d_j = y (displacement control) or F - k d_L = F* (force
    control). Symmetric friction gives F* = 0, the uniform d = y / (L + 1) (a linear load
    curve); mu_back > mu_fwd gives F* < 0, d decreasing with depth (a convex load curve).
    The approximation replaces the fluctuating spring force by its mean; the error is
    small when the shaking s is large against the spring-force fluctuations (small eta).

    Returns the elongations (length L+1 under displacement control, else L).
    """
    L = check_positive_int("num_blocks", num_blocks)
    k = _number("stiffness", stiffness, positive=True)
    s = _number("noise", noise, positive=True)
    a = _number("mu_fwd", mu_fwd, nonnegative=True)
    b = a if mu_back is None else _number("mu_back", mu_back, nonnegative=True)
    load = _number("load", load)
    span = a + b + 10 * s
    f_star = optimize.brentq(lambda f: float(rectified_velocity(f, s, a, b)), -span, span, xtol=1e-14)
    if _control(control) == "displacement":
        j = np.arange(L + 1)
        d1 = (load - f_star / k * L * (L + 1) / 2) / (L + 1)
        return d1 + j * f_star / k
    d_last = (load - f_star) / k
    return d_last - (L - np.arange(1, L + 1)) * f_star / k


def mean_field_gains(
    num_blocks: int,
    *,
    stiffness: float = 1.0,
    noise: Any,
    mu_fwd: float,
    mu_back: float | None = None,
    load: float = 1.0,
    eta: float = 0.01,
    steps: int = 10_000,
    control: str = "displacement",
) -> np.ndarray:
    r"""The gains d_1..d_L of the shaken map (Variant A) after `steps` steps from rest, in
    the mean-field approximation: every block moves by its mean step,

        x_l <- x_l + eta v(F_l),   F_l = k (x_{l+1} - 2 x_l + x_{l-1}),

    v the rectified velocity of `rectified_velocity` (the mean of Phi(F + s xi) over the
    shaking), with the boundaries of the map (x_0 = 0; x_{L+1} = y, or the load F on
    block L). Its fixed point is `stationary_gains`; after a finite number of steps the
    shallow blocks of a weakly shaken chain have not yet moved (a concave load curve),
    while a strongly shaken asymmetric chain has relaxed to the convex fixed point:
    where the curvature of these gains changes sign is the mean-field boundary of the
    linear band at that horizon. Vectorised over `noise` (an array of shakings s > 0):
    returns gains of shape noise.shape + (L,).

    Example: `mean_field_gains(7, noise=[0.05, 0.2], mu_fwd=0.1, mu_back=0.15)`.
    """
    L = check_positive_int("num_blocks", num_blocks)
    k = _number("stiffness", stiffness, positive=True)
    s = np.asarray(noise, dtype=float)
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError(f"noise must be finite and > 0, got {s!r}")
    a = _number("mu_fwd", mu_fwd, nonnegative=True)
    b = a if mu_back is None else _number("mu_back", mu_back, nonnegative=True)
    load = _number("load", load)
    eta = _number("eta", eta, positive=True)
    steps = check_positive_int("steps", steps)
    control = _control(control)
    sv = s[..., None]
    x = np.zeros(s.shape + (L,))
    for _ in range(steps):
        tension = k * np.diff(x, axis=-1, prepend=0.0)
        last = k * (load - x[..., -1:]) if control == "displacement" else np.full_like(x[..., -1:], load)
        force = np.concatenate([tension[..., 1:], last], axis=-1) - tension
        x = x + eta * _mean_step(force, sv, a, b)
    return np.diff(x, axis=-1, prepend=0.0)
