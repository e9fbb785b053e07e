"""He & Su's separation fuzziness, the trace ratio and the law of data separation.

Reference: H. He and W. J. Su, "A law of data separation in deep learning", PNAS 2023.
Notation as in `lesde.metrics.scatter`.
"""

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import as_float_array, is_concrete
from ._scatter import (
    _between_factor,
    _check_global_mean,
    _check_inputs,
    _class_stats,
    _ClassStats,
    _nan_unless,
)


def _check_rtol(rtol: Any, num_classes: int, dim: int, dtype) -> jax.Array:
    """The relative rank cut of the pseudo-inverse: default max(K, p) * eps."""
    if rtol is None:
        return jnp.asarray(max(num_classes, dim) * jnp.finfo(dtype).eps, dtype)
    r = as_float_array("rtol", rtol)
    if r.ndim != 0:
        raise ValueError(f"rtol must be a scalar, got shape {tuple(r.shape)}")
    if is_concrete(r) and not (np.isfinite(float(r)) and 0 <= float(r) < 1):
        raise ValueError(f"rtol must be a number in [0, 1), got {float(r)}")
    return r.astype(dtype)


def _fuzziness(stats: _ClassStats, global_mean: str, rtol: Array) -> Array:
    """D = (1/N) |Z A^+|_F^2 from the thin SVD of the K x p factor A of Sigma_B."""
    a = _between_factor(stats, global_mean)
    _, s, vt = jnp.linalg.svd(a, full_matrices=False)
    keep = s > rtol * s[0]  # s is sorted, s[0] = s_max
    inv = jnp.where(keep, 1 / jnp.where(keep, s, 1), 0)
    # Z A^+ = Z V S^{-1}, with Z = shifted - shifted_means[y] distributed over the
    # product so that the N x p matrix Z is never formed: the O(N p K) step
    proj = vt.T * inv
    zv = stats.shifted @ proj - (stats.shifted_means @ proj)[stats.labels]
    d = jnp.sum(zv**2) / stats.shifted.shape[0]
    d = jnp.where(jnp.any(keep), d, jnp.inf)  # no between-class scatter at all
    return _nan_unless(stats.finite, d)


@eqx.filter_jit
def _separation_fuzziness(h, y, num_classes, global_mean, rtol):
    return _fuzziness(_class_stats(h, y, num_classes, global_mean), global_mean, rtol)


def separation_fuzziness(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    *,
    global_mean: str = "samples",
    rtol: Any = None,
) -> Float[Array, ""]:
    r"""He and Su's separation fuzziness D = Tr(Sigma_W Sigma_B^+) (^+: Moore-Penrose
    pseudo-inverse), without forming any p x p matrix.

    Method: Sigma_B = A^T A with A = diag(sqrt(n_k / N)) (mu_k - mu_G) (K x p) and
    Sigma_W = Z^T Z / N with Z the class-centred features (rows h_i - mu_{y_i}). With the
    thin SVD A = U S V^T of numerical rank r, Sigma_B^+ = sum_{j <= r} s_j^{-2} v_j v_j^T,
    so

        D = sum_{j <= r} s_j^{-2} v_j^T Sigma_W v_j = (1/N) sum_{j <= r} |Z v_j|^2 / s_j^2
          = (1/N) |Z A^+|_F^2,

    at cost O(N p K) (one N x p times p x min(K, p) product) plus O(K^2 p) for the SVD.

    **Rank tolerance:** singular values s_j <= rtol * s_max of A are treated as zero, as
    `numpy.linalg.pinv(A, rcond=rtol)` does (the cut on the eigenvalues s_j^2 of Sigma_B is
    then rtol^2 * s_max^2). Default rtol = max(K, p) * eps of the features' dtype. A
    rank-deficient Sigma_B (rank < K - 1: e.g. class means on a line) is handled by the
    pseudo-inverse. With the sample mean as global mean the known null direction of A
    (sum_k n_k (mu_k - mu_G) = 0) is projected out exactly, so translating the features
    by a large offset cannot create a spurious tiny singular value.

    **Degenerate inputs (documented values):**
    - no between-class scatter (K = 1, or all class means equal: rank r = 0): D = inf,
      not the 0 that the pseudo-inverse convention would give (no separation at all);
    - an empty class has n_k = 0 and contributes nothing (so N < K is allowed);
    - non-finite features: ValueError naming the first bad sample and feature on concrete
      input; NaN under `jit`.

    **Arguments:**
    - `features`: H, shape (N, p); `labels`: shape (N,) in 0..K-1 (may be traced);
      `num_classes`: K, a static Python int.
    - `global_mean`: "samples" (default) or "classes"; see `lesde.metrics.scatter`.
    - `rtol`: the relative rank tolerance above (None: the default).

    **Returns:** the scalar D >= 0. Invariant under rotations and translations of the
    features and permutations of the samples. Jit- and vmap-able.
    """
    global_mean = _check_global_mean(global_mean)
    h, y, k = _check_inputs(features, labels, num_classes, allow_empty=True)
    rtol = _check_rtol(rtol, k, int(h.shape[1]), h.dtype)
    return _separation_fuzziness(h, y, k, global_mean, rtol)


