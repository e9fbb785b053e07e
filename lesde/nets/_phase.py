"""A quantitative reading of a noise-nonlinearity phase diagram of real networks (the
spring-block authors' claims), from a `train_separation` result with two swept axes.

The claims (C. Shi, L. Pan, I. Dokmanic, arXiv 2407.19353):

1. the load curve goes from concave (lazy: the deep layers separate, curvature c < 0) at
   low noise to convex (the shallow layers separate, c > 0) at high noise;
2. the boundary is diagonal: more nonlinearity (a smaller leaky slope a) needs more noise
   to turn the curve linear;
3. test accuracy is highest where the load curve is most linear.
"""

import warnings
from typing import Any

import numpy as np
import xarray as xr

NOISE_AXES = {
    "data_noise": (1, False),
    "learning_rate": (1, True),
    "dropout": (1, False),
    "batch_size": (-1, True),
}
"""Noise axes of the separation experiment: name -> (direction, logarithmic). Direction
+1: a larger value is more noise; -1: a smaller value is (batch size)."""


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a[ok], b[ok]).statistic)


def _crossing(position: np.ndarray, c: np.ndarray) -> float:
    """The first position (increasing noise) where c goes from < 0 to >= 0, by linear
    interpolation between the two cells; -inf if c >= 0 already at the lowest noise (the
    boundary lies below the grid), +inf if c < 0 everywhere (above it), NaN if c is NaN
    anywhere."""
    if not np.isfinite(c).all():
        return float("nan")
    if c[0] >= 0:
        return float("-inf")
    for j in range(1, c.size):
        if c[j] >= 0:
            f = c[j - 1] / (c[j - 1] - c[j])
            return float(position[j - 1] + f * (position[j] - position[j - 1]))
    return float("inf")


def _statistics(c: np.ndarray, acc: np.ndarray, slopes: np.ndarray, position: np.ndarray,
                direction: int = 1) -> dict:
    """The reading of seed-mean curvature `c` and accuracy `acc`, both (rows, columns)
    with columns in increasing noise; `direction` -1 where the position decreases with
    the noise (batch size)."""
    rows = c.shape[0]
    crossing = np.array([_crossing(position, c[r]) for r in range(rows)])
    rho = np.array([_spearman(np.abs(c[r]), acc[r]) for r in range(rows)])
    best = np.array([int(np.nanargmax(acc[r])) if np.isfinite(acc[r]).any() else -1 for r in range(rows)])
    linear = np.array([int(np.nanargmin(np.abs(c[r]))) if np.isfinite(c[r]).any() else -1 for r in range(rows)])
    offset = np.where((best >= 0) & (linear >= 0), best - linear, 0).astype(float)
    offset[(best < 0) | (linear < 0)] = np.nan
    finite = np.isfinite(crossing)
    diag = _spearman(slopes[finite], crossing[finite]) if finite.sum() >= 3 else float("nan")
    best_pos = np.array([position[b] if b >= 0 else np.nan for b in best])
    from_crossing = np.where(finite, direction * (best_pos - np.where(finite, crossing, 0.0)), np.nan)
    return dict(
        crossing=crossing, row_rank_correlation=rho, best_minus_linear=offset,
        best_minus_crossing=from_crossing,
        mean_best_minus_crossing=float(np.nanmean(from_crossing)) if finite.any() else float("nan"),
        boundary_rank_correlation=diag,
        mean_rank_correlation=float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan"),
        mean_abs_offset=float(np.nanmean(np.abs(offset))) if np.isfinite(offset).any() else float("nan"),
        convex_fraction=float(np.mean(c > 0)),
    )


