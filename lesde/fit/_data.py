"""What the fits are fitted to: class-mean trajectories, class moments and dense feature
snapshots, built from arrays or from trajectory logs (`lesde.io.read_log`, which also
reads the LE-SDE authors' CSV layout).

Each container is a checked Equinox module of concrete arrays. Times are in the log's
units (SGD steps); the fits rescale them internally.
"""

import math
import warnings
from typing import Any

import equinox as eqx
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, Int

from .._checks import check_increasing, check_labels, check_positive_int, show
from ..io import check_log
from ._logits import class_mean_logits, window_rows


class FitDataError(ValueError):
    """Data that cannot be fitted (NaN, too few time points, inconsistent shapes, values
    beyond what float32 can compute with, data that do not vary over the fit window)."""


# The fits compute in float32 (JAX's default precision; the logs store float32). A value
# is usable when its square is a finite, normal float32, so the squared residuals and
# scales of the losses neither overflow nor underflow.
_F32 = np.finfo(np.float32)
LARGEST = math.sqrt(float(_F32.max))  # 1.84e19
SMALLEST = math.sqrt(float(_F32.tiny))  # 1.08e-19
RESOLUTION = float(_F32.eps)  # 1.19e-7, float32's relative resolution


def _check_magnitude(name: str, values: np.ndarray, valid: np.ndarray, where) -> None:
    """Refuse |values| > `LARGEST` where `valid`: their squares overflow float32.
    `where(index)` describes the position of the first offending entry."""
    a = np.where(valid, np.abs(values), 0.0)
    if a.size and a.max() > LARGEST:
        idx = np.unravel_index(int(np.argmax(a > LARGEST)), a.shape)
        raise FitDataError(
            f"{name} is too large for a float32 fit: |value| = {a[idx]:.3g} at {where(idx)} "
            f"exceeds {LARGEST:.3g} = sqrt(largest float32 {float(_F32.max):.3g}), beyond "
            "which squares overflow"
        )


