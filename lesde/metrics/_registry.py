"""Metrics by name, for sweeps and configs: each maps (t, X, model) to a scalar and
can run inside a solve (`simulate(fn=...)`)."""

from collections.abc import Callable

import jax.numpy as jnp

from ._basic import accuracy, cross_entropy, margins


def _loss(t, x, model):
    return cross_entropy(model.logits(x), model.classes.labels)


def _accuracy(t, x, model):
    return accuracy(model.logits(x), model.classes.labels)


def _min_margin(t, x, model):
    return jnp.min(margins(model.logits(x), model.classes.labels))


def _within_class_trace(t, x, model):
    c = model.classes
    return jnp.mean(jnp.sum((x - c.gather(c.mean(x))) ** 2, axis=-1))


def _between_class_trace(t, x, model):
    c = model.classes
    means = c.mean(x)
    centre = jnp.mean(x, axis=0)
    return jnp.sum(c.counts[:, None] * (means - centre) ** 2) / x.shape[0]


def _ncm_error(t, x, model):
    """Nearest-class-mean training error: 0 implies the features are linearly separable."""
    c = model.classes
    x = x - jnp.mean(x, axis=0)  # translation-invariant; keeps squares in range
    means = c.mean(x)
    d2 = jnp.sum(x**2, axis=-1, keepdims=True) - 2 * x @ means.T + jnp.sum(means**2, axis=-1)
    return jnp.mean(jnp.argmin(d2, axis=-1) != c.labels)


METRICS: dict[str, Callable] = {
    "loss": _loss,
    "accuracy": _accuracy,
    "min_margin": _min_margin,
    "within_class_trace": _within_class_trace,
    "between_class_trace": _between_class_trace,
    "ncm_error": _ncm_error,
}
"""Name -> metric(t, X, model) for LE-SDE states: training loss and accuracy of the
logits W X_i, minimum logit margin, Tr Sigma_W, Tr Sigma_B (global mean = sample mean),
and the nearest-class-mean error."""


def metrics_fn(names: list[str]) -> Callable:
    """fn(t, X, model) -> {name: value} for `simulate(fn=...)` and `sweep(fn=...)`."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}")
    chosen = {n: METRICS[n] for n in names}

    def fn(t, x, model):
        return {n: f(t, x, model) for n, f in chosen.items()}

    return fn