def read_phase_diagram(
    ds: xr.Dataset,
    *,
    epoch: Any = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Read a two-axis `train_separation` result (rows: `negative_slope`; columns: one
    noise axis of `NOISE_AXES`) against the spring-block authors' claims.

    With c and acc the seed means of `curvature` and `test_acc` at `epoch` (default the
    last), and the noise axis ordered by increasing noise (position: the value, its
    log10 for learning rate and batch size):

    - **sign pattern**: sign(c) per cell; `convex_fraction`, the fraction of cells with
      c > 0;
    - **boundary**: per slope row, the noise position where c first turns from < 0
      (concave) to >= 0 (convex), linearly interpolated (-inf: convex over the whole row;
      +inf: concave over the whole row); `boundary_rank_correlation`, the Spearman
      correlation of the finite crossings with the slope a (the claim: negative, a
      diagonal boundary where less nonlinearity needs less noise);
    - **accuracy and linearity**: per row, the Spearman correlation of |c| with acc
      across the noise cells (`row_rank_correlation`; the claim: negative) and its mean
      over rows; per row, the grid offset of the most accurate cell from the most linear
      one (`best_minus_linear`, in cells, positive = at more noise) and the mean of its
      absolute value; per row, the position of the most accurate cell minus the row's
      crossing (`best_minus_crossing`, in position units, signed so that positive = at
      more noise than the boundary, also on the batch-size axis) and its mean over the rows with a crossing. The most linear cell by
      |c| can also sit where training fails (c returns towards 0 at the highest noise),
      which the distance from the crossing does not confuse with the boundary.

    Each scalar comes with a percentile bootstrap interval over seeds (`resamples`
    resamples of the seeds with replacement, `confidence` level); with few seeds the
    interval is coarse.

    **Returns:** a JSON-ready dict: `axis`, `positions` and `slopes`, the per-cell
    `curvature`, `sign` and `accuracy` (rows x columns, columns in increasing noise), the
    per-row statistics, and for each scalar a dict {value, low, high}.

    Example: `read_phase_diagram(train_separation(data, negative_slope=[0, 0.5, 1],
    data_noise=[0, 0.2, 0.4], seeds=3))`.
    """
    dims = [d for d in ds["curvature"].dims if d not in ("seed", "epoch")]
    noise = [d for d in dims if d in NOISE_AXES]
    if "negative_slope" not in dims or len(noise) != 1 or len(dims) != 2:
        raise ValueError(
            "a phase diagram needs exactly two swept axes, negative_slope and one of "
            f"{sorted(NOISE_AXES)}; this result has {dims}"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    axis = noise[0]
    direction, log = NOISE_AXES[axis]
    ep = ds["epoch"].values[-1] if epoch is None else epoch
    sel = ds[["curvature", "test_acc"]].sel(epoch=ep).transpose("negative_slope", axis, "seed")
    values = np.asarray(ds[axis], float)
    order = np.argsort(direction * values, kind="stable")
    position = (np.log10(values) if log else values)[order]
    c = np.asarray(sel["curvature"], float)[:, order]
    acc = np.asarray(sel["test_acc"], float)[:, order]
    slopes = np.asarray(ds["negative_slope"], float)
    point = _statistics(c.mean(-1), acc.mean(-1), slopes, position, direction)

    rng = np.random.default_rng(seed)
    n = c.shape[-1]
    scalars = ("boundary_rank_correlation", "mean_rank_correlation", "mean_abs_offset",
               "mean_best_minus_crossing", "convex_fraction")
    boots = {k: [] for k in scalars}
    for _ in range(int(resamples)):
        pick = rng.integers(0, n, n)
        st = _statistics(c[..., pick].mean(-1), acc[..., pick].mean(-1), slopes, position, direction)
        for k in scalars:
            boots[k].append(st[k])
    q = [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]
    out = dict(
        axis=axis, epoch=int(ep), seeds=int(n), confidence=float(confidence),
        positions=[float(v) for v in values[order]],
        position_scale="log10" if log else "linear",
        slopes=[float(v) for v in slopes],
        curvature=np.round(c.mean(-1), 6).tolist(),
        sign=np.sign(c.mean(-1)).astype(int).tolist(),
        accuracy=np.round(acc.mean(-1), 6).tolist(),
        crossing=[_json(v) for v in point["crossing"]],
        row_rank_correlation=[_json(v) for v in point["row_rank_correlation"]],
        best_minus_linear=[_json(v) for v in point["best_minus_linear"]],
        best_minus_crossing=[_json(v) for v in point["best_minus_crossing"]],
    )
    for k in scalars:
        b = np.asarray(boots[k], float)
        b = b[np.isfinite(b)]
        low, high = (np.percentile(b, q) if b.size else (np.nan, np.nan))
        out[k] = dict(value=_json(point[k]), low=_json(low), high=_json(high))
    return out


def _json(v: float) -> float | str | None:
    """A float for JSON: NaN -> None, +-inf -> '+inf' / '-inf'."""
    v = float(v)
    if np.isnan(v):
        return None
    if np.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return round(v, 6)
