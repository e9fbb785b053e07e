"""Neural-collapse measurements NC1-NC4.

Reference: V. Papyan, X. Y. Han and D. L. Donoho, "Prevalence of neural collapse during
the terminal phase of deep learning training", PNAS 2020 (and the authors' published
code). Published implementations disagree on small points; the choices here:

- NC1 = Tr(Sigma_W Sigma_B^+) / K, with the 1/K of the paper, i.e. the separation
  fuzziness D divided by K. Sigma_B is weighted by n_k / N (Papyan et al. use the
  unweighted (1/K) sum_k; identical for balanced classes).
- NC2 norms and cosines are of the centred class means mu_k - mu_G, and of the head rows
  w_k as given (not centred, as in the authors' code). Standard deviations are population
  ones (ddof = 0); the authors' torch.std is unbiased: multiply by sqrt(n / (n - 1)) with
  n = K for equinorm and n = K (K - 1) for equiangularity to convert.
- NC3 is the squared Frobenius distance, as in the paper's figures.
- mu_G is the sample mean by default (`global_mean="samples"`); see `lesde.metrics.scatter`.

Metrics that average over classes need every class to have a sample: on concrete labels
an empty class raises a ValueError naming it; under `jit` the result is NaN. Non-finite
features raise a ValueError naming the first bad sample and feature on concrete input and
give NaN under `jit`.
"""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import as_float_array, check_finite
from ._head import _check_bias, _check_head, _logits
from ._scatter import (
    _check_global_mean,
    _check_inputs,
    _check_min_classes,
    _class_stats,
    _ClassStats,
    _nan_unless,
)
from ._separation import _check_rtol, _fuzziness


# --------------------------------------------------------------- rows of a K x p matrix


def _norms(v: Array) -> Array:
    return jnp.sqrt(jnp.sum(v**2, axis=-1))


def _equinorm(v: Array) -> Array:
    n = _norms(v)
    return jnp.std(n) / jnp.mean(n)


def _off_diagonal_cosines(v: Array) -> Array:
    """cos(v_k, v_k') for the K (K - 1) ordered pairs k != k'."""
    u = v / _norms(v)[:, None]
    i, j = np.nonzero(~np.eye(v.shape[0], dtype=bool))  # static: K is known when tracing
    return (u @ u.T)[i, j]


def _equiangularity(v: Array) -> Array:
    return jnp.std(_off_diagonal_cosines(v))


def _max_angle(v: Array) -> Array:
    k = v.shape[0]
    return jnp.mean(jnp.abs(_off_diagonal_cosines(v) + 1 / (k - 1)))


def _check_vectors(vectors: Any, minimum: int, what: str) -> Array:
    v = as_float_array("vectors", vectors)
    if v.ndim != 2:
        raise ValueError(f"vectors must be a 2-D (K, p) array, got shape {tuple(v.shape)}")
    _check_min_classes(int(v.shape[0]), minimum, what)
    check_finite("vectors", v)
    return v


def equinorm(vectors: Float[Array, "K p"]) -> Float[Array, ""]:
    """std_k |v_k| / mean_k |v_k| over the rows v_k (population std): NC2's equinorm of
    the rows as given, e.g. of a head W (`equinorm(W)`). 0 iff all rows have the same
    length; NaN if all rows are zero. Jit- and vmap-able."""
    return _equinorm(_check_vectors(vectors, 1, "equinorm"))


def equiangularity(vectors: Float[Array, "K p"]) -> Float[Array, ""]:
    """std over k != k' of cos(v_k, v_k') (population std over the K (K-1) ordered pairs;
    the same over unordered pairs): NC2's equiangularity of the rows as given, e.g. of a
    head W. Needs K >= 2; NaN if a row is zero. Jit- and vmap-able."""
    return _equiangularity(_check_vectors(vectors, 2, "equiangularity"))


def max_angle(vectors: Float[Array, "K p"]) -> Float[Array, ""]:
    """mean over k != k' of |cos(v_k, v_k') + 1/(K-1)|: 0 iff the rows have the maximal
    equal angles of a simplex (cos = -1/(K-1)). Needs K >= 2; NaN if a row is zero.
    Jit- and vmap-able."""
    return _max_angle(_check_vectors(vectors, 2, "max_angle"))


# ------------------------------------------------------------------------- from features


