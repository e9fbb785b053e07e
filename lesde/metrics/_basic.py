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
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def margins(logits: Float[Array, "N K"], labels: Int[Array, " N"]) -> Float[Array, " N"]:
    """m_i = z_{i, y_i} - max_{k != y_i} z_{i, k}; all m_i > 0 means every sample is
    classified correctly by the head (a sufficient condition for linear separability).
    log(1 + e^{-m_i}) <= CE_i <= log(1 + (K-1) e^{-m_i})."""
    K = logits.shape[-1]
    z_y = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, K, dtype=bool), -jnp.inf, logits)
    return z_y - jnp.max(others, axis=-1)


def observables(t, x: Float[Array, "N p"], model) -> dict[str, Array]:
    """Reductions of an LE-SDE state for saving inside a solve (`simulate(fn=...)`):
    training loss (mean CE of the logits W X_i), accuracy, minimum margin, class means
    and the mean within-class squared distance to the class mean (trace of the
    within-class covariance)."""
    logits = model.logits(x)
    labels = model.classes.labels
    means = model.classes.mean(x)
    within = jnp.mean(jnp.sum((x - model.classes.gather(means)) ** 2, axis=-1))
    return {
        "loss": cross_entropy(logits, labels),
        "accuracy": accuracy(logits, labels),
        "min_margin": jnp.min(margins(logits, labels)),
        "class_means": means,
        "within_class_trace": within,
    }