def _trace_ratio_of(stats: _ClassStats, global_mean: str) -> Array:
    a = _between_factor(stats, global_mean)
    tr_b = jnp.sum(a**2)
    tr_w = jnp.sum(stats.centred**2) / stats.centred.shape[0]
    ratio = jnp.where(tr_b > 0, tr_w / jnp.where(tr_b > 0, tr_b, 1), jnp.inf)
    return _nan_unless(stats.finite, ratio)


@eqx.filter_jit
def _trace_ratio(h, y, num_classes, global_mean):
    return _trace_ratio_of(_class_stats(h, y, num_classes, global_mean), global_mean)


def trace_ratio(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    *,
    global_mean: str = "samples",
) -> Float[Array, ""]:
    """The trace ratio D_tr = Tr(Sigma_W) / Tr(Sigma_B), in O(N p):

        Tr(Sigma_W) = (1/N) sum_i |h_i - mu_{y_i}|^2,
        Tr(Sigma_B) = (1/N) sum_k n_k |mu_k - mu_G|^2.

    (The spring-block authors' code logs log D_tr as its layer-wise separation measure.)

    **Arguments:** as for `separation_fuzziness` (no rank tolerance is needed).

    **Returns:** the scalar D_tr; inf when Tr(Sigma_B) = 0 (K = 1 or all class means
    equal); empty classes contribute nothing; NaN under `jit` for non-finite features
    (ValueError on concrete input). Jit- and vmap-able.
    """
    global_mean = _check_global_mean(global_mean)
    h, y, k = _check_inputs(features, labels, num_classes, allow_empty=True)
    return _trace_ratio(h, y, k, global_mean)


class SeparationLaw(NamedTuple):
    """The fit of log D_l = log D_0 + l log rho (see `separation_law`)."""

    correlation: Float[Array, ""]
    """Pearson correlation of (l, log D_l); -1 for an exact geometric decay."""
    rho: Float[Array, ""]
    """The fitted decay ratio per layer, exp(slope)."""
    log_d0: Float[Array, ""]
    """The fitted intercept, log D_0."""


def separation_law(fuzziness: Float[Array, " L+1"]) -> SeparationLaw:
    """The law of data separation (He & Su 2023): log D_l is close to linear in the layer
    index l = 0..L. Given D_0..D_L (e.g. `separation_fuzziness` of each layer's features),
    returns

    - `correlation`: the Pearson correlation of (l, log D_l),
      cov(l, log D) / (std(l) std(log D)); -1 for D_l = D_0 rho^l with rho < 1, NaN when
      log D_l is constant;
    - `rho`, `log_d0`: the least-squares fit log D_l = log_d0 + l log rho, i.e.
      log rho = cov(l, log D) / var(l).

    **Arguments:** `fuzziness`: shape (L + 1,), L >= 1, all D_l > 0 and finite
    (ValueError naming the first bad index on concrete input; NaN results under `jit`).

    Jit- and vmap-able.
    """
    d = as_float_array("fuzziness", fuzziness)
    if d.ndim != 1 or d.shape[0] < 2:
        raise ValueError(
            f"fuzziness must be a 1-D array D_0..D_L with at least 2 values, got shape "
            f"{tuple(d.shape)}"
        )
    if is_concrete(d):
        a = np.asarray(d)
        bad = ~(np.isfinite(a) & (a > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"fuzziness must be positive and finite, got fuzziness[{i}] = {a[i]}")
    return _separation_law(d)


@jax.jit
def _separation_law(d):
    log_d = jnp.log(d)
    layer = jnp.arange(d.shape[0], dtype=d.dtype)
    dl = layer - jnp.mean(layer)
    dy = log_d - jnp.mean(log_d)
    sxy, sxx, syy = jnp.sum(dl * dy), jnp.sum(dl**2), jnp.sum(dy**2)
    slope = sxy / sxx
    corr = sxy / jnp.sqrt(sxx * syy)
    return SeparationLaw(
        correlation=corr,
        rho=jnp.exp(slope),
        log_d0=jnp.mean(log_d) - slope * jnp.mean(layer),
    )
