"""Closed-form impact estimators: invert class-mean logit trajectories of the LE-SDE.

The data are K class-mean trajectories Xbar(t), shape (T, K, p): Xbar[t, k, j] is
coordinate j of the mean of class k at sample time t (from a training log,
`lesde.fit.class_mean_logits`, p = K logits). For a locally elastic impact
E(t) = (alpha - beta) I + beta 1 1^T, write A(t) = int alpha and B(t) = int beta. The
LE-ODE of the identity and projected gradient models is solved in closed form by
`lesde.closed_form`; inverting that solution gives A and B from the data. Only
increments are identifiable, so the estimators return

    A_hat(t) = A(t) - A(t_0),    B_hat(t) = B(t) - B(t_0),

measured from the FIRST sample time t_0 of the data (A_hat(t_0) = B_hat(t_0) = 0).

- `identity_inversion`, `projected_inversion`: the inversions (exact on trajectories
  of the respective model), returning an `xr.Dataset` with `A_hat`, `B_hat`;
- `savgol_rates`: the impacts alpha_hat = dA_hat/dt, beta_hat = dB_hat/dt by a
  Savitzky-Golay derivative;
- `tail_index`: the LE-SDE authors' power-law index of A_hat;
- `power_law_fit`: a least-squares fit of rate(t) = c (1 + t/t0)^(-r), giving a
  `lesde.PowerLaw` schedule.

These are post-processing tools on concrete arrays (numpy/scipy, float64 throughout;
not jittable). Every check raises a `ValueError` naming the argument and showing the
value, before anything is computed.
"""

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import scipy.optimize
import scipy.signal
import xarray as xr

from .._checks import check_finite, check_increasing, check_positive_int, show
from ..models._schedule import PowerLaw

_DIMS = ("step", "class", "logit")


# ---------------------------------------------------------------------------------
# Checks


def _as_float64(name: str, x: Any) -> np.ndarray:
    """`x` (array-like, jax array or DataArray values) as a float64 numpy array.

    Like `lesde._checks.as_float_array`, but stays in numpy: a float64 input keeps its
    precision whether or not JAX runs in double precision."""
    try:
        a = np.asarray(x)
    except Exception as e:  # pragma: no cover - defensive
        raise ValueError(f"{name} must be numeric, got {show(x)}") from e
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.integer)
        or np.issubdtype(a.dtype, np.floating)
        or np.issubdtype(a.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}: {show(x)}")
    return a.astype(np.float64)


def _check_times(name: str, ts: np.ndarray, length: int, what: str) -> None:
    """`ts` is 1-D of `length` (one time per `what`), finite and strictly increasing."""
    if ts.shape != (length,):
        raise ValueError(
            f"{name} must have shape ({length},) (one time per {what}), got shape {ts.shape}"
        )
    check_increasing(name, ts)


