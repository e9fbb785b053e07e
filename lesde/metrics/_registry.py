"""Metrics by name, for sweeps and configs: each maps (t, X, model) to a scalar and
can run inside a solve (`simulate(fn=...)`)."""

from collections.abc import Callable

import jax.numpy as jnp

from ._basic import accuracy, cross_entropy
from ._collapse import nc1
from ._head import min_margin
from ._separability import ncm_error
from ._separation import separation_fuzziness, trace_ratio


def _loss(t, x, model):
    return cross_entropy(model.logits(x), model.classes.labels)


def _accuracy(t, x, model):
    return accuracy(model.logits(x), model.classes.labels)


def _min_margin(t, x, model):
    return min_margin(model.logits(x), model.classes.labels)


def _within_class_trace(t, x, model):
    c = model.classes
    return jnp.mean(jnp.sum((x - c.gather(c.mean(x))) ** 2, axis=-1))


def _between_class_trace(t, x, model):
    c = model.classes
    means = c.mean(x)
    centre = jnp.mean(x, axis=0)
    return jnp.sum(c.counts[:, None] * (means - centre) ** 2) / x.shape[0]


def _per_class(metric):
    def fn(t, x, model):
        return metric(x, model.classes.labels, model.num_classes)

    return fn


METRICS: dict[str, Callable] = {
    "loss": _loss,
    "accuracy": _accuracy,
    "min_margin": _min_margin,
    "within_class_trace": _within_class_trace,
    "between_class_trace": _between_class_trace,
    "ncm_error": _per_class(ncm_error),
    "nc1": _per_class(nc1),
    "separation_fuzziness": _per_class(separation_fuzziness),
    "trace_ratio": _per_class(trace_ratio),
}
"""Name -> metric(t, X, model) for LE-SDE states: training loss and accuracy of the
logits W X_i, minimum logit margin, Tr Sigma_W, Tr Sigma_B (global mean = sample mean),
the nearest-class-mean error (0 implies linear separability), NC1, He-Su separation
fuzziness D and the trace ratio (see their functions for the definitions)."""


def metrics_fn(names: list[str]) -> Callable:
    """fn(t, X, model) -> {name: value} for `simulate(fn=...)` and `sweep(fn=...)`."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}")
    chosen = {n: METRICS[n] for n in names}

    def fn(t, x, model):
        return {n: f(t, x, model) for n, f in chosen.items()}

    return fn


def observables(t, x, model) -> dict:
    """Reductions of an LE-SDE state for saving inside a solve (`simulate(fn=...)`):
    training loss (mean CE of the logits W X_i), accuracy, minimum margin, the mean
    within-class squared distance to the class mean (Tr Sigma_W) and the class means."""
    names = ("loss", "accuracy", "min_margin", "within_class_trace")
    return {**{n: METRICS[n](t, x, model) for n in names}, "class_means": model.classes.mean(x)}
