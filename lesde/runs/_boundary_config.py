"""The config of `lesde boundary`: a model, the boundary to locate and how to solve.

    model: {...}                  # as for `lesde sweep`
    boundary:
      outer:                      # axes as `sweep.axes` (may be left out: one cell)
        - noise.independent: {logspace: [-1.5, -0.5, 2]}
      inner:                      # the segment searched along: {parameter: [start, stop]}
        impact.alpha: [-0.0333, 0.1667]
        impact.beta: [0.0167, -0.0833]
      derived: {...}              # as `sweep.derived`, reading outer and inner names
      order: {metric: ncm_error, threshold: 0.3333}    # reduce: mean | fraction
      tol: 0.002                  # width of the final brackets, inner coordinate
      seeds: 16
      horizons: [50.0, 100.0, 200.0, 400.0]            # optional
      width: {method: logistic}   # or {method: thresholds, thresholds: [t1, t2]}
    solve: {t1: 400.0, dt: 0.5, solver: euler, seed: 0}

The names are those of sweep configs (the spec's own parameters, paths of the model,
variables that derived parameters read); the inner coordinate is alpha - beta when the
inner axis moves exactly `impact.alpha` and `impact.beta`, else its first parameter.
Everything a sweep config refuses is refused here too, with the key named under
`boundary.` (the check runs the sweep of the outer axes x the first round's probes of
the inner axis: every model of the first round is checked before anything runs).
"""

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator, PrivateAttr

from ..boundary import InnerAxis, OrderParameter, REDUCTIONS, WIDTH_METHODS
from ..metrics import METRIC_DIMS
from ._config import (
    _SolveBase, _Strict, AnyModelSpec, AxisValues, ConfigError, Count, DerivedSpec, is_spring,
    SweepConfig, SweepSpec,
)


class OrderSpec(_Strict):
    """The order parameter: a registered scalar metric, its reduction over the seeds of
    a probe (`mean`, or the `fraction` of seeds with the metric <= `below` or >=
    `above`) and the threshold whose crossing is the boundary
    (`lesde.boundary.OrderParameter`)."""

    metric: str
    threshold: float
    reduce: Literal[REDUCTIONS] = "mean"  # type: ignore[valid-type]
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _valid(self):
        self.parameter()
        return self

    def parameter(self) -> OrderParameter:
        try:
            return OrderParameter(self.metric, self.threshold, self.reduce, self.below, self.above)
        except ValueError as e:
            raise ValueError(str(e).removeprefix("order parameter: ")) from None


class WidthSpec(_Strict):
    """How the transition's width is measured (`lesde.boundary.transition_width`): a
    logistic fit to the probes, or the distance between the crossings of two
    thresholds."""

    method: Literal[WIDTH_METHODS] = "logistic"  # type: ignore[valid-type]
    thresholds: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None

    @model_validator(mode="after")
    def _thresholds(self):
        if self.method == "thresholds" and (self.thresholds is None or self.thresholds[0] == self.thresholds[1]):
            raise ValueError(f"method 'thresholds' needs two different thresholds, got {self.thresholds}")
        if self.method == "logistic" and self.thresholds is not None:
            raise ValueError("thresholds are only for method 'thresholds'")
        return self


