"""What a fit is worth: the parameters with their uncertainty (the curvature of the
loss, or a bootstrap over trials) and whether the data identify them, goodness of fit,
and the prediction on the held-out later window."""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

from .._checks import check_positive_int
from ._fit import FitResult, fit
from ._losses import AbstractLeastSquares, AbstractLoss
from ._params import from_optimizer, parameter_names, rescale_time


def _flat(result: FitResult):
    """(theta_s, to_params, to_flat_original): the free parameters in the optimiser's
    time unit as a flat vector, the map back to `Parameters` in data units, and the map
    to the flat free parameters in data units."""
    s = result.time_scale
    scaled = rescale_time(result.params, s)
    diff, static = eqx.partition(scaled, result.free)
    theta, unravel = ravel_pytree(diff)

    def to_params(th):
        return from_optimizer(unravel(th), static, s)

    def to_flat(th):
        free, _ = eqx.partition(to_params(th), result.free)
        return ravel_pytree(free)[0]

    return theta, to_params, to_flat


class Curvature(NamedTuple):
    """What the curvature of the loss at a fit says about the free parameters (see
    `curvature`)."""

    covariance: np.ndarray
    """(q, q) in data units, in the order of `parameter_names`; the rows and columns of
    the parameters that are not identified are NaN (None when not computed)."""
    identified: np.ndarray
    """(q,) bool: False for a parameter with a component in the null space."""
    rank: int
    """The number of directions the curvature determines (<= q)."""
    rtol: float
    """The relative tolerance of the null space."""


