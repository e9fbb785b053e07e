"""Class means and within/between-class scatter of labelled features.

Notation used by every measurement in `lesde.metrics`: features H in R^{N x p} (rows
h_i), integer labels y_i in {0..K-1}, class sizes n_k, class means
mu_k = (1/n_k) sum_{i: y_i = k} h_i, a global mean mu_G, and

    Sigma_W = (1/N) sum_k sum_{i: y_i = k} (h_i - mu_k)(h_i - mu_k)^T     (within-class)
    Sigma_B = (1/N) sum_k n_k (mu_k - mu_G)(mu_k - mu_G)^T                 (between-class)

**Which global mean.** `global_mean="samples"` (the default) takes mu_G = (1/N) sum_i h_i,
the mean of the samples; then sum_k n_k (mu_k - mu_G) = 0, Sigma_B has rank <= K - 1 and
Sigma_W + Sigma_B is the covariance of all samples. `global_mean="classes"` takes the
mean of the class means, (1/K') sum_k mu_k over the K' non-empty classes, as some
neural-collapse code does. The two agree for balanced classes; for imbalanced classes
they differ, and with "classes" Sigma_B (still weighted by n_k) can have rank K.

Inputs are validated when they are concrete (not under `jit`/`vmap`): a ValueError names
the argument and shows the value. Under a transformation the checks that need values
are skipped and bad values propagate as NaN (see each function).
"""

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import as_float_array, check_labels, check_positive_int, is_concrete

GLOBAL_MEANS = ("samples", "classes")


# --------------------------------------------------------------------------- validation


def _check_global_mean(global_mean: Any) -> str:
    if global_mean not in GLOBAL_MEANS:
        raise ValueError(f"global_mean must be one of {list(GLOBAL_MEANS)}, got {global_mean!r}")
    return global_mean


def _check_features(features: Any, name: str = "features") -> jax.Array:
    """A floating (N, p) array; on concrete input, the first non-finite entry is named
    by its sample and feature index."""
    h = as_float_array(name, features)
    if h.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, p) array, got shape {tuple(h.shape)}")
    if h.shape[0] == 0 or h.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sample and one feature, got shape "
                         f"{tuple(h.shape)}")
    if is_concrete(h):
        a = np.asarray(h)
        bad = ~np.isfinite(a)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"{name} must be finite, got {a[i, j]} at sample {i}, feature {j} "
                f"({name}[{i}, {j}])"
            )
    return h


def _check_nonempty(labels: jax.Array, num_classes: int) -> None:
    """On concrete labels, raise if a class has no sample (needed by the metrics that
    average over classes)."""
    if not is_concrete(labels):
        return
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        n = int(counts.sum())
        extra = f" (N = {n} < num_classes = {num_classes})" if n < num_classes else ""
        raise ValueError(
            f"every class needs at least one sample for this metric; class(es) "
            f"{empty.tolist()} of num_classes = {num_classes} are empty in labels{extra}"
        )


def _check_inputs(
    features: Any, labels: Any, num_classes: Any, *, allow_empty: bool
) -> tuple[jax.Array, jax.Array, int]:
    """Validate (features, labels, num_classes) and return them as (H, y, K)."""
    k = check_positive_int("num_classes", num_classes)
    h = _check_features(features)
    y = jnp.asarray(check_labels("labels", labels, int(h.shape[0]), k), dtype=jnp.int32)
    if not allow_empty:
        _check_nonempty(y, k)
    return h, y, k


def _check_min_classes(num_classes: int, minimum: int, what: str) -> None:
    if num_classes < minimum:
        raise ValueError(f"{what} needs num_classes >= {minimum}, got num_classes = {num_classes}")


# ------------------------------------------------------------------------ class stats


def _segment_sum(x: Array, labels: Array, num_classes: int) -> Array:
    """sum_{i: y_i = k} x_i for k = 0..K-1 (the one segment sum of the metrics)."""
    return jax.ops.segment_sum(x, labels, num_segments=num_classes)


class _ClassStats(NamedTuple):
    counts: Float[Array, " K"]  # n_k
    centred_means: Float[Array, "K p"]  # mu_k - mu_G (0 for an empty class)
    global_mean: Float[Array, " p"]  # mu_G
    shifted: Float[Array, "N p"]  # h_i - mean of the samples
    shifted_means: Float[Array, "K p"]  # mu_k - mean of the samples (0 if empty)
    labels: Int[Array, " N"]  # y_i
    finite: Array  # False if any feature is NaN or infinite

    @property
    def centred(self) -> Float[Array, "N p"]:
        """Z: the class-centred features h_i - mu_{y_i} (independent of mu_G)."""
        return self.shifted - self.shifted_means[self.labels]


