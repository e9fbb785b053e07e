"""Run configurations (YAML), validated by a pydantic schema before any computation.

A configuration has two sections, `model` and `solve` (and `sweep` for sweeps); the
model's `kind` is `le_sde` (default), `spring_map` or `spring_sde`. Unknown keys, wrong types and
impossible values are refused with the offending key and value named. Schedules
(impacts, noise levels) are a number (constant) or one of
    {constant: c}
    {power_law: {c: ..., r: ..., t0: 1.0}}
    {piecewise_linear: {times: [...], values: [...]}}
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

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
    SpringBlockMap,
    SpringBlockSDE,
)
from ..solve import SOLVERS

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
DEFAULT_SPRING_CONFIG = Path(__file__).with_name("default_spring.yaml")


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

    def build(self, path: str = "", ov: Mapping[str, Any] = {}):
        if self.constant is not None:
            return Constant(ov.get(path, self.constant))
        if self.power_law is not None:
            p = self.power_law
            return PowerLaw(
                ov.get(f"{path}.c", p.c), ov.get(f"{path}.r", p.r), ov.get(f"{path}.t0", p.t0)
            )
        p = self.piecewise_linear
        return PiecewiseLinear(p.times, p.values)

    def sweepable(self, path: str) -> list[str]:
        if self.constant is not None:
            return [path] if isinstance(self.constant, (int, float)) else []
        if self.power_law is not None:
            return [f"{path}.{k}" for k in ("c", "r", "t0") if k != "c" or
                    isinstance(self.power_law.c, (int, float))]
        return []


Schedule = float | ScheduleSpec


def _build(s: Schedule, path: str = "", ov: Mapping[str, Any] = {}):
    return Constant(ov.get(path, s)) if isinstance(s, (int, float)) else s.build(path, ov)


def _sweepable(s: Schedule | None, path: str) -> list[str]:
    if s is None:
        return []
    return [path] if isinstance(s, (int, float)) else s.sweepable(path)


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

    def build(self, ov: Mapping[str, Any] = {}):
        if self.matrix is None:
            return LocallyElastic(
                _build(self.alpha, "impact.alpha", ov), _build(self.beta, "impact.beta", ov)
            )
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
    """The LE-SDE (`kind: le_sde`, the default)."""

    kind: Literal["le_sde"] = "le_sde"
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

    def describe(self) -> str:
        N = sum(self.class_sizes or [self.per_class] * self.num_classes)
        return f"LE-SDE '{self.gradient}' model, K = {self.num_classes}, N = {N}"

    def sweepable(self) -> list[str]:
        """Parameter paths that a sweep may vary (scalars of the model)."""
        out = _sweepable(self.impact.alpha, "impact.alpha") + _sweepable(
            self.impact.beta, "impact.beta"
        )
        out += _sweepable(self.noise.independent, "noise.independent")
        out += _sweepable(self.noise.shared, "noise.shared")
        return out + ["init.mean", "init.std"]

    def build(self, overrides: Mapping[str, Any] = {}) -> LESDE:
        """The LESDE of this spec; `overrides` maps sweepable paths (see `sweepable`) to
        values (numbers or JAX arrays) that replace the spec's."""
        ov = overrides
        K = self.num_classes
        sizes = self.class_sizes or [self.per_class] * K
        classes = Classes(np.repeat(np.arange(K), sizes), K)
        return LESDE(
            self.impact.build(ov),
            gradient_model(self.gradient),
            classes,
            noise=Noise(
                None
                if self.noise.independent is None
                else _build(self.noise.independent, "noise.independent", ov),
                None if self.noise.shared is None else _build(self.noise.shared, "noise.shared", ov),
            ),
            dim=self.dim,
            init_mean=ov.get("init.mean", self.init.mean),
            init_std=ov.get("init.std", self.init.std),
        )


NonNeg = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


class _SpringSpec(_Strict):
    """What both spring-block variants share. `mu_back` defaults to `mu_fwd`;
    `mu_ratio` (instead of `mu_back`) sets mu_back = mu_ratio * mu_fwd, so sweeping
    mu_fwd keeps the asymmetry fixed."""

    num_blocks: Annotated[int, Field(ge=1)] = 7
    load: float = 1.0
    control: Literal["displacement", "force"] = "displacement"
    mu_back: NonNeg | None = None
    mu_ratio: NonNeg | None = None

    @model_validator(mode="after")
    def _back(self):
        if self.mu_back is not None and self.mu_ratio is not None:
            raise ValueError("give mu_back or mu_ratio, not both")
        return self

    SCALARS: ClassVar[tuple[str, ...]] = ()

    def sweepable(self) -> list[str]:
        """Parameters a sweep may vary (mu_back/mu_ratio only when given)."""
        return [k for k in self.SCALARS if getattr(self, k) is not None] + (
            ["mu_ratio"] if self.mu_ratio is not None
            else ["mu_back"] if self.mu_back is not None else []
        )

    def _kwargs(self, ov: Mapping[str, Any]) -> dict[str, Any]:
        kw = {k: ov.get(k, getattr(self, k)) for k in self.SCALARS if getattr(self, k) is not None}
        if self.mu_ratio is not None:
            kw["mu_back"] = ov.get("mu_ratio", self.mu_ratio) * kw["mu_fwd"]
        else:
            kw["mu_back"] = ov.get("mu_back", self.mu_back)
        return {**kw, "load": ov.get("load", self.load), "control": self.control}