def _null_space(a: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identified (q,) bool, pseudo-inverse (q, q), rank) of a symmetric curvature
    matrix `a` (J^T J or a Hessian), by the rule of `curvature`."""
    q = a.shape[0]
    d = np.abs(np.diag(a))
    live = np.isfinite(d) & (d > 0)
    identified = np.zeros(q, bool)
    inverse = np.zeros((q, q))
    if not live.any():
        return identified, inverse, 0
    s = 1.0 / np.sqrt(d[live])
    c = a[np.ix_(live, live)] * s[:, None] * s[None, :]
    lam, vec = np.linalg.eigh(0.5 * (c + c.T))
    keep = lam > rtol * lam.max() if lam.max() > 0 else np.zeros(lam.shape, bool)
    null = (vec[:, ~keep] ** 2).sum(axis=1)
    identified[np.flatnonzero(live)] = null <= rtol
    inv = (vec[:, keep] / lam[keep]) @ vec[:, keep].T
    inverse[np.ix_(live, live)] = inv * s[:, None] * s[None, :]
    return identified, inverse, int(keep.sum())


def _value_and_jacfwd(f: Callable, x: Array) -> tuple[Array, Array]:
    """f(x) and its Jacobian by forward mode, in one pass (jax.jacfwd without a second
    evaluation of f for the value)."""
    basis = jnp.eye(x.shape[0], dtype=x.dtype)
    value, columns = jax.vmap(lambda v: jax.jvp(f, (x,), (v,)), out_axes=(None, -1))(basis)
    return value, columns


def curvature(result: FitResult, loss: AbstractLoss, *, scale: bool = True) -> Curvature:
    r"""The covariance of the free parameters from the curvature of the loss at the fit,
    and which of them the data determine.

    - least squares (Gauss-Newton): Cov = s^2 (J^T J)^+, J the Jacobian of the
      weighted residuals, s^2 = sum r^2 / (n - q) (n data scalars, q parameters);
    - likelihood: Cov = H^+, H the Hessian of the total negative log-likelihood.

    The curvature A (J^T J or H) is computed in the optimiser's time unit and
    equilibrated to unit diagonal, C = D^(-1/2) A D^(-1/2) with D = |diag A|, so the
    rule below does not depend on the parameters' units. A direction is in the null
    space when its eigenvalue of C is at most `rtol` times the largest (a negative
    curvature counts as null: the fit is no minimum there); a parameter is **not
    identified** when its diagonal of A is 0 (it does not move the loss) or when more
    than a fraction `rtol` of its unit vector (in the equilibrated coordinates) lies in
    the null space, e.g. two parameters that enter only through their sum, or a knot
    value where no data time depends on it. `rtol` is the square root of the machine
    epsilon of the Jacobian's floating type (3.5e-4 in float32, the default precision,
    1.5e-8 in float64): an exact null direction shows in a float32 Jacobian as an
    eigenvalue of C of about its rounding, 1e-6 to 1e-5, well below it, while two
    parameters are flagged only when their correlation exceeds 1 - 2 rtol / (1 + rtol).

    The pseudo-inverse keeps the identified directions. The covariance is mapped to
    data units by the (linear) change of unit; its rows and columns of parameters that
    are not identified are NaN, so their standard errors are NaN, never a number.
    `scale=False` skips the least-squares residual variance (and its check n > q):
    only `identified` and `rank` are then meaningful, and `covariance` is None.
    """
    theta, to_params, to_flat = _flat(result)
    q = theta.shape[0]
    s2 = 1.0
    if isinstance(loss, AbstractLeastSquares):
        direct = diffrax.DirectAdjoint()  # forward mode through the solve
        res = lambda th: loss.residuals(to_params(th), adjoint=direct)  # noqa: E731
        r_raw, jac_raw = jax.jit(_value_and_jacfwd, static_argnums=0)(res, theta)
        eps = float(jnp.finfo(jac_raw.dtype).eps)
        jac = np.asarray(jac_raw, dtype=np.float64)
        a = jac.T @ jac
        if scale:
            r = np.asarray(r_raw, dtype=np.float64)
            dof = loss.num_fit - q
            if dof <= 0:
                raise ValueError(
                    f"{q} free parameters but only {loss.num_fit} data scalars: no uncertainty"
                )
            s2 = float((r**2).sum()) / dof
    else:
        nll = lambda th: loss.total_nll(to_params(th))  # noqa: E731
        hess_raw = jax.jit(jax.hessian(nll))(theta)
        eps = float(jnp.finfo(hess_raw.dtype).eps)
        a = np.asarray(hess_raw, dtype=np.float64)
        a = 0.5 * (a + a.T)
    rtol = math.sqrt(eps)
    ident_s, inverse, rank = _null_space(a, rtol)
    m = np.asarray(jax.jacfwd(to_flat)(theta), dtype=np.float64)
    # a data-unit parameter is identified when it depends on the scaled parameters and
    # every scaled parameter it depends on is
    depends = np.abs(m) > 0
    identified = depends.any(axis=1) & ~(depends & ~ident_s[None, :]).any(axis=1)
    cov = None
    if scale:
        cov = m @ (s2 * inverse) @ m.T
        cov[~identified, :] = np.nan
        cov[:, ~identified] = np.nan
    return Curvature(cov, identified, rank, rtol)


def parameter_covariance(result: FitResult, loss: AbstractLoss) -> np.ndarray:
    r"""Covariance of the free parameters (in data units, in the order of
    `parameter_names`) from the curvature of the loss at the fit (`curvature`): the
    Gauss-Newton s^2 (J^T J)^+ for least squares, the inverse Hessian for a likelihood.
    The rows and columns of parameters the data do not identify (in the null space of
    the curvature, see `curvature` for the rule) are NaN.
    """
    return curvature(result, loss).covariance


def bootstrap(
    result: FitResult,
    make_loss: Callable[[np.ndarray], AbstractLoss],
    num_trials: int,
    *,
    samples: int = 20,
    steps: int = 300,
    seed: int = 0,
    progress: bool = True,
    **fit_options: Any,
) -> np.ndarray:
    """Refit on `samples` resamples of the trials (drawn with replacement), each started
    from the fit, and return the fitted free parameters, shape (samples, q), in data
    units (their standard deviation is the bootstrap standard error).

    `make_loss(trial_positions)` builds the loss on a resample, e.g.
    `lambda idx: ClassMeanLoss(ClassMeans.from_log(log, window=50, trials=idx))`.
    Ctrl-C raises KeyboardInterrupt (a partial bootstrap is no standard error).
    """
    num_trials = check_positive_int("num_trials", num_trials)
    samples = check_positive_int("samples", samples)
    rng = np.random.default_rng(seed)
    out = []
    it = range(samples)
    if progress:
        from .._progress import progress_bar

        it = progress_bar(it, desc="bootstrap", unit="fit")
    for _ in it:
        idx = rng.integers(0, num_trials, num_trials)
        r = fit(result.params, make_loss(idx), free=result.free, steps=steps,
                time_scale=result.time_scale, progress=False, **fit_options)
        if r.stopped == "interrupted":  # Ctrl-C stops the bootstrap, not one refit
            raise KeyboardInterrupt
        free, _ = eqx.partition(r.params, result.free)
        out.append(np.asarray(ravel_pytree(free)[0]))
    return np.stack(out)


def fit_report(
    result: FitResult,
    loss: AbstractLoss,
    *,
    bootstrap_samples: np.ndarray | None = None,
    uncertainty: bool = True,
) -> dict:
    """An account of a fit: every free parameter with its value, its standard error
    and whether the data identify it; the loss, how the optimisation stopped, and
    `loss.goodness`: on the fit window and, as a prediction, on the held-out window
    (NaN values and 0 points where there is no held-out window).

    Standard errors come from `curvature` (the loss's curvature at the fit), or are the
    standard deviations of `bootstrap_samples` when given. Either way the curvature's
    null space decides which parameters are identified (`curvature`, rule and
    tolerance there): a parameter that is not has stderr NaN, never a number (a
    bootstrap would show 0 for a parameter that nothing moves), and
    `covariance_rank` gives the rank, the number of parameters, the names of those not
    identified and the tolerance. `uncertainty=False` (for a fit that did not end
    normally, e.g. interrupted: its parameters are no minimum of the loss) leaves every
    stderr NaN and computes no curvature.

    Non-finite numbers are NaN here; `lesde._json.dump_json` writes them as null.
    """
    free, _ = eqx.partition(result.params, result.free)
    values = np.asarray(ravel_pytree(free)[0], dtype=np.float64)
    names = parameter_names(result.params, result.free)
    q = values.shape[0]
    rank = None
    identified = np.ones(q, bool)
    if not uncertainty:
        stderr = np.full(q, np.nan)
        method = f"not computed (the fit stopped: {result.stopped})"
    elif bootstrap_samples is not None:
        b = np.asarray(bootstrap_samples, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != q:
            raise ValueError(
                f"bootstrap_samples must have shape (samples, {q}), got {b.shape}"
            )
        cur = curvature(result, loss, scale=False)
        identified, rank, rtol = cur.identified, cur.rank, cur.rtol
        stderr = np.where(identified, b.std(axis=0, ddof=1), np.nan)
        method = f"bootstrap over trials ({b.shape[0]} resamples)"
    else:
        cur = curvature(result, loss)
        identified, rank, rtol = cur.identified, cur.rank, cur.rtol
        with np.errstate(invalid="ignore"):
            stderr = np.sqrt(np.clip(np.diag(cur.covariance), 0.0, None))
        method = "curvature of the loss" + (
            " (Gauss-Newton)" if isinstance(loss, AbstractLeastSquares) else " (inverse Hessian)"
        )
    report = {
        "loss": type(loss).__name__,
        "best_loss": result.best_loss,
        "best_step": result.best_step,
        "steps_run": int(np.asarray(result.history).shape[0]),
        "stopped": result.stopped,
        "time_scale": result.time_scale,
        "uncertainty": method,
        "parameters": {
            n: {"value": float(v), "stderr": float(e), "identified": bool(i)}
            for n, v, e, i in zip(names, values, stderr, identified)
        },
        "goodness": loss.goodness(result.params),
    }
    if rank is not None:
        report["covariance_rank"] = {
            "rank": rank,
            "parameters": q,
            "not_identified": [n for n, i in zip(names, identified) if not i],
            "rtol": rtol,
        }
    return report


def impact_matrices(params, ts: Any) -> np.ndarray:
    """The fitted impact matrix E(t) at each time in `ts`, shape (len(ts), K, K)."""
    model = params.model
    ts = jnp.asarray(ts, dtype=float)
    return np.asarray(jax.vmap(lambda t: model.impact.matrix(t, model.num_classes))(ts))
