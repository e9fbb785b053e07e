"""The tangent-kernel impact of a training log as a schedule of the LE-SDE: the fixed
E_NTK(t) (or its growth) that a fit can scale (`lesde.Scaled`) instead of fitting a
free E(t)."""

import numpy as np

from ..models._schedule import PiecewiseLinear
from ._data import FitDataError

KERNEL_FORMS = ("matrix", "growth", "alpha_beta")


def kernel_impact_schedule(log, form: str = "matrix", *, trials=None):
    r"""The tangent-kernel impact measured during training, linear in time between the
    measurements: a `PiecewiseLinear` through the log's `impact_step`s (SGD steps;
    constant beyond the first and last), each knot the mean over trials of the log's
    `impact` (`lesde.nets.train_sgd` with `impact_steps`: the learning rate times the
    class-averaged empirical tangent kernel, an impact per SGD step, in the units of the
    LE-SDE's E(t) with time in SGD steps).

    - `form` 'matrix': the K x K matrix E_NTK(t).
    - 'growth': the scalar g(t) = tr E_NTK(t) / tr E_NTK(t_0), t_0 the first
      measurement (g(t_0) = 1): the kernel's growth, for a free matrix with the
      kernel's time course, `lesde.Scaled(kernel_impact_schedule(log, 'growth'), E0)`.
    - 'alpha_beta': a pair of scalar schedules (alpha(t), beta(t)), the mean diagonal
      and the mean off-diagonal entry of E_NTK(t).

    `trials`: the trial positions to average over (default all). Trials whose
    measurement is not finite at a step are left out of that step's mean.

    `lesde.Scaled(kernel_impact_schedule(log), a)` in `lesde.General` is a * E_NTK(t),
    with only `a` free in a fit (`free_parameters`).

    Raises a `FitDataError` for a log without tangent-kernel measurements (trained
    without `impact_steps` / `impact_checkpoints`), with no finite measurement at some
    step, or (form 'growth') a first measurement of trace <= 0; a ValueError for an
    unknown form.
    """
    if form not in KERNEL_FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of {list(KERNEL_FORMS)}")
    if "impact" not in getattr(log, "data_vars", {}) or "impact_step" not in log.coords:
        raise FitDataError(
            "the log has no tangent-kernel impact (variable 'impact' over 'impact_step'): "
            "train with impact_steps (lesde.nets.train_sgd) or train.impact_checkpoints > 0 "
            "(lesde train) to measure it"
        )
    impact = log["impact"]
    if trials is not None:
        impact = impact.isel(trial=np.asarray(trials))
    values = np.asarray(impact.transpose("trial", "impact_step", ...).values, dtype=np.float64)
    steps = np.asarray(log["impact_step"].values, dtype=np.float64)
    finite = np.isfinite(values).all(axis=(-2, -1))  # (trial, step)
    missing = np.flatnonzero(~finite.any(axis=0))
    if values.shape[0] == 0 or missing.size:
        at = steps[missing[0]] if missing.size else "any step"
        raise FitDataError(f"the log's tangent-kernel impact has no finite measurement at step {at}")
    w = finite[..., None, None]
    mean = np.where(w, values, 0.0).sum(0) / w.sum(0)  # (step, K, K)
    if form == "matrix":
        return PiecewiseLinear(steps, mean)
    K = mean.shape[-1]
    trace = np.trace(mean, axis1=-2, axis2=-1)
    if form == "growth":
        if not trace[0] > 0:
            raise FitDataError(
                f"the tangent-kernel impact's trace at the first measurement (step "
                f"{steps[0]:g}) is {trace[0]:g}; its growth needs a positive trace"
            )
        return PiecewiseLinear(steps, trace / trace[0])
    off = ~np.eye(K, dtype=bool)
    return PiecewiseLinear(steps, trace / K), PiecewiseLinear(steps, mean[:, off].mean(-1))
