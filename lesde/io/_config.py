"""Run configurations (YAML), validated by a pydantic schema before any computation.

A configuration has two sections, `model` and `solve`; unknown keys, wrong types and
impossible values are refused with the offending key and value named. Schedules
(impacts, noise levels) are a number (constant) or one of
    {constant: c}
    {power_law: {c: ..., r: ..., t0: 1.0}}
    {piecewise_linear: {times: [...], values: [...]}}
"""

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..models import (
    Classes,
    Constant,
    General,
    gradient_model,
    LESDE,
    LocallyElastic,
    Noise,
    PiecewiseLinear,
    PowerLaw,
)
from ..solve import SOLVERS

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PowerLawSpec(_Strict):
    c: float | list[list[float]]
    r: float
    t0: Annotated[float, Field(gt=0)] = 1.0


class PiecewiseLinearSpec(_Strict):
    times: Annotated[list[float], Field(min_length=1)]
    values: list[Any]


class ScheduleSpec(_Strict):
    constant: float | list[list[float]] | None = None
    power_law: PowerLawSpec | None = None
    piecewise_linear: PiecewiseLinearSpec | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("constant", "power_law", "piecewise_linear") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a schedule is one of constant, power_law, piecewise_linear; got {given or 'none'}"
            )
        return self

    def build(self):
        if self.constant is not None:
            return Constant(self.constant)
        if self.power_law is not None:
            p = self.power_law
            return PowerLaw(p.c, p.r, p.t0)
        p = self.piecewise_linear
        return PiecewiseLinear(p.times, p.values)


Schedule = float | ScheduleSpec


def _build(s: Schedule):
    return Constant(s) if isinstance(s, (int, float)) else s.build()


def _nonneg_schedule(name: str, s: Schedule | None) -> None:
    if s is None:
        return
    if isinstance(s, (int, float)):
        if s < 0:
            raise ValueError(f"{name} must be >= 0, got {s}")
        return
    vals = (
        s.constant if s.constant is not None
        else s.power_law.c if s.power_law is not None
        else s.piecewise_linear.values
    )
    if (np.asarray(vals, dtype=float) < 0).any():
        raise ValueError(f"{name} must be >= 0, got {vals}")


class ImpactSpec(_Strict):
    """Either alpha and beta (locally elastic) or a K x K matrix."""

    alpha: Schedule | None = None
    beta: Schedule | None = None
    matrix: list[list[float]] | ScheduleSpec | None = None

    @model_validator(mode="after")
    def _form(self):
        le = self.alpha is not None or self.beta is not None
        if le and self.matrix is not None:
            raise ValueError("give either alpha and beta, or matrix, not both")
        if not le and self.matrix is None:
            raise ValueError("give alpha and beta (locally elastic) or matrix (general)")
        if le and (self.alpha is None or self.beta is None):
            raise ValueError("the locally elastic impact needs both alpha and beta")
        return self

    def build(self):
        if self.matrix is None:
            return LocallyElastic(_build(self.alpha), _build(self.beta))
        if isinstance(self.matrix, ScheduleSpec):
            return General(self.matrix.build())
        return General(np.asarray(self.matrix, dtype=float))


class NoiseSpec(_Strict):
    independent: Schedule | None = None
    shared: Schedule | None = None

    @model_validator(mode="after")
    def _nonneg(self):
        _nonneg_schedule("independent", self.independent)
        _nonneg_schedule("shared", self.shared)
        return self


class InitSpec(_Strict):
    mean: float = 0.0
    std: Annotated[float, Field(ge=0)] = 0.05


class ModelSpec(_Strict):
    gradient: Literal["identity", "projected", "linear-ce", "ce"] = "ce"
    num_classes: Annotated[int, Field(ge=1)]
    per_class: Annotated[int, Field(ge=1)] | None = None
    class_sizes: list[Annotated[int, Field(ge=1)]] | None = None
    dim: Annotated[int, Field(ge=1)] | None = None
    impact: ImpactSpec
    noise: NoiseSpec = NoiseSpec()
    init: InitSpec = InitSpec()

    @model_validator(mode="after")
    def _sizes(self):
        if (self.per_class is None) == (self.class_sizes is None):
            raise ValueError("give exactly one of per_class and class_sizes")
        if self.class_sizes is not None and len(self.class_sizes) != self.num_classes:
            raise ValueError(
                f"class_sizes has {len(self.class_sizes)} entries but num_classes = "
                f"{self.num_classes}"
            )
        return self

    def build(self) -> LESDE:
        K = self.num_classes
        sizes = self.class_sizes or [self.per_class] * K
        classes = Classes(np.repeat(np.arange(K), sizes), K)
        return LESDE(
            self.impact.build(),
            gradient_model(self.gradient),
            classes,
            noise=Noise(
                None if self.noise.independent is None else _build(self.noise.independent),
                None if self.noise.shared is None else _build(self.noise.shared),
            ),
            dim=self.dim,
            init_mean=self.init.mean,
            init_std=self.init.std,
        )


class SolveSpec(_Strict):
    t1: Annotated[float, Field(gt=0)]
    dt: Annotated[float, Field(gt=0)]
    solver: Literal[tuple(SOLVERS)] = "euler"  # type: ignore[valid-type]
    num_saves: Annotated[int, Field(ge=2)] = 11
    seed: int = 0

    @model_validator(mode="after")
    def _steps(self):
        n = self.t1 / self.dt
        if abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise ValueError(f"t1 / dt must be a whole number of steps, got {n}")
        return self


class RunConfig(_Strict):
    """A `lesde simulate` run: a model and how to solve it."""

    model: ModelSpec
    solve: SolveSpec


class ConfigError(ValueError):
    """A configuration that does not match the schema."""


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration {source}:"]
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "literal_error":
            msg = f"{msg}"
        lines.append(f"  {where}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | Path | None = None) -> RunConfig:
    """Read and validate a YAML run configuration (default: the embedded default)."""
    path = DEFAULT_CONFIG if path is None else Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from e
    return parse_config(data, source=str(path))


def parse_config(data: Any, source: str = "<dict>") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"config {source} must be a mapping, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, source)) from None