def _all_present(s: _ClassStats) -> Array:
    return jnp.all(s.counts > 0) & s.finite


def _nc4(s: _ClassStats, h: Array, w: Array, b: Array | None) -> Array:
    m = s.shifted_means  # both relative to the sample mean
    nearest = jnp.argmax(2 * s.shifted @ m.T - jnp.sum(m**2, axis=-1), axis=-1)  # argmin |h - mu_k|
    head = jnp.argmax(_logits(h, w, b), axis=-1)
    return jnp.mean((head != nearest).astype(h.dtype))


def _nc3(s: _ClassStats, w: Array) -> Array:
    m = s.centred_means
    wn = w / jnp.sqrt(jnp.sum(w**2))
    mn = m / jnp.sqrt(jnp.sum(m**2))
    return jnp.sum((wn - mn) ** 2)  # rows here = columns of W^T and of Mtilde


@eqx.filter_jit
def _collapse(h, y, num_classes, global_mean, rtol, w, b):
    s = _class_stats(h, y, num_classes, global_mean)
    ok = _all_present(s)
    out = {"nc1": _fuzziness(s, global_mean, rtol) / num_classes}
    if num_classes >= 2:
        m = s.centred_means
        out["nc2_equinorm"] = _equinorm(m)
        out["nc2_equiangularity"] = _equiangularity(m)
        out["nc2_max_angle"] = _max_angle(m)
        if w is not None:
            out["nc2_equinorm_head"] = _equinorm(w)
            out["nc2_equiangularity_head"] = _equiangularity(w)
            out["nc2_max_angle_head"] = _max_angle(w)
            out["nc3"] = _nc3(s, w)
    if w is not None:
        out["nc4"] = _nc4(s, h, w, b)
    return {k: _nan_unless(ok, v.astype(h.dtype)) for k, v in out.items()}


def _prepare(features, labels, num_classes, global_mean, minimum=1, what=""):
    global_mean = _check_global_mean(global_mean)
    h, y, k = _check_inputs(features, labels, num_classes, allow_empty=False)
    if minimum > 1:
        _check_min_classes(k, minimum, what)
    return h, y, k, global_mean


def collapse(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    head: Float[Array, "K p"] | None = None,
    bias: Float[Array, " K"] | None = None,
    *,
    global_mean: str = "samples",
    rtol: Any = None,
) -> dict[str, Float[Array, ""]]:
    """All neural-collapse measurements from one pass over the class statistics:

    - "nc1": `nc1`;
    - "nc2_equinorm", "nc2_equiangularity", "nc2_max_angle": of the centred class means
      (K >= 2 only);
    - with a head W (K x p; logits = W h + b): "nc2_equinorm_head",
      "nc2_equiangularity_head", "nc2_max_angle_head" of the rows of W and "nc3"
      (K >= 2 only), and "nc4".

    Arguments and conventions as for the single metrics (see the module docstring).
    Suitable as `fn` of `lesde.simulate`, e.g.
    `fn=lambda t, x, model: lesde.metrics.collapse(x, model.classes.labels, model.num_classes)`.
    """
    h, y, k, global_mean = _prepare(features, labels, num_classes, global_mean)
    p = int(h.shape[1])
    if head is None and bias is not None:
        raise ValueError("bias was given without a head")
    w = None if head is None else _check_head(head, k, p)
    b = _check_bias(bias, k)
    return _collapse(h, y, k, global_mean, _check_rtol(rtol, k, p, h.dtype), w, b)


def nc1(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    *,
    global_mean: str = "samples",
    rtol: Any = None,
) -> Float[Array, ""]:
    """NC1 = Tr(Sigma_W Sigma_B^+) / K (Papyan et al. 2020, with the paper's 1/K):
    within-class variability relative to the between-class one; -> 0 under collapse.

    Equal to `separation_fuzziness(...) / K`, computed the same way (thin SVD of the
    K x p factor of Sigma_B, O(N p K), no p x p matrix); `rtol` is its relative rank
    tolerance (default max(K, p) * eps). Sigma_B is weighted by n_k / N; for balanced
    classes this equals Papyan et al.'s (1/K) sum_k (mu_k - mu_G)(mu_k - mu_G)^T.

    Documented values: inf for K = 1 or coinciding class means (no between-class
    scatter); empty classes raise a ValueError on concrete labels, NaN under `jit`.
    Jit- and vmap-able (K static).
    """
    h, y, k, global_mean = _prepare(features, labels, num_classes, global_mean)
    return _nc1(h, y, k, global_mean, _check_rtol(rtol, k, int(h.shape[1]), h.dtype))