def _class_stats(h: Array, y: Array, num_classes: int, global_mean: str) -> _ClassStats:
    """Class statistics in two passes: the features are first shifted by their sample
    mean, so that mu_k - mu_G is computed without cancellation against a large offset.
    Traceable; O(N p)."""
    n = h.shape[0]
    mu = jnp.mean(h, axis=0)
    finite = jnp.all(jnp.isfinite(mu))  # any NaN or inf feature makes the mean non-finite
    hc = h - mu
    counts = _segment_sum(jnp.ones((n,), h.dtype), y, num_classes)
    m_s = _segment_sum(hc, y, num_classes) / jnp.maximum(counts, 1)[:, None]
    m = m_s
    if global_mean == "classes":
        present = (counts > 0).astype(h.dtype)
        shift = present @ m / jnp.maximum(jnp.sum(present), 1)
        m = (m - shift) * present[:, None]
        mu = mu + shift
    return _ClassStats(counts, m, mu, hc, m_s, y, finite)


def _between_factor(stats: _ClassStats, global_mean: str) -> Float[Array, "K p"]:
    """A with Sigma_B = A^T A: rows sqrt(n_k / N) (mu_k - mu_G).

    With the sample mean, u = sqrt(n / N) is a unit vector with u^T A = 0 exactly in exact
    arithmetic; rounding leaves a component of rounding size along u, which a relative
    rank cut could mistake for a (tiny) singular value. It is projected out."""
    w = jnp.sqrt(stats.counts / jnp.sum(stats.counts))
    a = w[:, None] * stats.centred_means
    if global_mean == "samples":
        a = a - w[:, None] * (w @ a)[None, :]
    return a


def _nan_unless(ok: Array, value: Array) -> Array:
    return jnp.where(ok, value, jnp.nan)


# ------------------------------------------------------------------------ public API


class Scatter(eqx.Module):
    """Class statistics and the p x p scatter matrices (see `scatter`).

    - `counts`: n_k, shape (K,).
    - `means`: class means mu_k, shape (K, p); NaN rows for empty classes.
    - `global_mean`: mu_G, shape (p,).
    - `within`: Sigma_W, shape (p, p).
    - `between`: Sigma_B, shape (p, p).
    """

    counts: Float[Array, " K"]
    means: Float[Array, "K p"]
    global_mean: Float[Array, " p"]
    within: Float[Array, "p p"]
    between: Float[Array, "p p"]


@eqx.filter_jit
def _scatter(h, y, num_classes, global_mean):
    s = _class_stats(h, y, num_classes, global_mean)
    n = h.shape[0]
    a = _between_factor(s, global_mean)
    means = jnp.where((s.counts > 0)[:, None], s.centred_means + s.global_mean, jnp.nan)
    ok = s.finite
    return Scatter(
        counts=s.counts,
        means=_nan_unless(ok, means),
        global_mean=_nan_unless(ok, s.global_mean),
        within=_nan_unless(ok, s.centred.T @ s.centred / n),
        between=_nan_unless(ok, a.T @ a),
    )


def scatter(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    *,
    global_mean: str = "samples",
) -> Scatter:
    """Class means and the within- and between-class scatter matrices

        Sigma_W = (1/N) sum_k sum_{i: y_i = k} (h_i - mu_k)(h_i - mu_k)^T,
        Sigma_B = (1/N) sum_k n_k (mu_k - mu_G)(mu_k - mu_G)^T.

    Forms two p x p matrices at cost O(N p^2): for large p use `separation_fuzziness`,
    `trace_ratio` or `nc1`, which never do.

    **Arguments:**
    - `features`: H, shape (N, p).
    - `labels`: integer labels in 0..K-1, shape (N,) (may be traced).
    - `num_classes`: K, a static Python int.
    - `global_mean`: "samples" (mu_G = mean of the samples, default) or "classes" (mean of
      the class means); see the module docstring.

    **Returns:** a `Scatter` (counts, means, global_mean, within, between). An empty class
    has n_k = 0, contributes nothing to either matrix, and has a NaN mean. Non-finite
    features raise a ValueError naming the first bad sample and feature on concrete input;
    under `jit` every returned matrix is NaN.
    """
    global_mean = _check_global_mean(global_mean)
    h, y, k = _check_inputs(features, labels, num_classes, allow_empty=True)
    return _scatter(h, y, k, global_mean)


def class_means(
    features: Float[Array, "N p"], labels: Int[Array, " N"], num_classes: int
) -> Float[Array, "K p"]:
    """Class means mu_k = (1/n_k) sum_{i: y_i = k} h_i, shape (K, p), by one segment sum
    (O(N p)). Every class must have a sample (ValueError naming the empty classes on
    concrete labels; NaN rows under `jit`)."""
    h, y, k = _check_inputs(features, labels, num_classes, allow_empty=False)
    return _class_means(h, y, k)


@eqx.filter_jit
def _class_means(h, y, num_classes):
    counts = _segment_sum(jnp.ones((h.shape[0],), h.dtype), y, num_classes)
    return _segment_sum(h, y, num_classes) / counts[:, None]
