"""Measurements of features: training loss, accuracy and margins (`_basic`), class
scatter (`_scatter`), neural collapse NC1-NC4 (`_collapse`), He-Su separation fuzziness
and the law of data separation (`_separation`), linear separability (`_separability`)
load-curve statistics (`_load_curve`), and the local elasticity of a real network from
its empirical neural tangent kernel (`_ntk`).

Conventions: features H are (N, p), labels (N,) in 0..K-1 (may be traced), the number
of classes K is a static Python int, a head W is (K, p) with logits W h + b. Everything
but the LP-based tests (`linearly_separable`, `separation_margin`) and the kernel
measurements of `_ntk` (jit-able, not meant for vmap) is jit- and vmap-able.
"""

from ._basic import (
    accuracy as accuracy,
    cross_entropy as cross_entropy,
    margins as margins,
)
from ._collapse import (
    collapse as collapse,
    equiangularity as equiangularity,
    equinorm as equinorm,
    max_angle as max_angle,
    nc1 as nc1,
    nc2_equiangularity as nc2_equiangularity,
    nc2_equinorm as nc2_equinorm,
    nc2_max_angle as nc2_max_angle,
    nc3 as nc3,
    nc4 as nc4,
)
from ._head import head_logits as head_logits, min_margin as min_margin
from ._load_curve import (
    chain_positions as chain_positions,
    load_curve as load_curve,
    LoadCurve as LoadCurve,
    position_gains as position_gains,
    separation_gains as separation_gains,
    SHAPES as SHAPES,
)
from ._ntk import (
    ntk_impact as ntk_impact,
    NTKImpact as NTKImpact,
    relative_similarity as relative_similarity,
    RelativeSimilarity as RelativeSimilarity,
    tangent_kernel as tangent_kernel,
)
from ._scatter import (
    class_means as class_means,
    GLOBAL_MEANS as GLOBAL_MEANS,
    Scatter as Scatter,
    scatter as scatter,
)
from ._separability import (
    linearly_separable as linearly_separable,
    ncm_error as ncm_error,
    separation_margin as separation_margin,
)
from ._separation import (
    separation_fuzziness as separation_fuzziness,
    separation_law as separation_law,
    SeparationLaw as SeparationLaw,
    trace_ratio as trace_ratio,
)
from ._registry import (
    METRIC_ATTRS as METRIC_ATTRS,
    metric_attrs as metric_attrs,
    METRIC_DIMS as METRIC_DIMS,
    METRICS as METRICS,
    metrics_fn as metrics_fn,
    register_metric as register_metric,
    observables as observables,
    SPRING_METRICS as SPRING_METRICS,
)