class SpringMapSpec(_SpringSpec):
    """Variant A of the spring-block model (`kind: spring_map`, `lesde.SpringBlockMap`);
    defaults are the authors' setting. Solve with dt = 1: t1 counts map steps."""

    kind: Literal["spring_map"]
    stiffness: Positive = 1.0
    mu_fwd: NonNeg = 0.1
    noise: NonNeg = 0.1
    eta: Positive = 0.01
    SCALARS: ClassVar[tuple[str, ...]] = ("stiffness", "mu_fwd", "noise", "eta")

    def describe(self) -> str:
        return f"spring-block map (variant A), L = {self.num_blocks}, {self.control} control"

    def sweepable(self) -> list[str]:
        return super().sweepable() + ["load"]

    def build(self, overrides: Mapping[str, Any] = {}) -> SpringBlockMap:
        return SpringBlockMap(self.num_blocks, **self._kwargs(overrides))


class SpringSDESpec(_SpringSpec):
    """Variant B of the spring-block model (`kind: spring_sde`, `lesde.SpringBlockSDE`);
    defaults are the authors' setting."""

    kind: Literal["spring_sde"]
    stiffness: Positive = 0.1
    mass: Positive = 1.0
    damping: NonNeg = 1.0
    mu_fwd: NonNeg = 0.003
    mu_back: NonNeg | None = 0.004
    noise: NonNeg = 0.003
    decay: NonNeg = 0.001
    noise_kind: Literal["common", "independent"] = "common"
    smoothing: Positive | None = None
    SCALARS: ClassVar[tuple[str, ...]] = (
        "stiffness", "mass", "damping", "mu_fwd", "noise", "decay", "smoothing"
    )

    @model_validator(mode="before")
    @classmethod
    def _ratio_replaces_default_back(cls, data):
        if isinstance(data, dict) and "mu_ratio" in data and "mu_back" not in data:
            data = {**data, "mu_back": None}
        return data

    def describe(self) -> str:
        return (
            f"spring-block Langevin SDE (variant B), L = {self.num_blocks}, "
            f"{self.noise_kind} noise, {self.control} control"
        )

    def sweepable(self) -> list[str]:
        return super().sweepable() + ["load"]

    def build(self, overrides: Mapping[str, Any] = {}) -> SpringBlockSDE:
        kw = self._kwargs(overrides)
        return SpringBlockSDE(self.num_blocks, noise_kind=self.noise_kind, **kw)


def model_kind(v: Any) -> str:
    """The `kind` of a model section (default le_sde)."""
    return (v.get("kind", "le_sde") if isinstance(v, dict) else getattr(v, "kind", "le_sde"))


AnyModelSpec = Annotated[
    Annotated[ModelSpec, Tag("le_sde")]
    | Annotated[SpringMapSpec, Tag("spring_map")]
    | Annotated[SpringSDESpec, Tag("spring_sde")],
    Discriminator(model_kind),
]
"""A model section: `kind` le_sde (default), spring_map or spring_sde."""

SpringModelSpec = Annotated[
    Annotated[SpringMapSpec, Tag("spring_map")] | Annotated[SpringSDESpec, Tag("spring_sde")],
    Discriminator(model_kind),
]


def is_spring(spec: Any) -> bool:
    return isinstance(spec, _SpringSpec)


def is_map(spec: Any) -> bool:
    return isinstance(spec, SpringMapSpec)


class _SolveBase(_Strict):
    t1: Annotated[float, Field(gt=0)]
    dt: Annotated[float, Field(gt=0)]
    solver: Literal[tuple(SOLVERS)] = "euler"  # type: ignore[valid-type]
    seed: int = 0

    @model_validator(mode="after")
    def _steps(self):
        n = self.t1 / self.dt
        if abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise ValueError(f"t1 / dt must be a whole number of steps, got {n}")
        return self


class SolveSpec(_SolveBase):
    num_saves: Annotated[int, Field(ge=2)] = 11


class RunConfig(_Strict):
    """A `lesde simulate` run: a model and how to solve it."""

    model: ModelSpec
    solve: SolveSpec


class RangeSpec(_Strict):
    linspace: tuple[float, float, Annotated[int, Field(ge=1)]] | None = None
    logspace: tuple[float, float, Annotated[int, Field(ge=1)]] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.linspace is None) == (self.logspace is None):
            raise ValueError("give exactly one of linspace: [start, stop, num] and "
                             "logspace: [start exponent, stop exponent, num]")
        return self

    def values(self) -> list[float]:
        if self.linspace is not None:
            return np.linspace(*self.linspace).tolist()
        return np.logspace(*self.logspace).tolist()


