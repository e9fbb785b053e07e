"""What a fit is worth: the parameters with their uncertainty (the curvature of the
loss, or a bootstrap over trials), goodness of fit, and the prediction on the held-out
later window."""

import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

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


def parameter_covariance(result: FitResult, loss: AbstractLoss) -> np.ndarray:
    r"""Covariance of the free parameters (in data units, in the order of
    `parameter_names`) from the curvature of the loss at the fit:

    - least squares (Gauss-Newton): Cov = s^2 (J^T J)^+, J the Jacobian of the
      weighted residuals, s^2 = sum r^2 / (n - q) (n data scalars, q parameters);
    - likelihood: Cov = H^+, H the Hessian of the total negative log-likelihood.

    Computed in the optimiser's time unit and mapped to data units by the (linear)
    change of unit. A pseudo-inverse is used: a direction the data do not determine
    shows as a zero-curvature direction (see `fit_report`'s `rank`).
    """
    theta, to_params, to_flat = _flat(result)
    q = theta.shape[0]
    if isinstance(loss, AbstractLeastSquares):
        direct = diffrax.DirectAdjoint()  # forward mode through the solve
        res = lambda th: loss.residuals(to_params(th), adjoint=direct)  # noqa: E731
        jac = np.asarray(jax.jit(jax.jacfwd(res))(theta), dtype=np.float64)
        r = np.asarray(res(theta), dtype=np.float64)
        dof = loss.num_fit - q
        if dof <= 0:
            raise ValueError(f"{q} free parameters but only {loss.num_fit} data scalars: no uncertainty")
        s2 = float((r**2).sum()) / dof
        cov_s = s2 * np.linalg.pinv(jac.T @ jac, rcond=1e-10, hermitian=True)
    else:
        nll = lambda th: loss.total_nll(to_params(th))  # noqa: E731
        hess = np.asarray(jax.jit(jax.hessian(nll))(theta), dtype=np.float64)
        cov_s = np.linalg.pinv(0.5 * (hess + hess.T), rcond=1e-10, hermitian=True)
    m = np.asarray(jax.jacfwd(to_flat)(theta), dtype=np.float64)
    return m @ cov_s @ m.T


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
    """
    num_trials = check_positive_int("num_trials", num_trials)
    samples = check_positive_int("samples", samples)
    rng = np.random.default_rng(seed)
    out = []
    it = range(samples)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="bootstrap", unit="fit")
    for _ in it:
        idx = rng.integers(0, num_trials, num_trials)
        r = fit(result.params, make_loss(idx), free=result.free, steps=steps,
                time_scale=result.time_scale, progress=False, **fit_options)
        free, _ = eqx.partition(r.params, result.free)
        out.append(np.asarray(ravel_pytree(free)[0]))
    return np.stack(out)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def fit_report(
    result: FitResult,
    loss: AbstractLoss,
    *,
    bootstrap_samples: np.ndarray | None = None,
) -> dict:
    """A JSON-ready account of a fit: every free parameter with its standard error
    (from `parameter_covariance`, or the standard deviation of `bootstrap_samples`
    when given), the loss, how the optimisation stopped, and `loss.goodness`: on the fit
    window and, as a prediction, on the held-out window."""
    free, _ = eqx.partition(result.params, result.free)
    values = np.asarray(ravel_pytree(free)[0], dtype=np.float64)
    names = parameter_names(result.params, result.free)
    if bootstrap_samples is not None:
        b = np.asarray(bootstrap_samples, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != values.shape[0]:
            raise ValueError(
                f"bootstrap_samples must have shape (samples, {values.shape[0]}), got {b.shape}"
            )
        stderr = b.std(axis=0, ddof=1)
        method = f"bootstrap over trials ({b.shape[0]} resamples)"
        rank = None
    else:
        cov = parameter_covariance(result, loss)
        stderr = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        method = "curvature of the loss" + (
            " (Gauss-Newton)" if isinstance(loss, AbstractLeastSquares) else " (inverse Hessian)"
        )
        rank = int(np.linalg.matrix_rank(cov, hermitian=True, rtol=1e-8)) if cov.size else 0
    report = {
        "loss": type(loss).__name__,
        "best_loss": result.best_loss,
        "best_step": result.best_step,
        "steps_run": int(np.asarray(result.history).shape[0]),
        "stopped": result.stopped,
        "time_scale": result.time_scale,
        "uncertainty": method,
        "parameters": {
            n: {"value": float(v), "stderr": float(e)} for n, v, e in zip(names, values, stderr)
        },
        "goodness": loss.goodness(result.params),
    }
    if rank is not None:
        report["covariance_rank"] = {"rank": rank, "parameters": len(names)}
    return _jsonable(report)


def impact_matrices(params, ts: Any) -> np.ndarray:
    """The fitted impact matrix E(t) at each time in `ts`, shape (len(ts), K, K)."""
    model = params.model
    ts = jnp.asarray(ts, dtype=float)
    return np.asarray(jax.vmap(lambda t: model.impact.matrix(t, model.num_classes))(ts))