def check_varies(name: str, ts: np.ndarray, values: np.ndarray, valid: np.ndarray, *,
                 power: int = 1) -> None:
    """Refuse data that do not vary over time: `values` (T, ...) at times `ts`, entries
    with `valid` False ignored (`valid` broadcasts against `values`).

    An entry (a class and coordinate, say) varies when its change over time (max - min
    over its valid times) exceeds both float32's resolution of its values
    (`RESOLUTION` x its largest |value|: a smaller change is rounding) and
    `SMALLEST`**`power` (the square root of the smallest normal float32, squared for
    `power` = 2, e.g. covariances: a smaller change underflows when squared). The data
    are refused when no entry varies: they determine no dynamics, every drift that
    vanishes on them fits equally well. The message gives the entry closest to varying.
    """
    valid = np.broadcast_to(valid, values.shape)
    v = np.where(valid, values, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # entries with no valid time
        change = np.nan_to_num(np.nanmax(v, axis=0) - np.nanmin(v, axis=0)).ravel()
        big = np.nan_to_num(np.nanmax(np.abs(v), axis=0)).ravel()
    floor = SMALLEST**power
    threshold = np.maximum(RESOLUTION * big, floor)
    if change.size and (change > threshold).any():
        return
    i = int(np.argmax(change / threshold)) if change.size else 0
    c, b, th = (float(a[i]) if a.size else 0.0 for a in (change, big, threshold))
    t = np.asarray(ts)
    raise FitDataError(
        f"{name} do not vary over the fit window (times {t[0]:g} .. {t[-1]:g}): no entry "
        f"changes by more than the larger of float32's resolution {RESOLUTION:.3g} x its "
        f"largest |value| and {floor:.3g} (sqrt of the smallest normal float32"
        f"{', squared' if power == 2 else ''}); the closest changes by {c:.3g}, not above "
        f"{th:.3g} (its largest |value| is {b:.3g}); nothing in them determines the dynamics"
    )


def _times(name: str, ts: Any, length: int) -> np.ndarray:
    """`ts` as float64 times, one per time point (`length`), finite, strictly increasing
    and >= 0 (time since the start of training)."""
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.shape[0] != length:
        raise FitDataError(f"{name} must be a 1-D array of {length} times, got shape {ts.shape}")
    check_increasing(name, ts, nonnegative=True, error=FitDataError)
    return ts


def _trial_subset(log: xr.Dataset, trials: Any) -> xr.Dataset:
    """Rows of the given trial positions (repeats allowed: a bootstrap resample)."""
    if trials is None:
        return log
    idx = np.asarray(trials)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise FitDataError(f"trials must be a non-empty 1-D array of trial positions, got {show(trials)}")
    n = log.sizes["trial"]
    if idx.min() < 0 or idx.max() >= n:
        raise FitDataError(f"trials must be positions in 0..{n - 1}, got {show(idx)}")
    out = log.isel(trial=idx)
    return out.assign_coords(trial=np.arange(idx.size))


def _check_points(ts: np.ndarray, weight: np.ndarray, what: str) -> None:
    """Every time point must carry data for at least one class; at least 2 points."""
    if ts.shape[0] < 2:
        raise FitDataError(f"{what} needs at least 2 time points, got {ts.shape[0]}")
    empty = ~(weight > 0).any(axis=1)
    if empty.any():
        i = int(np.argmax(empty))
        raise FitDataError(f"{what}: no class has data at time {ts[i]} (index {i})")


class ClassMeans(eqx.Module):
    r"""Class-mean trajectories Xbar_k(t_m) in R^p at times t_0 < ... < t_{T-1}.

    `weight[m, k]` >= 0 is the weight of class k at time m in a fit (the number of rows
    averaged, from a log); 0 marks a missing mean (its value is ignored).

    **Arguments:** `ts` (T,), `xbar` (T, K, p) (NaN allowed only where weight is 0),
    `weight` (T, K), default ones.

    Refused (`FitDataError`): times that are not finite, increasing and >= 0, fewer than
    2 time points, a time with no class, non-finite means where weight > 0, and means
    beyond `LARGEST` = 1.84e19 in absolute value (the square root of the largest
    float32: their squares overflow in a float32 fit).
    """

    ts: Float[Array, " T"]
    xbar: Float[Array, "T K p"]
    weight: Float[Array, "T K"]

    def __init__(self, ts: Any, xbar: Any, weight: Any = None):
        xbar = np.asarray(xbar, dtype=np.float64)
        if xbar.ndim != 3:
            raise FitDataError(f"xbar must have shape (T, K, p), got shape {xbar.shape}")
        T, K, _ = xbar.shape
        ts = _times("ts", ts, T)
        if weight is None:
            weight = np.ones((T, K))
        weight = np.asarray(weight, dtype=np.float64)
        if weight.shape != (T, K):
            raise FitDataError(f"weight must have shape {(T, K)}, got shape {weight.shape}")
        if not np.isfinite(weight).all() or (weight < 0).any():
            raise FitDataError(f"weight must be finite and >= 0, got {show(weight)}")
        bad = ~np.isfinite(xbar) & (weight[..., None] > 0)
        if bad.any():
            m, k, j = (int(i) for i in np.argwhere(bad)[0])
            raise FitDataError(
                f"xbar must be finite where weight > 0, got {xbar[m, k, j]} at time {ts[m]} "
                f"(index {m}), class {k}, coordinate {j}"
            )
        _check_points(ts, weight, "class means")
        _check_magnitude("xbar", xbar, weight[..., None] > 0,
                         lambda i: f"time {ts[i[0]]} (index {i[0]}), class {i[1]}, coordinate {i[2]}")
        self.ts = ts
        self.xbar = np.where(weight[..., None] > 0, xbar, 0.0)
        self.weight = weight

    @property
    def num_classes(self) -> int:
        return self.xbar.shape[1]

    @property
    def dim(self) -> int:
        return self.xbar.shape[2]

    @classmethod
    def from_log(cls, log: xr.Dataset, *, window: int = 1, trials: Any = None) -> "ClassMeans":
        """The class-mean logits of a trajectory log (`lesde.fit.class_mean_logits`),
        pooled in windows of `window` steps, weighted by the rows averaged; `trials`
        selects trial positions (repeats allowed, for a bootstrap)."""
        log = _trial_subset(check_log(log), trials)
        xbar = class_mean_logits(log, window=window)
        return cls(xbar["step"].values, xbar.values, xbar["count"].values)


class ClassMoments(eqx.Module):
    r"""Per-class mean and covariance of the features at times t_m: over the samples of
    class k (and the trials), mean_k(t_m) in R^p and cov_k(t_m) in R^{p x p}.

    **Arguments:** `ts` (T,), `mean` (T, K, p), `cov` (T, K, p, p), `weight` (T, K)
    (rows pooled; 0 marks missing moments, which need >= 2 rows).

    Refused (`FitDataError`) as for `ClassMeans`; the bound `LARGEST` applies to the
    means and to sqrt(|cov|).
    """

    ts: Float[Array, " T"]
    mean: Float[Array, "T K p"]
    cov: Float[Array, "T K p p"]
    weight: Float[Array, "T K"]

    def __init__(self, ts: Any, mean: Any, cov: Any, weight: Any = None):
        mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        if mean.ndim != 3:
            raise FitDataError(f"mean must have shape (T, K, p), got shape {mean.shape}")
        T, K, p = mean.shape
        if cov.shape != (T, K, p, p):
            raise FitDataError(f"cov must have shape {(T, K, p, p)}, got shape {cov.shape}")
        ts = _times("ts", ts, T)
        weight = np.ones((T, K)) if weight is None else np.asarray(weight, dtype=np.float64)
        if weight.shape != (T, K) or not np.isfinite(weight).all() or (weight < 0).any():
            raise FitDataError(f"weight must be finite, >= 0 and of shape {(T, K)}, got {show(weight)}")
        for name, a in (("mean", mean), ("cov", cov)):
            w = weight.reshape(weight.shape + (1,) * (a.ndim - 2))
            bad = ~np.isfinite(a) & (w > 0)
            if bad.any():
                m, k = (int(i) for i in np.argwhere(bad)[0][:2])
                raise FitDataError(
                    f"{name} must be finite where weight > 0, got NaN/inf at time {ts[m]} "
                    f"(index {m}), class {k}"
                )
        _check_points(ts, weight, "class moments")
        where = lambda i: f"time {ts[i[0]]} (index {i[0]}), class {i[1]}"  # noqa: E731
        _check_magnitude("mean", mean, weight[..., None] > 0, where)
        _check_magnitude("sqrt(|cov|)", np.sqrt(np.abs(np.where(np.isfinite(cov), cov, 0.0))),
                         weight[..., None, None] > 0, where)
        self.ts = ts
        self.mean = np.where(weight[..., None] > 0, mean, 0.0)
        self.cov = np.where(weight[..., None, None] > 0, cov, 0.0)
        self.weight = weight

    @property
    def num_classes(self) -> int:
        return self.mean.shape[1]

    @property
    def dim(self) -> int:
        return self.mean.shape[2]

    @classmethod
    def from_log(cls, log: xr.Dataset, *, window: int = 1, trials: Any = None) -> "ClassMoments":
        """Mean and (unbiased) covariance of the logged logits of each class, pooled over
        the trials and the `window` steps of each window (a class needs >= 2 rows in a
        window, else its weight there is 0)."""
        a, b, steps = window_rows(_trial_subset(check_log(log), trials), window)
        count = a.sum(axis=2)
        s1 = a @ b
        s2 = np.einsum("nkr,nri,nrj->nkij", a, b, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / count[..., None]
            cov = (s2 - count[..., None, None] * mean[..., :, None] * mean[..., None, :]) / (
                count[..., None, None] - 1
            )
        weight = np.where(count >= 2, count, 0.0)
        return cls(steps, mean, cov, weight)


class Snapshots(eqx.Module):
    r"""Features of all N training samples at times t_0 < ... < t_{T-1}, in R
    independent replicas (trials): x[r, m, i] in R^p, with labels y_i.

    For the Euler-Maruyama transition likelihood the snapshots should be dense (the
    gaps t_{m+1} - t_m small against the time scale of the drift).

    **Arguments:** `ts` (T,), `features` (R, T, N, p) (or (T, N, p): one replica),
    `labels` (N,) integers in 0..K-1, `num_classes` K (default max label + 1).

    Refused (`FitDataError`): bad times, fewer than 2, labels out of range or a class
    without samples, non-finite features and features beyond `LARGEST` = 1.84e19 in
    absolute value (their squares overflow in a float32 fit).
    """

    ts: Float[Array, " T"]
    features: Float[Array, "R T N p"]
    labels: Int[Array, " N"]
    num_classes: int = eqx.field(static=True)

    def __init__(self, ts: Any, features: Any, labels: Any, num_classes: int | None = None):
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise FitDataError(f"features must have shape (R, T, N, p) or (T, N, p), got shape {x.shape}")
        R, T, N, p = x.shape
        ts = _times("ts", ts, T)
        if T < 2:
            raise FitDataError(f"snapshots need at least 2 times for a transition, got {T}")
        K = None if num_classes is None else check_positive_int("num_classes", num_classes)
        y = check_labels("labels", labels, N, K, error=FitDataError)
        K = int(y.max()) + 1 if K is None else K
        missing = np.setdiff1d(np.arange(K), y)
        if missing.size:
            raise FitDataError(f"every class needs a sample; class(es) {missing.tolist()} have none")
        bad = ~np.isfinite(x)
        if bad.any():
            r, m, i, j = (int(v) for v in np.argwhere(bad)[0])
            raise FitDataError(
                f"features must be finite, got {x[r, m, i, j]} at replica {r}, time {ts[m]} "
                f"(index {m}), sample {i}, coordinate {j}"
            )
        _check_magnitude(
            "features", x, np.ones(x.shape, bool),
            lambda i: f"replica {i[0]}, time {ts[i[1]]} (index {i[1]}), sample {i[2]}, coordinate {i[3]}",
        )
        self.ts = ts
        self.features = x
        self.labels = y.astype(np.int32)
        self.num_classes = K

    @property
    def dim(self) -> int:
        return self.features.shape[3]

    @classmethod
    def from_log(cls, log: xr.Dataset, *, trials: Any = None) -> "Snapshots":
        """The logit snapshots of a log written with snapshot steps (`features`, dims
        trial, snapshot_step, train_sample, class, and `train_labels`)."""
        log = _trial_subset(check_log(log), trials)
        for name in ("features", "train_labels"):
            if name not in log:
                raise FitDataError(
                    f"the log has no {name!r} variable: train with snapshot steps "
                    "(`snapshots` in the train config) to fit the transition likelihood"
                )
        return cls(
            log["snapshot_step"].values,
            log["features"].values,
            log["train_labels"].values,
            num_classes=log.sizes["class"],
        )