AxisValues = Annotated[list[float], Field(min_length=1)] | RangeSpec


class SweepSpec(_Strict):
    """The swept axes (each a mapping {parameter path: values}; several paths in one
    mapping are zipped), seeds per cell, metrics to keep and the chunk size."""

    axes: Annotated[list[dict[str, AxisValues]], Field(min_length=1)]
    seeds: Annotated[int, Field(ge=1)] = 1
    metrics: Annotated[list[str], Field(min_length=1)] | None = None
    chunk_size: Annotated[int, Field(ge=1)] | None = None
    save_times: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] | None = None

    def grid_axes(self) -> list[dict[str, list[float]]]:
        return [
            {k: (v.values() if isinstance(v, RangeSpec) else list(v)) for k, v in axis.items()}
            for axis in self.axes
        ]


DEFAULT_METRICS = {
    "le_sde": ["loss", "accuracy"],
    "spring_map": ["curvature", "nonuniformity", "shape", "gains"],
    "spring_sde": ["curvature", "nonuniformity", "shape", "gains"],
}


def _check_map_solve(model: Any, solve: "_SolveBase", where: str = "solve") -> None:
    if is_map(model) and solve.dt != 1:
        raise ValueError(
            f"{where}.dt must be 1 for the spring-block map (t1 counts map steps), got "
            f"{solve.dt}"
        )


class SweepConfig(_Strict):
    """A `lesde sweep` run: a model, the swept axes and how to solve each member."""

    model: AnyModelSpec
    sweep: SweepSpec
    solve: _SolveBase

    @property
    def metrics(self) -> list[str]:
        """The metrics to keep (default: by model kind, see `DEFAULT_METRICS`)."""
        return list(self.sweep.metrics or DEFAULT_METRICS[self.model.kind])

    @property
    def registry(self) -> dict:
        from ..metrics import METRICS, SPRING_METRICS

        return SPRING_METRICS if is_spring(self.model) else METRICS

    @model_validator(mode="after")
    def _axes(self):
        _check_map_solve(self.model, self.solve)
        allowed = self.model.sweepable()
        for i, axis in enumerate(self.sweep.grid_axes()):
            for name, values in axis.items():
                if name not in allowed:
                    raise ValueError(
                        f"sweep.axes[{i}]: {name!r} is not a sweepable parameter of this "
                        f"model; sweepable: {allowed}"
                    )
                for v in values:  # every value must give a valid model, before compute
                    try:
                        self.model.build({name: v})
                    except ValueError as e:
                        raise ValueError(f"sweep.axes[{i}]: {name} = {v}: {e}") from None
        times = self.sweep.save_times or []
        if any(b < a for a, b in zip(times, times[1:])) or any(t > self.solve.t1 for t in times):
            raise ValueError(
                f"sweep.save_times must be increasing and within (0, t1 = {self.solve.t1}], "
                f"got {times}"
            )
        if any(abs(t - round(t)) > 1e-9 for t in times) and is_map(self.model):
            raise ValueError(f"sweep.save_times of a map must be whole step numbers, got {times}")
        unknown = [m for m in self.metrics if m not in self.registry]
        if unknown:
            raise ValueError(
                f"sweep.metrics: unknown {unknown} for a {self.model.kind} model; choose "
                f"from {sorted(self.registry)}"
            )
        return self


class SpringSolveSpec(_SolveBase):
    """How `lesde spring` solves: t1 and dt (dt = 1 for the map: t1 counts steps), the
    number of evenly spaced save times (t = 0 included), independent runs (`seeds`)."""

    num_saves: Annotated[int, Field(ge=2)] = 101
    seeds: Annotated[int, Field(ge=1)] = 16


class SpringRunConfig(_Strict):
    """A `lesde spring` run: one spring-block model, several seeds."""

    model: SpringModelSpec
    solve: SpringSolveSpec

    @model_validator(mode="after")
    def _solve(self):
        _check_map_solve(self.model, self.solve)
        steps = round(self.solve.t1 / self.solve.dt)
        if steps % (self.solve.num_saves - 1):
            raise ValueError(
                f"solve.num_saves - 1 = {self.solve.num_saves - 1} must divide the number of "
                f"steps t1 / dt = {steps}, so that saves fall on steps"
            )
        return self


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


def load_config(path: str | Path | None = None, schema: type[BaseModel] | None = None):
    """Read and validate a YAML configuration against `schema` (default `RunConfig`;
    default file: the embedded default run of `schema`)."""
    if path is None:
        path = DEFAULT_SPRING_CONFIG if schema is SpringRunConfig else DEFAULT_CONFIG
    path = Path(path)
    return parse_config(read_yaml(path), source=str(path), schema=schema)


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file; ConfigError if missing or not YAML."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from e


def parse_config(data: Any, source: str = "<dict>", schema: type[BaseModel] | None = None):
    """Validate a configuration mapping against `schema` (default `RunConfig`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config {source} must be a mapping, got {type(data).__name__}")
    try:
        return (schema or RunConfig).model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, source)) from None
