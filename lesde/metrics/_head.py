"""Logits of features through a linear head, and the minimum logit margin."""

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._checks import as_float_array, check_finite, check_labels, check_positive_int
from ._basic import margins
from ._scatter import _check_features


def _check_head(head: Any, num_classes: int, dim: int) -> jax.Array:
    """W of shape (K, p): logits = features @ W.T (+ b)."""
    w = as_float_array("head", head)
    if tuple(w.shape) != (num_classes, dim):
        raise ValueError(
            f"head must have shape (num_classes, p) = ({num_classes}, {dim}) (logits = "
            f"features @ head.T + bias), got shape {tuple(w.shape)}"
        )
    check_finite("head", w)
    return w


def _check_bias(bias: Any, num_classes: int) -> jax.Array | None:
    if bias is None:
        return None
    b = as_float_array("bias", bias)
    if tuple(b.shape) != (num_classes,):
        raise ValueError(
            f"bias must have shape (num_classes,) = ({num_classes},), got shape {tuple(b.shape)}"
        )
    check_finite("bias", b)
    return b


def _logits(h: Array, w: Array, b: Array | None) -> Array:
    z = h @ w.T.astype(h.dtype)
    return z if b is None else z + b.astype(h.dtype)


def head_logits(
    features: Float[Array, "N p"], head: Float[Array, "K p"], bias: Float[Array, " K"] | None = None
) -> Float[Array, "N K"]:
    """Logits z_i = W h_i + b of features through a linear head W (K x p, one row per
    class) and optional bias b (K,). Feed them to `cross_entropy`, `accuracy`, `margins`
    or `min_margin` for the training loss, accuracy and margins through the head, e.g.
    `cross_entropy(head_logits(H, W, b), labels)`. Jit- and vmap-able."""
    h = _check_features(features)
    w = as_float_array("head", head)
    if w.ndim != 2:
        raise ValueError(f"head must be a 2-D (K, p) matrix, got shape {tuple(w.shape)}")
    w = _check_head(w, int(w.shape[0]), int(h.shape[1]))
    return _logits(h, w, _check_bias(bias, int(w.shape[0])))


def min_margin(logits: Float[Array, "N K"], labels: Int[Array, " N"]) -> Float[Array, ""]:
    """min_i m_i, the smallest logit margin m_i = z_{i, y_i} - max_{k != y_i} z_{i, k}
    (see `margins`). > 0 iff the head classifies every sample correctly, which implies
    linear separability; since log(1 + e^{-m_i}) <= CE_i <= log(1 + (K-1) e^{-m_i}), the
    training loss tends to 0 iff the minimum margin tends to infinity. inf for K = 1.
    Jit- and vmap-able; through a head: `min_margin(head_logits(H, W, b), labels)`."""
    z = _check_features(logits, "logits")
    k = check_positive_int("num_classes (logits.shape[1])", int(z.shape[1]))
    y = jnp.asarray(check_labels("labels", labels, int(z.shape[0]), k, match="logits"),
                    dtype=jnp.int32)
    return jnp.min(margins(z, y))