def _trajectories(xbar: Any, ts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked (Xbar, ts) as float64 arrays of shapes (T, K, p) and (T,)."""
    if isinstance(xbar, xr.DataArray):
        if set(xbar.dims) != set(_DIMS) or xbar.ndim != 3:
            raise ValueError(
                f"xbar as a DataArray must have dims {_DIMS} (as returned by "
                f"lesde.fit.class_mean_logits), got dims {xbar.dims}"
            )
        xbar = xbar.transpose(*_DIMS)
        if ts is None:
            if "step" not in xbar.coords:
                raise ValueError(
                    "ts is required: the DataArray xbar has no `step` coordinate, got "
                    "ts = None"
                )
            ts = xbar["step"].values
        xbar = xbar.values
    elif ts is None:
        raise ValueError(
            "ts is required when xbar is an array (only a DataArray carries its `step` "
            "coordinate), got ts = None"
        )
    x = _as_float64("xbar", xbar)
    if x.ndim != 3:
        raise ValueError(
            f"xbar must have shape (T, K, p) (time, class, coordinate), got shape {x.shape}"
        )
    T, K, p = x.shape
    if T < 2:
        raise ValueError(f"xbar must have at least 2 times T, got shape {x.shape} (T = {T})")
    if K < 2:
        raise ValueError(f"xbar must have at least 2 classes K, got shape {x.shape} (K = {K})")
    if p < 1:
        raise ValueError(f"xbar must have at least 1 coordinate p, got shape {x.shape}")
    t = _as_float64("ts", ts)
    _check_times("ts", t, T, "time of xbar")
    bad = ~np.isfinite(x)
    if bad.any():
        i, k, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"xbar must be finite, got xbar[{i}, {k}, {j}] = {x[i, k, j]} at step index "
            f"{i} (t = {float(t[i])!r}), class {k}, coordinate {j}; class_mean_logits gives NaN "
            f"where no row of a step (or window) has label {k}: pool steps with a larger "
            "window or drop that step"
        )
    return x, t


def _log_ratio(name: str, what: str, values: np.ndarray, labels: tuple[str, ...]):
    """log|v(t) / v(t_0)| for v = `values` of shape (T, ...), or an error naming the
    first zero entry (a zero at t_0 divides by zero; a later zero has no logarithm)."""
    zero = values == 0
    if zero.any():
        idx = tuple(int(v) for v in np.argwhere(zero)[0])
        where = "".join(f", {lab} = {v}" for lab, v in zip(labels, idx[1:]))
        if idx[0] == 0:
            raise ValueError(
                f"xbar gives a zero initial {what} {name} at step index 0{where}: the "
                "inversion divides by it"
            )
        raise ValueError(
            f"xbar gives a zero {what} {name} at step index {idx[0]}{where}: its "
            "logarithm log|0| is undefined"
        )
    logs = np.log(np.abs(values))
    return logs - logs[:1]


def _dataset(a_hat: np.ndarray, b_hat: np.ndarray, ts: np.ndarray, estimator: str):
    return xr.Dataset(
        {
            "A_hat": ("step", a_hat.astype(np.float64)),
            "B_hat": ("step", b_hat.astype(np.float64)),
        },
        coords={"step": ts},
        attrs={"estimator": estimator},
    )


# ---------------------------------------------------------------------------------
# Inversions


def identity_inversion(xbar: Any, ts: Any = None) -> xr.Dataset:
    r"""Invert class-mean trajectories of the identity model for A(t) and B(t).

    The identity model's exact solution (`lesde.closed_form`), with
    mu(t) = (1/K) sum_k Xbar_k(t), is

        mu(t) = mu(t_0) exp((A + (K-1) B)/K),
        Xbar_k(t) - mu(t) = (Xbar_k(t_0) - mu(t_0)) exp((A - B)/K),

    (A, B measured from t_0). With c0 = mu(t_0) and c_k = Xbar_k(t_0) - mu(t_0), the
    LE-SDE authors' estimator averages over all classes k and coordinates j:

        B_hat(t) = mean_{k,j} -log| (c0_j / c_kj) (Xbar_kj(t) - mu_j(t)) / mu_j(t) |,
        A_hat(t) = mean_{k,j} log| mu_j(t) (Xbar_kj(t) - mu_j(t))^(K-1) / (c0_j c_kj^(K-1)) |,

    evaluated as sums of logarithms (no overflow). On the identity model every term
    equals the truth: with a1 = log|mu_j(t)/c0_j| = (A + (K-1) B)/K and
    a2 = log|(Xbar_kj - mu_j)/c_kj| = (A - B)/K, B_hat = a1 - a2 = B and
    A_hat = a1 + (K-1) a2 = A.

    **Arguments:**
    - `xbar`: the class means, a (T, K, p) array (numpy or JAX; float64 is used), or an
      `xr.DataArray` with dims (`step`, `class`, `logit`) as returned by
      `lesde.fit.class_mean_logits`. T >= 2, K >= 2, all finite (NaN, as
      `class_mean_logits` gives for a step without rows of a class, is an error naming
      the step); mu_j(t) and Xbar_kj(t) - mu_j(t) must be nonzero.
    - `ts`: the sample times, shape (T,), strictly increasing; required for an array,
      default the `step` coordinate of a DataArray.

    **Returns:** an `xr.Dataset` with dim `step` (coordinate: `ts` as float64), float64
    variables `A_hat` = A(t) - A(t_0) and `B_hat` = B(t) - B(t_0), and attrs
    {"estimator": "identity"}.
    """
    x, t = _trajectories(xbar, ts)
    K = x.shape[1]
    mu = x.mean(axis=1)  # (T, p)
    s = _log_ratio("mu_j = mean_k Xbar_kj", "class-average", mu, ("j",))  # (T, p)
    u = _log_ratio("Xbar_kj - mu_j", "deviation", x - mu[:, None, :], ("k", "j"))  # (T, K, p)
    s = s[:, None, :]
    b_hat = np.mean(s - u, axis=(1, 2))
    a_hat = np.mean(s + (K - 1) * u, axis=(1, 2))
    return _dataset(a_hat, b_hat, t, "identity")


def projected_inversion(xbar: Any, ts: Any = None) -> xr.Dataset:
    r"""Invert class-mean trajectories of the projected model for A(t) and B(t).

    The projected model moves Xbar_k only along d_k = e_k - 1/K; its coordinates
    y_k = <Xbar_k, d_k>/|d_k|^2 = (Xbar_kk - mean_j Xbar_kj) K/(K-1) (as
    `lesde.projected_coordinates`) solve, with ybar = mean_k y_k,

        ybar(t) = ybar(t_0) exp((A - B)/K),
        y_k(t) - ybar(t) = (y_k(t_0) - ybar(t_0)) exp((A + B/(K-1))/K).

    So s(t) = log|ybar(t)/ybar(t_0)| = (A - B)/K and
    u(t) = mean_k log|(y_k(t) - ybar(t))/(y_k(t_0) - ybar(t_0))| = (A + B/(K-1))/K,
    and u - s = B/(K-1) gives

        B_hat = (K-1) (u - s),    A_hat = K s + B_hat,

    exact on the projected model.

    **Arguments:**
    - `xbar`: the class means, a (T, K, K) array (p = K is required) or an
      `xr.DataArray` with dims (`step`, `class`, `logit`) as returned by
      `lesde.fit.class_mean_logits`; T >= 2, K >= 2, all finite; ybar(t) and
      y_k(t) - ybar(t) must be nonzero.
    - `ts`: the sample times, shape (T,), strictly increasing; required for an array,
      default the `step` coordinate of a DataArray.

    **Returns:** an `xr.Dataset` with dim `step` (coordinate: `ts` as float64), float64
    variables `A_hat` = A(t) - A(t_0) and `B_hat` = B(t) - B(t_0), and attrs
    {"estimator": "projected"}.
    """
    x, t = _trajectories(xbar, ts)
    T, K, p = x.shape
    if p != K:
        raise ValueError(
            f"the projected inversion needs p = K (one logit per class), got xbar of shape "
            f"{x.shape} (K = {K}, p = {p})"
        )
    # `lesde.projected_coordinates` in numpy: through JAX a float64 input would be
    # rounded to float32 unless JAX runs in double precision.
    y = (np.diagonal(x, axis1=1, axis2=2) - x.mean(axis=2)) * (K / (K - 1))  # (T, K)
    ybar = y.mean(axis=1)
    s = _log_ratio("ybar = mean_k y_k", "mean projected coordinate", ybar, ())
    u = _log_ratio("y_k - ybar", "projected deviation", y - ybar[:, None], ("k",))
    u = u.mean(axis=1)
    b_hat = (K - 1) * (u - s)
    a_hat = K * s + b_hat
    return _dataset(a_hat, b_hat, t, "projected")


# ---------------------------------------------------------------------------------
# Rates and power laws


def savgol_rates(estimate: xr.Dataset, window: int, polyorder: int = 2) -> xr.Dataset:
    r"""The impacts alpha_hat(t) = dA_hat/dt and beta_hat(t) = dB_hat/dt.

    Each derivative is the Savitzky-Golay derivative
    `scipy.signal.savgol_filter(F, window, polyorder, deriv=1, delta=dt)`: the slope at
    t of the least-squares polynomial of degree `polyorder` through the `window` points
    around t (at the ends, the polynomial through the first or last `window` points).
    It is exact for a polynomial F of degree <= `polyorder`.

    **Arguments:**
    - `estimate`: a Dataset from `identity_inversion` or `projected_inversion`: 1-D
      finite `A_hat`, `B_hat` along `step`, whose coordinate (the times) must be
      uniformly spaced (to relative tolerance 1e-6 of the spacing).
    - `window`: the number of points per fit; odd, > `polyorder` and <= T.
    - `polyorder`: the degree of the local polynomials, an integer >= 1 (default 2).

    **Returns:** a copy of `estimate` with float64 variables `alpha_hat` and `beta_hat`
    (dim `step`, attrs `window` and `polyorder`) added.
    """
    if not isinstance(estimate, xr.Dataset):
        raise ValueError(
            f"estimate must be an xr.Dataset from identity_inversion or "
            f"projected_inversion, got {type(estimate).__name__}"
        )
    for name in ("A_hat", "B_hat"):
        if name not in estimate.data_vars:
            raise ValueError(
                f"estimate must have a variable {name!r}, got variables "
                f"{list(estimate.data_vars)}"
            )
        if estimate[name].dims != ("step",):
            raise ValueError(
                f"estimate[{name!r}] must have dims ('step',), got {estimate[name].dims}"
            )
    if "step" not in estimate.coords:
        raise ValueError("estimate must have a `step` coordinate (the times), got none")
    ts = _as_float64("estimate.step", estimate["step"].values)
    T = ts.shape[0]
    _check_times("estimate.step", ts, T, "step")
    window = check_positive_int("window", window)
    if isinstance(polyorder, bool) or not isinstance(polyorder, (int, np.integer)) or polyorder < 1:
        raise ValueError(f"polyorder must be an integer >= 1, got {show(polyorder)}")
    polyorder = int(polyorder)
    if window % 2 == 0:
        raise ValueError(f"window must be odd, got window = {window}")
    if window <= polyorder:
        raise ValueError(
            f"window must be > polyorder = {polyorder}, got window = {window}"
        )
    if window > T:
        raise ValueError(f"window must be <= the number of steps T = {T}, got window = {window}")
    values = {}
    for name in ("A_hat", "B_hat"):
        v = _as_float64(f"estimate[{name!r}]", estimate[name].values)
        check_finite(f"estimate[{name!r}]", v)
        values[name] = v
    steps = np.diff(ts)
    off = np.abs(steps - steps[0]) > 1e-6 * steps[0]
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(
            f"estimate.step must be uniformly spaced (relative tolerance 1e-6), got "
            f"spacing {float(steps[i])!r} between step[{i}] = {float(ts[i])!r} and "
            f"step[{i + 1}] = {float(ts[i + 1])!r}, but {float(steps[0])!r} between step[0] "
            "and step[1]"
        )
    dt = (ts[-1] - ts[0]) / (T - 1)
    out = estimate.copy()
    attrs = {"window": window, "polyorder": polyorder}
    for src, dst in (("A_hat", "alpha_hat"), ("B_hat", "beta_hat")):
        rate = scipy.signal.savgol_filter(
            values[src], window, polyorder, deriv=1, delta=dt, mode="interp"
        )
        out[dst] = xr.DataArray(rate.astype(np.float64), dims=("step",), attrs=dict(attrs))
    return out


def _series(name: str, x: Any, ts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked (values, ts) of a 1-D series given as an array or a 1-D DataArray."""
    if isinstance(x, xr.DataArray):
        if x.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got a DataArray with dims {x.dims}")
        if ts is None:
            dim = x.dims[0]
            if dim not in x.coords:
                raise ValueError(
                    f"ts is required: the DataArray {name} has no {dim!r} coordinate, got "
                    "ts = None"
                )
            ts = x[dim].values
        x = x.values
    elif ts is None:
        raise ValueError(
            f"ts is required when {name} is an array (only a DataArray carries its "
            "coordinate), got ts = None"
        )
    a = _as_float64(name, x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    t = _as_float64("ts", ts)
    _check_times("ts", t, a.shape[0], f"value of {name}")
    check_finite(name, a)
    return a, t


def tail_index(A_hat: Any, ts: Any = None, last: float = 0.2) -> float:
    r"""The LE-SDE authors' power-law index of the integrated impact A.

        r_hat = 1 - mean_{t in window} ln|A_hat(t)| / ln t,

    the window being the last ceil(`last` T) of the T points. For A(t) = t^(1-r)
    exactly, r_hat = r. It is a level transform of A, not a slope: for
    alpha(t) = c t^(-r) (r < 1), A(t) = c t^(1-r)/(1-r) and

        r_hat = r - mean_window ln(c/(1-r)) / ln t,

    unbiased only when c/(1-r) = 1 (the bias decays like 1/ln t). A slope estimate of r
    comes from `power_law_fit` of the rate (`savgol_rates`) instead.

    **Arguments:**
    - `A_hat`: shape (T,), e.g. `estimate["A_hat"]` from an inversion (an array or a 1-D
      DataArray); finite, and nonzero in the window.
    - `ts`: the times, shape (T,), strictly increasing, > 1 in the window (ln t > 0);
      default the coordinate of a DataArray `A_hat`.
    - `last`: the fraction of the points in the window, 0 < last <= 1 (default 0.2).

    **Returns:** r_hat as a Python float.
    """
    if isinstance(last, bool) or not isinstance(last, (int, float, np.integer, np.floating)):
        raise ValueError(f"last must be a number in (0, 1], got {show(last)}")
    if not (np.isfinite(last) and 0 < last <= 1):
        raise ValueError(f"last must be in (0, 1], got last = {float(last)!r}")
    a, t = _series("A_hat", A_hat, ts)
    T = a.shape[0]
    # round away float noise in last * T (0.2 * 15 = 3.0000000000000004) before ceil
    n = max(1, math.ceil(round(float(last) * T, 9)))
    ta, aa = t[T - n:], a[T - n:]
    if ta[0] <= 1:
        raise ValueError(
            f"ts must be > 1 in the window (the last {n} of {T} points, last = {float(last)!r}), "
            f"so that ln t > 0, got ts[{T - n}] = {float(ta[0])!r}"
        )
    zero = aa == 0
    if zero.any():
        i = T - n + int(np.argmax(zero))
        raise ValueError(
            f"A_hat must be nonzero in the window (the last {n} of {T} points), got "
            f"A_hat[{i}] = 0.0 at t = {float(t[i])!r}"
        )
    return float(1.0 - np.mean(np.log(np.abs(aa)) / np.log(ta)))


class PowerLawFit(NamedTuple):
    """A least-squares fit of rate(t) = c (1 + t/t0)^(-r) (see `power_law_fit`)."""

    c: float
    """The fitted level c = rate(0)."""
    r: float
    """The fitted decay exponent r."""
    t0: float
    """The time scale t0 (fixed, not fitted)."""
    c_stderr: float
    """Standard error of c (from the fit's covariance; inf if it cannot be estimated)."""
    r_stderr: float
    """Standard error of r (from the fit's covariance; inf if it cannot be estimated)."""
    rms: float
    """Root mean square of the residuals rate(t_i) - c (1 + t_i/t0)^(-r)."""

    def schedule(self) -> PowerLaw:
        """The fitted schedule `lesde.PowerLaw(c, r, t0)`."""
        return PowerLaw(self.c, self.r, self.t0)


def _power_law(t, c, r, t0):
    return c * (1.0 + t / t0) ** (-r)


def power_law_fit(ts: Any, rate: Any, t0: float = 1.0) -> PowerLawFit:
    r"""Least-squares fit of a power-law rate, rate(t) = c (1 + t/t0)^(-r).

    Minimises sum_i (rate_i - c (1 + t_i/t0)^(-r))^2 over (c, r) with
    `scipy.optimize.curve_fit` (Levenberg-Marquardt), t0 fixed. The fit runs in linear
    space, so noisy or negative values (e.g. `savgol_rates` of noisy data) are allowed.
    The initial guess is the line ln rate = ln c - r ln(1 + t/t0) through the positive
    values (c = mean(rate), r = 0.5 if fewer than 2 are positive). The result is the
    `PowerLaw` schedule of `lesde` (`.schedule()`).

    **Arguments:**
    - `ts`: the times, shape (T,), T >= 3, finite, strictly increasing, with
      1 + t/t0 > 0.
    - `rate`: the values, shape (T,), finite (an array or a 1-D DataArray).
    - `t0`: the time scale, a finite number > 0 (default 1.0).

    **Returns:** a `PowerLawFit` (c, r, t0, c_stderr, r_stderr, rms). A failed fit
    (scipy's RuntimeError) raises a ValueError with scipy's message.
    """
    if isinstance(t0, bool) or not isinstance(t0, (int, float, np.integer, np.floating)):
        raise ValueError(f"t0 must be a number > 0, got {show(t0)}")
    if not (np.isfinite(t0) and t0 > 0):
        raise ValueError(f"t0 must be a finite number > 0, got t0 = {t0!r}")
    t0 = float(t0)
    if isinstance(rate, xr.DataArray):
        rate = rate.values
    y = _as_float64("rate", rate)
    t = _as_float64("ts", ts)
    if y.ndim != 1:
        raise ValueError(f"rate must be 1-D, got shape {y.shape}")
    if t.ndim != 1:
        raise ValueError(f"ts must be 1-D, got shape {t.shape}")
    if t.shape != y.shape:
        raise ValueError(
            f"ts and rate must have the same length, got ts of shape {t.shape} and rate "
            f"of shape {y.shape}"
        )
    if y.shape[0] < 3:
        raise ValueError(
            f"rate must have at least 3 points to fit 2 parameters, got {y.shape[0]}: "
            f"{show(y)}"
        )
    _check_times("ts", t, y.shape[0], "value of rate")
    check_finite("rate", y)
    x = 1.0 + t / t0
    if (x <= 0).any():
        i = int(np.argmax(x <= 0))
        raise ValueError(
            f"ts must satisfy 1 + t/t0 > 0 (t0 = {t0!r}), got ts[{i}] = {float(t[i])!r}"
        )
    pos = y > 0
    if pos.sum() >= 2:
        slope, intercept = np.polyfit(np.log(x[pos]), np.log(y[pos]), 1)
        p0 = [float(np.exp(intercept)), float(-slope)]
    else:
        m = float(np.mean(y))
        p0 = [m if m != 0 else 1.0, 0.5]
    try:
        with warnings.catch_warnings():
            # an unidentifiable r (e.g. rate = 0) gives an infinite covariance: reported
            # as infinite standard errors, not as a warning
            warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
            popt, pcov = scipy.optimize.curve_fit(
                lambda tt, c, r: _power_law(tt, c, r, t0), t, y, p0=p0, maxfev=10000
            )
    except RuntimeError as e:
        raise ValueError(f"power_law_fit failed to fit rate(t) = c (1 + t/t0)^(-r): {e}") from e
    c, r = (float(v) for v in popt)
    if not (np.isfinite(c) and np.isfinite(r)):
        raise ValueError(
            f"power_law_fit failed to fit rate(t) = c (1 + t/t0)^(-r): got c = {c}, r = {r}"
        )
    var = np.diag(np.asarray(pcov, dtype=np.float64))
    c_err, r_err = (float(np.sqrt(v)) if np.isfinite(v) and v >= 0 else math.inf for v in var)
    rms = float(np.sqrt(np.mean((y - _power_law(t, c, r, t0)) ** 2)))
    return PowerLawFit(c=c, r=r, t0=t0, c_stderr=c_err, r_stderr=r_err, rms=rms)
