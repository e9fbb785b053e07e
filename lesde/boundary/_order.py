"""The order parameter of a boundary search: a metric reduced over the seeds of a probe
to an estimate with a confidence interval."""

import dataclasses
import math
from typing import Literal

import numpy as np
from scipy import stats

REDUCTIONS = ("mean", "fraction")
"""How the seeds of a probe are reduced: the mean of the metric, or the fraction of
seeds whose metric is at most `below` (or at least `above`)."""


@dataclasses.dataclass(frozen=True)
class OrderParameter:
    r"""A registered metric reduced over the seeds of a probe, and the threshold whose
    crossing is the boundary.

    - `reduce="mean"`: the estimate is the seed mean \bar m, its interval the Student-t
      interval \bar m \pm t_{1-a/2, n-1} s / \sqrt n (s the sample standard deviation of
      the n seeds; one seed gives an unbounded interval);
    - `reduce="fraction"`: the estimate is the fraction k / n of seeds with metric
      <= `below` (or >= `above`), its interval the Clopper-Pearson (exact binomial)
      interval [B(a/2; k, n - k + 1), B(1 - a/2; k + 1, n - k)], B the quantile of the
      beta distribution.

    The t-interval assumes roughly normal seed means; for a metric of 0s and 1s, or a
    handful of seeds, the fraction's exact interval is the valid one (n seeds that all
    agree give a t-interval of width 0).

    **Arguments:**
    - `metric`: the name of a registered metric (`lesde.metrics.METRICS` or
      `SPRING_METRICS`).
    - `threshold`: the value whose crossing is located.
    - `reduce`: 'mean' or 'fraction'.
    - `below`, `above`: for 'fraction', exactly one: a seed counts when its metric is
      <= `below` (>= `above`).

    Example: the fraction of seeds whose nearest-class-mean error is 0 (then the
    features are linearly separable) crossing one half:

        OrderParameter("ncm_error", 0.5, reduce="fraction", below=0.0)
    """

    metric: str
    threshold: float
    reduce: Literal["mean", "fraction"] = "mean"
    below: float | None = None
    above: float | None = None

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"order parameter: metric must be a metric's name, got {self.metric!r}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"order parameter: reduce must be one of {list(REDUCTIONS)}, got {self.reduce!r}")
        if not _finite(self.threshold):
            raise ValueError(f"order parameter: threshold must be a finite number, got {self.threshold!r}")
        given = [k for k in ("below", "above") if getattr(self, k) is not None]
        if self.reduce == "fraction":
            if len(given) != 1:
                raise ValueError(
                    "order parameter: reduce 'fraction' needs exactly one of below and above "
                    f"(the seeds counted), got {given or 'none'}"
                )
            if not _finite(getattr(self, given[0])):
                raise ValueError(f"order parameter: {given[0]} must be a finite number, got {getattr(self, given[0])!r}")
            if not 0 < self.threshold < 1:
                raise ValueError(
                    f"order parameter: the threshold of a fraction must lie in (0, 1), got {self.threshold}"
                )
        elif given:
            raise ValueError(f"order parameter: {given[0]} is only for reduce 'fraction'")

    def describe(self) -> str:
        """A short text, e.g. 'fraction of seeds with ncm_error <= 0 = 0.5'."""
        if self.reduce == "mean":
            return f"mean {self.metric} = {self.threshold:g}"
        side, value = ("<=", self.below) if self.below is not None else (">=", self.above)
        return f"fraction of seeds with {self.metric} {side} {value:g} = {self.threshold:g}"

    def estimate(self, values: np.ndarray, level: float):
        """(estimate, low, high, standard error, n) over the last axis (the seeds) of
        `values`; NaN where any seed is NaN (a flagged member: the probe is no
        measurement). The standard error is s / sqrt(n) for a mean and
        sqrt(p (1 - p) / (n + 4)) at p = (k + 2) / (n + 4) (never 0) for a fraction."""
        x = np.asarray(values, dtype=float)
        n = x.shape[-1]
        bad = np.isnan(x).any(axis=-1)
        a = 1.0 - level
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.reduce == "mean":
                m = x.mean(axis=-1)
                if n > 1:
                    se = x.std(axis=-1, ddof=1) / math.sqrt(n)
                    half = stats.t.ppf(1 - a / 2, n - 1) * se
                else:
                    se = np.full(m.shape, np.inf)
                    half = se
                lo, hi = m - half, m + half
            else:
                hit = x <= self.below if self.below is not None else x >= self.above
                k = hit.sum(axis=-1).astype(float)
                m = k / n
                lo = np.where(k > 0, stats.beta.ppf(a / 2, k, n - k + 1), 0.0)
                hi = np.where(k < n, stats.beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
                pt = (k + 2) / (n + 4)
                se = np.sqrt(pt * (1 - pt) / (n + 4))
        nan = np.where(bad, np.nan, 0.0)
        return m + nan, lo + nan, hi + nan, se + nan, np.full(m.shape, n)


def _finite(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
        and math.isfinite(float(x))
