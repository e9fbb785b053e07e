"""Metrics by name, for sweeps and configs: each maps (t, X, model) to a scalar (or a
small vector, see `METRIC_DIMS`) and can run inside a solve (`simulate(fn=...)`).
`METRICS` are for LE-SDE states, `SPRING_METRICS` for spring-block states."""

from collections.abc import Callable

import jax.numpy as jnp

from ._basic import accuracy, cross_entropy
from ._collapse import nc1
from ._head import min_margin
from ._load_curve import load_curve
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


def _load_curve_stat(field):
    def fn(t, x, model):
        return getattr(load_curve(model.gains(x)), field)

    return fn


SPRING_METRICS: dict[str, Callable] = {
    "gains": lambda t, x, model: model.gains(x),
    "elongations": lambda t, x, model: model.chain.elongations(model.positions(x)),
    "curvature": _load_curve_stat("curvature"),
    "nonuniformity": _load_curve_stat("nonuniformity"),
    # as a float: diffrax fills its save buffers with inf, which has no integer value
    "shape": lambda t, x, model: _load_curve_stat("shape_code")(t, x, model).astype(x.dtype),
    "extension": lambda t, x, model: model.positions(x)[-1],
}
"""Name -> metric(t, X, model) for spring-block states (`SpringBlockMap`,
`SpringBlockSDE`): the gains d_1..d_L (spring elongations, a vector over 'block'),
all elongations incl. the target spring (a vector over 'spring'), the curvature,
non-uniformity and shape code (-1 concave, 0 linear, 1 convex) of the normalised load
curve (see `lesde.metrics.load_curve`), and the extension x_L of the chain."""

METRIC_DIMS: dict[str, tuple[str, ...]] = {"gains": ("block",), "elongations": ("spring",)}
"""Names of the trailing dimensions of the metrics that are vectors."""


METRIC_ATTRS: dict[str, dict] = {
    "loss": {"long_name": "training loss (cross-entropy)"},
    "accuracy": {"long_name": "training accuracy"},
    "min_margin": {"long_name": "minimum logit margin"},
    "within_class_trace": {"long_name": "within-class trace Tr Σ_W"},
    "between_class_trace": {"long_name": "between-class trace Tr Σ_B"},
    "ncm_error": {"long_name": "NCM error (nearest class mean)"},
    "nc1": {"long_name": "NC1 (within-class collapse)"},
    "separation_fuzziness": {"long_name": "separation fuzziness D"},
    "trace_ratio": {"long_name": "trace ratio Tr Σ_W / Tr Σ_B"},
    "gains": {"long_name": "gain d_l (spring elongation)"},
    "elongations": {"long_name": "spring elongation"},
    "curvature": {"long_name": "load-curve curvature"},
    "nonuniformity": {"long_name": "load-curve non-uniformity"},
    "shape": {
        "long_name": "load-curve shape",
        "flag_values": [-1.0, 0.0, 1.0],
        "flag_meanings": "concave linear convex",
    },
    "extension": {"long_name": "chain extension x_L"},
}
"""Name -> the CF attributes of a metric's variable in result files and the labels of
figures: `long_name` (human-readable) and `units` (`metric_attrs` adds "1",
dimensionless, where a metric has none), and `flag_values` / `flag_meanings` for a
metric whose values are categories."""


def metric_attrs(name: str) -> dict:
    """The CF attributes of metric `name` (`METRIC_ATTRS`): at least `long_name` (the name
    with blanks for an unregistered metric) and `units` ("1" unless registered)."""
    attrs = {"long_name": name.replace("_", " "), "units": "1", **METRIC_ATTRS.get(name, {})}
    return attrs


_FAMILIES = {"le_sde": METRICS, "spring": SPRING_METRICS}


def register_metric(
    name: str,
    fn: Callable,
    *,
    family: str = "le_sde",
    dims: tuple[str, ...] = (),
    long_name: str | None = None,
    units: str = "1",
) -> Callable:
    """Register fn(t, X, model) -> value under `name`, so that sweeps (`sweep.metrics`
    of a config, `metrics_fn`), `lesde sweep`'s tables and phase diagrams and
    `lesde plot` use it by name. `family`: 'le_sde' (`METRICS`: X is an LE-SDE state,
    (N, p)) or 'spring' (`SPRING_METRICS`: spring-block states). The value is a scalar,
    or a small vector whose trailing dimensions `dims` names (`METRIC_DIMS`). fn runs
    inside the solve under `jit`/`vmap`: jax.numpy only. `long_name` and `units` (CF
    units, "1" for a dimensionless number) label the metric in result files and figures
    (`METRIC_ATTRS`; default long name: the name with blanks). Returns fn.

    Example (the mean distance of the class means from the origin):

        import jax.numpy as jnp
        from lesde.metrics import register_metric

        def class_mean_norm(t, x, model):
            return jnp.mean(jnp.linalg.norm(model.classes.mean(x), axis=-1))

        register_metric("class_mean_norm", class_mean_norm, long_name="mean norm of the class means")
    """
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {sorted(_FAMILIES)}, got {family!r}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a metric name must be an identifier, got {name!r}")
    if not callable(fn):
        raise ValueError(f"metric {name!r} must be a callable fn(t, X, model), got {fn!r}")
    registry = _FAMILIES[family]
    if name in registry and registry[name] is not fn:
        raise ValueError(f"a {family} metric named {name!r} is registered already")
    if not isinstance(units, str) or not units:
        raise ValueError(f"units of metric {name!r} must be a non-empty string (\"1\": dimensionless), got {units!r}")
    registry[name] = fn
    if dims:
        METRIC_DIMS[name] = tuple(dims)
    METRIC_ATTRS[name] = {"long_name": long_name or name.replace("_", " "), "units": units}
    return fn


def metrics_fn(names: list[str], registry: dict[str, Callable] | None = None) -> Callable:
    """fn(t, X, model) -> {name: value} for `simulate(fn=...)` and `sweep(fn=...)`, from
    `registry` (default `METRICS`; `SPRING_METRICS` for spring-block models)."""
    registry = METRICS if registry is None else registry
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(registry)}")
    chosen = {n: registry[n] for n in names}

    def fn(t, x, model):
        return {n: f(t, x, model) for n, f in chosen.items()}

    return fn


def observables(t, x, model) -> dict:
    """Reductions of an LE-SDE state for saving inside a solve (`simulate(fn=...)`):
    training loss (mean CE of the logits W X_i), accuracy, minimum margin, the mean
    within-class squared distance to the class mean (Tr Sigma_W) and the class means."""
    names = ("loss", "accuracy", "min_margin", "within_class_trace")
    return {**{n: METRICS[n](t, x, model) for n in names}, "class_means": model.classes.mean(x)}