class BoundarySpec(_Strict):
    """The boundary to locate: outer axes, the inner segment, derived parameters, the
    order parameter, the tolerance (> 0, in the inner coordinate), seeds per probe, the
    confidence level in (0, 1), interior probes per round (`points`, 1 = bisection) and
    probes of the first round (`initial`, >= 2), horizons (save times, each located on
    its own), the chunk size, and how the width is measured."""

    outer: list[dict[str, AxisValues]] = []
    inner: Annotated[dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]], Field(min_length=1)]
    derived: dict[str, DerivedSpec] | None = None
    order: OrderSpec
    tol: Annotated[float, Field(gt=0)]
    seeds: Count(1) = 16
    level: Annotated[float, Field(gt=0, lt=1)] = 0.95
    points: Count(1, 64) = 1
    initial: Count(2, 1024) = 5
    horizons: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] | None = None
    chunk_size: Count(1) | None = None
    width: WidthSpec = WidthSpec()

    @model_validator(mode="after")
    def _inner(self):
        try:
            axis = self.axis()
        except ValueError as e:
            raise ValueError(f"boundary.{e}") from None
        if self.tol >= axis.hi - axis.lo:
            raise ValueError(
                f"boundary.tol = {self.tol:g} is not below the width of the inner range "
                f"[{axis.lo:g}, {axis.hi:g}] of {axis.path}"
            )
        twice = [n for n in self.inner if any(n in a for a in self.outer)]
        if twice:
            raise ValueError(f"boundary.inner: {twice} are on boundary.outer too")
        return self

    def axis(self) -> InnerAxis:
        return InnerAxis({k: tuple(v) for k, v in self.inner.items()})

    def first_round(self) -> dict[str, list[float]]:
        """The inner parameters at the probes of the first round (the ends included)."""
        axis = self.axis()
        x = np.linspace(axis.lo, axis.hi, self.initial)
        return {k: v.tolist() for k, v in axis.params(x).items()}


_RENAME = (
    ("sweep.save_times", "boundary.horizons"),
    ("sweep.metrics", "boundary.order.metric"),
    ("sweep.derived", "boundary.derived"),
    ("sweep.seeds", "boundary.seeds"),
    ("sweep.", "boundary."),
)


class BoundaryConfig(_Strict):
    """A `lesde boundary` run: a model, the boundary to locate and how to solve each
    member (`solve`, as for sweeps). Checked as the sweep of the outer axes x the first
    round's probes of the inner axis (`as_sweep`), so that every name and every model
    of the first round is checked before anything runs; the order parameter's metric
    must be a registered scalar metric of the model's kind."""

    model: AnyModelSpec
    boundary: BoundarySpec
    solve: _SolveBase
    _sweep: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _check(self):
        b = self.boundary
        metric = b.order.metric
        if metric in METRIC_DIMS:
            raise ValueError(
                f"boundary.order.metric: {metric!r} is a vector ({METRIC_DIMS[metric]}); the "
                "order parameter is a scalar metric"
            )
        if b.horizons is not None and any(y <= x for x, y in zip(b.horizons, b.horizons[1:])):
            raise ValueError(f"boundary.horizons must be increasing, got {b.horizons}")
        n = len(b.outer)
        spec = dict(
            axes=[*b.outer, b.first_round()], derived=b.derived, seeds=b.seeds, metrics=[metric],
            chunk_size=b.chunk_size, save_times=b.horizons,
        )
        try:
            sweep = SweepConfig(model=self.model, sweep=SweepSpec(**spec), solve=self.solve)
        except (ConfigError, ValueError) as e:
            raise ValueError(_renamed(_message(e), n)) from None
        self._sweep = sweep
        return self

    def as_sweep(self) -> SweepConfig:
        """The sweep of the outer axes x the first round's probes: the checks and the
        model of every member."""
        return self._sweep

    def build(self, params):
        """The model of one member (`SweepConfig.build`)."""
        return self._sweep.build(params)

    @property
    def registry(self) -> dict:
        return self._sweep.registry

    @property
    def num_cells(self) -> int:
        b = self.boundary
        return math.prod(self._sweep.sweep.shape[:-1]) * len(b.horizons or [0])

    def order(self) -> OrderParameter:
        return self.boundary.order.parameter()

    def is_spring(self) -> bool:
        return is_spring(self.model)


def _message(e: Exception) -> str:
    """The lines of a validation error without pydantic's heading."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
    return str(e)


def _renamed(text: str, n_outer: int) -> str:
    text = text.replace(f"sweep.axes[{n_outer}]", "boundary.inner")
    text = text.replace("sweep.axes", "boundary.outer")
    for old, new in _RENAME:
        text = text.replace(old, new)
    return text
