"""What the fits are fitted to: class-mean trajectories, class moments and dense feature
snapshots, built from arrays or from trajectory logs (`lesde.io.read_log`, which also
reads the LE-SDE authors' CSV layout).

Each container is a checked Equinox module of concrete arrays. Times are in the log's
units (SGD steps); the fits rescale them internally.
"""

from typing import Any

import equinox as eqx
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, Int

from .._checks import check_positive_int, show
from ..io._logs import check_log, class_mean_logits, window_rows


class FitDataError(ValueError):
    """Data that cannot be fitted (NaN, too few time points, inconsistent shapes)."""


def _times(name: str, ts: Any, length: int) -> np.ndarray:
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.shape[0] != length:
        raise FitDataError(f"{name} must be a 1-D array of {length} times, got shape {ts.shape}")
    if not np.isfinite(ts).all():
        i = int(np.argmax(~np.isfinite(ts)))
        raise FitDataError(f"{name} must be finite, got {ts[i]} at index {i}")
    if length > 1 and (np.diff(ts) <= 0).any():
        i = int(np.argmax(np.diff(ts) <= 0))
        raise FitDataError(
            f"{name} must be strictly increasing, got {ts[i]} then {ts[i + 1]} at index {i}"
        )
    if ts[0] < 0:
        raise FitDataError(f"{name} must be >= 0 (time since the start of training), got {ts[0]}")
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
        """The class-mean logits of a trajectory log (`lesde.io.class_mean_logits`),
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
        y = np.asarray(labels)
        if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
            raise FitDataError(f"labels must be {N} integers (one per sample), got {show(labels)}")
        K = int(y.max()) + 1 if num_classes is None else check_positive_int("num_classes", num_classes)
        if y.min() < 0 or y.max() >= K:
            raise FitDataError(f"labels must lie in 0..{K - 1}, got {show(y)}")
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
