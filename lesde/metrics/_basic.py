"""Training loss, accuracy and margins of features read as logits."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def cross_entropy(logits: Float[Array, "N K"], labels: Int[Array, " N"]) -> Float[Array, ""]:
    """Mean softmax cross-entropy (1/N) sum_i [logsumexp(z_i) - z_{i, y_i}]."""
    z_y = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - z_y)


def accuracy(logits: Float[Array, "N K"], labels: Int[Array, " N"]) -> Float[Array, ""]:
    """Fraction of samples with argmax_k z_ik = y_i."""
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))


def margins(logits: Float[Array, "N K"], labels: Int[Array, " N"]) -> Float[Array, " N"]:
    """m_i = z_{i, y_i} - max_{k != y_i} z_{i, k}; all m_i > 0 means every sample is
    classified correctly by the head (a sufficient condition for linear separability).
    log(1 + e^{-m_i}) <= CE_i <= log(1 + (K-1) e^{-m_i})."""
    K = logits.shape[-1]
    z_y = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, K, dtype=bool), -jnp.inf, logits)
    return z_y - jnp.max(others, axis=-1)