@eqx.filter_jit
def _nc1(h, y, num_classes, global_mean, rtol):
    s = _class_stats(h, y, num_classes, global_mean)
    return _nan_unless(_all_present(s), _fuzziness(s, global_mean, rtol) / num_classes)


@eqx.filter_jit
def _nc2(h, y, num_classes, global_mean, which):
    s = _class_stats(h, y, num_classes, global_mean)
    return _nan_unless(_all_present(s), which(s.centred_means))


def nc2_equinorm(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    *,
    global_mean: str = "samples",
) -> Float[Array, ""]:
    """NC2 equinorm: std_k |mu_k - mu_G| / mean_k |mu_k - mu_G| (population std); 0 for
    a simplex ETF. For the head rows use `equinorm(W)`. Needs K >= 2. Jit- and
    vmap-able (K static)."""
    h, y, k, gm = _prepare(features, labels, num_classes, global_mean, 2, "nc2_equinorm")
    return _nc2(h, y, k, gm, _equinorm)


def nc2_equiangularity(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    *,
    global_mean: str = "samples",
) -> Float[Array, ""]:
    """NC2 equiangularity: std over k != k' of cos(mu_k - mu_G, mu_k' - mu_G) (population
    std); 0 for a simplex ETF. For the head rows use `equiangularity(W)`. Needs K >= 2.
    Jit- and vmap-able (K static)."""
    h, y, k, gm = _prepare(features, labels, num_classes, global_mean, 2, "nc2_equiangularity")
    return _nc2(h, y, k, gm, _equiangularity)


def nc2_max_angle(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    *,
    global_mean: str = "samples",
) -> Float[Array, ""]:
    """NC2 max-angle: mean over k != k' of |cos(mu_k - mu_G, mu_k' - mu_G) + 1/(K-1)|;
    0 for a simplex ETF. For the head rows use `max_angle(W)`. Needs K >= 2. Jit- and
    vmap-able (K static)."""
    h, y, k, gm = _prepare(features, labels, num_classes, global_mean, 2, "nc2_max_angle")
    return _nc2(h, y, k, gm, _max_angle)


def nc3(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    head: Float[Array, "K p"],
    *,
    global_mean: str = "samples",
) -> Float[Array, ""]:
    """NC3 self-duality: | W^T / |W|_F - Mtilde / |Mtilde|_F |_F^2 (squared, as in
    Papyan et al.'s figures), with Mtilde the p x K matrix whose columns are the centred
    class means mu_k - mu_G and W the K x p head (rows w_k: logits = W h + b), so W^T is
    p x K too. In [0, 4]; 0 iff the head rows are proportional to the centred class
    means. Needs K >= 2. Jit- and vmap-able (K static)."""
    h, y, k, gm = _prepare(features, labels, num_classes, global_mean, 2, "nc3")
    w = _check_head(head, k, int(h.shape[1]))
    return _nc3_jit(h, y, k, gm, w)


@eqx.filter_jit
def _nc3_jit(h, y, num_classes, global_mean, w):
    s = _class_stats(h, y, num_classes, global_mean)
    return _nan_unless(_all_present(s), _nc3(s, w))


def nc4(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    num_classes: int,
    head: Float[Array, "K p"],
    bias: Float[Array, " K"] | None = None,
) -> Float[Array, ""]:
    """NC4: the fraction of samples i with argmax_k (W h_i + b)_k != argmin_k |h_i - mu_k|,
    i.e. where the head disagrees with the nearest-class-mean classifier (ties go to the
    lowest index in both). `head` W is K x p, `bias` b (K,) optional. 0 under collapse.
    (The labels define the class means; the predictions do not use them.) Jit- and
    vmap-able (K static)."""
    h, y, k, _ = _prepare(features, labels, num_classes, "samples")
    w = _check_head(head, k, int(h.shape[1]))
    b = _check_bias(bias, k)
    return _nc4_jit(h, y, k, w, b)


@eqx.filter_jit
def _nc4_jit(h, y, num_classes, w, b):
    s = _class_stats(h, y, num_classes, "samples")
    return _nan_unless(_all_present(s), _nc4(s, h, w, b))
