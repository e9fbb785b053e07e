"""Run configurations (YAML), validated by a pydantic schema before any computation.

A configuration has two sections, `model` and `solve` (and `sweep` for sweeps); the
model's `kind` is `le_sde` (default), `spring_map` or `spring_sde`. Unknown keys, wrong types and
impossible values are refused with the offending key and value named. A model's values
are checked by the model itself: the keys of a spring-block section are the arguments
of `SpringBlockMap` / `SpringBlockSDE` with their defaults, and `noise` takes the level
of each kind of `lesde.models.NOISES` by name. Schedules (impacts, noise levels) are a
number (constant) or one of
    {constant: c}
    {power_law: {c: ..., r: ..., t0: 1.0}}
    {piecewise_linear: {times: [...], values: [...]}}

What is refused before anything runs:
- a value of the wrong type, with no coercion: a boolean or a string where a number is
  expected (`alpha: true`, `t1: "10"`), a float where an int is expected (`seeds: 2.0`);
  an int is accepted where a float is expected;
- a non-finite number (`.inf`, `.nan`) anywhere;
- a key given twice in one mapping of the YAML file (named with its line);
- a seed outside [0, 2**32 - 1] (`SEED_MAX`) and a count (sizes, seeds per cell,
  save times, chunk sizes, ...) below its minimum or above 2**31 - 1 (`INT32_MAX`);
- t1 / dt that is not a whole number >= 1 of steps, or more steps than the solver's int32
  step counter holds;
- a run or sweep whose results, saved trajectory or states need more memory than the
  machine has (`check_memory`; the message states the size and the counts causing it);
- in a sweep: an empty axis, a parameter on two axes, zipped parameters of unequal
  lengths, non-numeric axis values, more cells than an int32 cell index holds, a name
  that is neither the spec's own parameter nor the path of a number of the model nor
  a variable that `sweep.derived` reads, a derived value that is not finite, and any
  cell whose model the model's own checks refuse.

A swept parameter is named by the spec's name (`impact.alpha`, `mu_fwd`, ...) or by
its path in the model's pytree (`impact.schedule.value[0,1]`: `lesde.models.set_at`).

In YAML files numbers in exponent notation without a dot or an exponent sign (`1e-3`,
`1.0e5`) are read as numbers (YAML 1.1, which PyYAML implements, reads them as strings);
quoted values stay strings.
"""

import inspect
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, get_origin, Literal

import numpy as np
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    create_model,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    model_validator,
)

from ..models import (
    Classes,
    Constant,
    General,
    get_at,
    GRADIENT_MODELS,
    gradient_model,
    LESDE,
    LocallyElastic,
    Noise,
    noise_kind,
    schedule_kind,
    SCHEDULES,
    set_paths,
    SpringBlockMap,
    SpringBlockSDE,
)
from ..solve import check_cells, Grid, SOLVERS

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
DEFAULT_SPRING_CONFIG = Path(__file__).with_name("default_spring.yaml")


INT32_MAX = 2**31 - 1
"""The largest count that JAX's default integer (int32: step counters, indices, labels)
holds."""

SEED_MAX = 2**32 - 1
"""The largest seed: `jax.random.key` keeps the low 32 bits of a seed in single
precision (2**32 gives the key of 0, -1 that of 2**32 - 1)."""

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""A random seed: an int in [0, 2**32 - 1]."""


def Count(minimum: int = 1, maximum: int = INT32_MAX) -> Any:
    """An int in [minimum, maximum] (default maximum 2**31 - 1, an int32)."""
    return Annotated[int, Field(ge=minimum, le=maximum)]


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the system does not say)."""
    try:
        n = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return n if n > 0 else None


def _count(n: int) -> str:
    if n < 10**6:
        return str(n)
    e = len(str(n)) - 1
    return f"10^{e}" if n == 10**e else f"{n:.3g}".replace("e+0", "e").replace("e+", "e")


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} YB"


def check_memory(where: str, parts: Sequence[tuple[str, Mapping[str, int], int]]) -> None:
    """Refuse what needs more memory than this machine has (ValueError).

    `parts`: (what, {count name: count}, bytes per value) triples; a part needs the
    product of its counts times its bytes per value, and the parts add up. The message
    starts with `where` (a key path, or nothing), names each part that matters (1% of
    the total or more) with its counts and size, and the machine's memory. The sizes are
    lower bounds (what is stored, not the temporaries of the computation)."""
    sizes = [math.prod(counts.values()) * nbytes for _, counts, nbytes in parts]
    need, have = sum(sizes), physical_memory()
    if have is None or need <= have:
        return
    said = []
    for (what, counts, _), size in zip(parts, sizes):
        if size >= need / 100:
            factors = " x ".join(f"{_count(n)} {name}" for name, n in counts.items() if n != 1)
            said.append(f"{factors or 'one value'} need {_bytes(size)} for {what}")
    total = f" ({_bytes(need)} in all)" if len(said) > 1 else ""
    where = f"{where}: " if where else ""
    raise ValueError(f"{where}{'; '.join(said)}{total}; the machine has {_bytes(have)}")


class _Strict(BaseModel):
    """Strict: no coercion (a boolean or a string is not a number, a float is not an
    int; an int is accepted as a float), no non-finite floats, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _gradient_name(value: Any) -> str:
    """A registered gradient model's name (`lesde.models.GRADIENT_MODELS`, which
    `lesde.models.register_gradient` extends), checked when a config is read."""
    if not isinstance(value, str) or value not in GRADIENT_MODELS:
        names = [repr(n) for n in GRADIENT_MODELS]
        choices = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        raise ValueError(f"Input should be {choices} (got {value!r})")
    return value


GradientName = Annotated[str, BeforeValidator(_gradient_name)]
"""The `gradient` key of a model: 'identity', 'projected', 'linear-ce', 'ce' or a name
registered with `lesde.models.register_gradient`."""


Numbers = float | list[float] | list[list[float]] | list[list[list[float]]]
"""A number or a nested list of numbers (a vector, a matrix, knots of matrices)."""


def _arguments(cls: type) -> list[inspect.Parameter]:
    """The arguments of `cls.__init__` that may be given by name (not self, not *args,
    not keyword-only ones such as `Constant`'s name for messages)."""
    return [
        p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]


class ScheduleSpec(_Strict):
    """A schedule: `{name: arguments}` for a schedule registered under `name`
    (`lesde.models.SCHEDULES`: constant, power_law, piecewise_linear, or one registered
    with `register_schedule`). `arguments` is a mapping of the class's arguments
    (`{power_law: {c: 1.0, r: 0.5, t0: 1.0}}`, `{piecewise_linear: {times: [...],
    values: [...]}}`), or one value, its first argument (`{constant: 0.5}`). The values
    are checked by the schedule itself; each argument that is a number (given, or by
    default) is sweepable as `<path>.<argument>`, the value of the short form as
    `<path>`."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Numbers | dict[str, Numbers]]

    @model_validator(mode="after")
    def _one(self):
        given = list(self.model_extra)
        if len(given) != 1:
            raise ValueError(f"a schedule is one of {list(SCHEDULES)}; got {given or 'none'}")
        self.build()  # the values are checked by the schedule itself
        return self

    @property
    def kind(self) -> str:
        return next(iter(self.model_extra))

    def _given(self) -> dict[str, Any]:
        """Argument name -> value, as given (the short form names the first argument)."""
        cls, x = schedule_kind(self.kind), self.model_extra[self.kind]
        params = _arguments(cls)
        names = [p.name for p in params]
        required = [p.name for p in params if p.default is inspect.Parameter.empty]
        if not isinstance(x, dict):
            if len(required) > 1:
                raise ValueError(
                    f"{self.kind} takes the arguments {names}: give them as a mapping"
                )
            return {names[0]: x}
        unknown = [k for k in x if k not in names]
        if unknown:
            raise ValueError(f"{self.kind} has no argument {unknown[0]!r}; it takes {names}")
        missing = [k for k in required if k not in x]
        if missing:
            raise ValueError(f"{self.kind} needs the argument {missing[0]!r}; it takes {names}")
        return dict(x)

    def _numbers(self) -> dict[str, str]:
        """Argument name -> its sweep name suffix, of the arguments that are numbers
        (given, or by default)."""
        given = self._given()
        short = not isinstance(self.model_extra[self.kind], dict)
        out = {}
        for i, p in enumerate(_arguments(schedule_kind(self.kind))):
            value = given.get(p.name, p.default)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[p.name] = "" if short and i == 0 else f".{p.name}"
        return out

    def build(self, path: str = "", ov: Mapping[str, Any] = {}):
        """The schedule; `ov` maps the sweep names of its numbers (see `sweepable`) to
        values that replace the config's."""
        args = self._given()
        for name, suffix in self._numbers().items():
            if f"{path}{suffix}" in ov:
                args[name] = ov[f"{path}{suffix}"]
        return schedule_kind(self.kind)(**args)

    def sweepable(self, path: str) -> list[str]:
        return [f"{path}{suffix}" for suffix in self._numbers().values()]


Schedule = float | ScheduleSpec


def _build(s: Schedule, path: str = "", ov: Mapping[str, Any] = {}):
    return Constant(ov.get(path, s)) if isinstance(s, (int, float)) else s.build(path, ov)


def _sweepable(s: Schedule | None, path: str) -> list[str]:
    if s is None:
        return []
    return [path] if isinstance(s, (int, float)) else s.sweepable(path)


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


class _NoiseLevels(_Strict):
    """Noise levels by kind: `independent`, `shared`, or the name of any kind registered
    with `lesde.models.register_noise`; absent or null: off."""

    model_config = ConfigDict(extra="allow")

    def levels(self) -> dict[str, Any]:
        """Kind name -> level, of the kinds given."""
        given = {**{k: getattr(self, k) for k in type(self).model_fields}, **self.model_extra}
        return {k: v for k, v in given.items() if v is not None}

    @model_validator(mode="after")
    def _registered(self):
        for name in self.model_extra:
            noise_kind(name)
        return self


class NoiseSpec(_NoiseLevels):
    """Noise levels by kind (a number or a schedule, >= 0): `independent` (one Brownian
    motion per sample), `shared` (one per class) or a registered kind."""

    __pydantic_extra__: dict[str, Schedule | None]
    independent: Schedule | None = None
    shared: Schedule | None = None

    @model_validator(mode="after")
    def _checked_by_noise(self):
        self.build()  # the levels are checked by Noise itself
        return self

    def build(self, ov: Mapping[str, Any] = {}) -> Noise:
        """The `Noise` of these levels; `ov` maps `noise.<kind>` (and `.c`, `.r`, `.t0`
        of a power law) to values that replace the config's."""
        return Noise(**{
            name: _build(level, f"noise.{name}", ov) for name, level in self.levels().items()
        })


def _default(model_cls: type, argument: str) -> Any:
    """The default of an argument of `model_cls`, so a config's default is the model's."""
    return inspect.signature(model_cls.__init__).parameters[argument].default


class InitSpec(_Strict):
    """The law of X_i(0): N(mean, std^2 I), the `init_mean` and `init_std` of `LESDE`
    (with its defaults; checked by the model)."""

    mean: float = _default(LESDE, "init_mean")
    std: float = _default(LESDE, "init_std")


class ModelSpec(_Strict):
    """The LE-SDE (`kind: le_sde`, the default)."""

    kind: Literal["le_sde"] = "le_sde"
    gradient: GradientName = "ce"
    num_classes: Count(1)
    per_class: Count(1) | None = None
    class_sizes: list[Count(1)] | None = None
    dim: Count(1) | None = None
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
        N = self.num_samples
        if N > INT32_MAX:
            raise ValueError(
                f"N = {_count(N)} samples; the labels are int32 (at most 2**31 - 1 = "
                f"{INT32_MAX} samples)"
            )
        check_memory("", [("the state", {"samples": N, "features": self.features}, 8)])
        return self

    @model_validator(mode="after")
    def _checked_by_model(self):
        self.build()  # the values are checked by LESDE itself
        return self

    @property
    def num_samples(self) -> int:
        """N, the number of samples."""
        return sum(self.class_sizes) if self.class_sizes else self.per_class * self.num_classes

    @property
    def features(self) -> int:
        """p, the number of features (default K)."""
        return self.dim or self.num_classes

    def state_size(self) -> int:
        """Values in one state (N x p)."""
        return self.num_samples * self.features

    def describe(self) -> str:
        return f"LE-SDE '{self.gradient}' model, K = {self.num_classes}, N = {self.num_samples}"

    def sweepable(self) -> list[str]:
        """Parameter paths that a sweep may vary (scalars of the model)."""
        out = _sweepable(self.impact.alpha, "impact.alpha") + _sweepable(
            self.impact.beta, "impact.beta"
        )
        for name, level in self.noise.levels().items():
            out += _sweepable(level, f"noise.{name}")
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
            noise=self.noise.build(ov),
            dim=self.dim,
            init_mean=ov.get("init.mean", self.init.mean),
            init_std=ov.get("init.std", self.init.std),
        )


def _checked_by(model_cls: type, name: str) -> Callable[[Any], Any]:
    """A validator of the argument `name` of `model_cls`: the model built with that
    value (and its defaults otherwise) must accept it, so the config refuses what the
    model refuses, with the model's own message."""

    def check(value):
        if value is not None:
            model_cls(**{name: value})
        return value

    return check


def _model_arguments(model_cls: type, nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """pydantic fields for the arguments of `model_cls.__init__`, with its defaults: a
    count for an `int` argument, the `Literal` of a choice, and for any other argument
    a number checked by the model itself (`_checked_by`), or null where the default is
    None or the argument is `nullable`."""
    fields = {}
    params = list(inspect.signature(model_cls.__init__).parameters.values())[1:]
    for p in params:
        if p.annotation is int:
            kind = Count(1)
        elif get_origin(p.annotation) is Literal:
            kind = p.annotation
        else:
            kind = Annotated[float, AfterValidator(_checked_by(model_cls, p.name))]
            if p.default is None or p.name in nullable:
                kind = kind | None
        fields[p.name] = (kind, p.default)
    return fields


class _SpringSpec(_Strict):
    """What both spring-block variants share: their fields are the arguments of the
    model (`model_class`), with its defaults, checked by the model. `mu_back` defaults
    to `mu_fwd`; `mu_ratio` (instead of `mu_back`) sets mu_back = mu_ratio * mu_fwd,
    so sweeping mu_fwd keeps the asymmetry fixed."""

    mu_ratio: Annotated[float, Field(ge=0)] | None = None

    model_class: ClassVar[type]
    STATE_ROWS: ClassVar[int] = 1

    @model_validator(mode="before")
    @classmethod
    def _ratio_replaces_default_back(cls, data):
        if isinstance(data, dict) and "mu_ratio" in data and "mu_back" not in data:
            data = {**data, "mu_back": None}
        return data

    @model_validator(mode="after")
    def _back(self):
        if self.mu_back is not None and self.mu_ratio is not None:
            raise ValueError("give mu_back or mu_ratio, not both")
        return self

    @model_validator(mode="after")
    def _size(self):
        check_memory("num_blocks", [("the state", {"state values": self.state_size()}, 8)])
        return self

    @classmethod
    def scalars(cls) -> list[str]:
        """The model's number arguments that a sweep may vary as such (mu_back and
        load are added by `sweepable`)."""
        return [
            k for k, f in cls.model_fields.items()
            if k not in ("kind", "num_blocks", "mu_back", "mu_ratio", "load")
            and get_origin(f.annotation) is not Literal
        ]

    def state_size(self) -> int:
        """Values in one state (positions, and velocities for the SDE)."""
        return self.STATE_ROWS * self.num_blocks

    def sweepable(self) -> list[str]:
        """Parameters a sweep may vary (mu_back/mu_ratio only when given)."""
        return [k for k in self.scalars() if getattr(self, k) is not None] + (
            ["mu_ratio"] if self.mu_ratio is not None
            else ["mu_back"] if self.mu_back is not None else []
        ) + ["load"]

    def build(self, overrides: Mapping[str, Any] = {}):
        """The model of this spec; `overrides` maps sweepable names to values."""
        ov = overrides
        kw = {k: ov.get(k, getattr(self, k)) for k in type(self).model_fields if k not in (
            "kind", "mu_ratio")}
        if self.mu_ratio is not None:
            kw["mu_back"] = ov.get("mu_ratio", self.mu_ratio) * kw["mu_fwd"]
        return self.model_class(kw.pop("num_blocks"), **kw)


def _arguments_of(model_cls: type, kind: str) -> type[_SpringSpec]:
    """The config section of `kind` whose fields are the arguments of `model_cls`
    (`_model_arguments`; `mu_back` may be null: mu_back = mu_fwd)."""
    return create_model(
        f"_{model_cls.__name__}Arguments", __base__=_SpringSpec,
        kind=(Literal[kind], ...), **_model_arguments(model_cls, nullable=("mu_back",)),
    )


class SpringMapSpec(_arguments_of(SpringBlockMap, "spring_map")):
    """Variant A of the spring-block model (`kind: spring_map`, `lesde.SpringBlockMap`);
    defaults are the authors' setting. Solve with dt = 1: t1 counts map steps."""

    model_class: ClassVar[type] = SpringBlockMap

    def describe(self) -> str:
        return f"spring-block map (variant A), L = {self.num_blocks}, {self.control} control"


class SpringSDESpec(_arguments_of(SpringBlockSDE, "spring_sde")):
    """Variant B of the spring-block model (`kind: spring_sde`, `lesde.SpringBlockSDE`);
    defaults are the authors' setting."""

    model_class: ClassVar[type] = SpringBlockSDE
    STATE_ROWS: ClassVar[int] = 2

    def describe(self) -> str:
        return (
            f"spring-block Langevin SDE (variant B), L = {self.num_blocks}, "
            f"{self.noise_kind} noise, {self.control} control"
        )


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
    """The horizon t1 and step dt (finite, > 0, t1 / dt a whole number of steps in
    [1, 2**31 - 1]: the solver counts steps in int32), the solver and the seed."""

    t1: Annotated[float, Field(gt=0)]
    dt: Annotated[float, Field(gt=0)]
    solver: Literal[tuple(SOLVERS)] = "euler"  # type: ignore[valid-type]
    seed: Seed = 0

    @model_validator(mode="after")
    def _steps(self):
        n = self.t1 / self.dt
        if not n <= INT32_MAX:  # also an overflow to inf
            raise ValueError(
                f"t1 / dt = {self.t1!r} / {self.dt!r} = {n:.4g} steps; the solver counts "
                f"steps in int32 (at most 2**31 - 1 = {INT32_MAX} steps)"
            )
        if abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise ValueError(f"t1 / dt must be a whole number of steps, got {n}")
        if round(n) < 1:
            raise ValueError(
                f"t1 / dt must be a whole number of steps >= 1, got t1 = {self.t1!r} < "
                f"dt = {self.dt!r}"
            )
        return self


class SolveSpec(_SolveBase):
    """How `lesde simulate` solves: also `num_saves` evenly spaced save times (t = 0
    included), at least 2."""

    num_saves: Count(2) = 11


class RunConfig(_Strict):
    """A `lesde simulate` run: a model and how to solve it. Refused: a state and saved
    observables (num_saves x (4 + K x p class means)) that need more memory than the
    machine has."""

    model: ModelSpec
    solve: SolveSpec

    @model_validator(mode="after")
    def _memory(self):
        m = self.model
        check_memory("solve.num_saves", [
            ("the saved trajectory", {"save times": self.solve.num_saves,
                                      "saved values": 5 + m.num_classes * m.features}, 8),
            ("the state", {"samples": m.num_samples, "features": m.features}, 8),
        ])
        return self


class RangeSpec(_Strict):
    """`linspace: [start, stop, num]` or `logspace: [start exponent, stop exponent, num]`
    (num an int >= 1; exponents at most 308, the float64 range)."""

    linspace: Annotated[tuple[float, float, Count(1)], Strict(False)] | None = None
    logspace: Annotated[tuple[float, float, Count(1)], Strict(False)] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.linspace is None) == (self.logspace is None):
            raise ValueError("give exactly one of linspace: [start, stop, num] and "
                             "logspace: [start exponent, stop exponent, num]")
        if self.logspace is not None and max(self.logspace[:2]) > 308:
            raise ValueError(
                f"logspace: 10^{max(self.logspace[:2]):g} is beyond the float64 range "
                f"(exponents at most 308), got {list(self.logspace)}"
            )
        return self

    @property
    def num(self) -> int:
        return (self.linspace or self.logspace)[2]

    def values(self) -> list[float]:
        if self.linspace is not None:
            return np.linspace(*self.linspace).tolist()
        return np.logspace(*self.logspace).tolist()


AxisValues = Annotated[list[float], Field(min_length=1)] | RangeSpec


def _axis_length(values: Any) -> int:
    return values.num if isinstance(values, RangeSpec) else len(values)


_DERIVED = {
    "product": lambda *xs: math.prod(xs),
    "sum": lambda *xs: sum(xs),
    "ratio": lambda a, b: a / b,
    "difference": lambda a, b: a - b,
}


class DerivedSpec(_Strict):
    """A parameter computed in each cell from names on the axes: one of `product: [a, b,
    ...]` (a * b * ...), `sum: [a, b, ...]`, `ratio: [a, b]` (a / b) or
    `difference: [a, b]` (a - b)."""

    product: Annotated[list[str], Field(min_length=2)] | None = None
    sum: Annotated[list[str], Field(min_length=2)] | None = None
    ratio: Annotated[list[str], Field(min_length=2, max_length=2)] | None = None
    difference: Annotated[list[str], Field(min_length=2, max_length=2)] | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in _DERIVED if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a derived parameter is one of {', '.join(_DERIVED)}; got {given or 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in _DERIVED if getattr(self, k) is not None)

    @property
    def inputs(self) -> list[str]:
        return list(getattr(self, self.kind))

    def function(self):
        """f(values) -> the derived values, for `lesde.solve.Grid(derived=...)`."""
        op, names = _DERIVED[self.kind], self.inputs
        return lambda values: op(*(values[n] for n in names))

    def describe(self) -> str:
        return f"{self.kind}({', '.join(self.inputs)})"


class SweepSpec(_Strict):
    """The swept axes (each a mapping {parameter: values}; several parameters in one
    mapping are zipped), derived parameters, seeds per cell, metrics to keep and the
    chunk size.

    A parameter is named by the spec's own name (`impact.alpha`, `noise.independent`,
    `mu_fwd`, ...: see `sweepable`) or by its path in the model
    (`lesde.models.leaf_paths`, e.g. `impact.schedule.value[0,1]`, an entry of a General
    impact matrix). `derived` maps a parameter to a function of names on the axes
    (`DerivedSpec`); a name on an axis that is no parameter of the model is a variable
    that only derived parameters read (e.g. the noise relative to the friction).

    Refused: an empty axis, a parameter on two axes, zipped parameters of unequal
    lengths, values that are not finite numbers, more than 2**31 - 1 cells (the cell
    index is int32), a metric named twice, seeds or a chunk size < 1, a derived
    parameter that is on an axis or reads a name that is not on one."""

    axes: Annotated[list[dict[str, AxisValues]], Field(min_length=1)]
    derived: dict[str, DerivedSpec] | None = None
    seeds: Count(1) = 1
    metrics: Annotated[list[str], Field(min_length=1)] | None = None
    chunk_size: Count(1) | None = None
    save_times: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _grid(self):
        where: dict[str, int] = {}
        for i, axis in enumerate(self.axes):
            if not axis:
                raise ValueError(f"sweep.axes[{i}] is empty: an axis sweeps at least one parameter")
            for name in axis:
                if name in where:
                    raise ValueError(
                        f"sweep.axes[{i}]: {name!r} is swept on sweep.axes[{where[name]}] too"
                    )
                where[name] = i
            lengths = {name: _axis_length(v) for name, v in axis.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(
                    f"sweep.axes[{i}]: zipped parameters must have equal lengths, got "
                    + ", ".join(f"{name}: {n}" for name, n in lengths.items())
                )
        if self.num_cells > INT32_MAX:
            raise ValueError(
                f"sweep.axes: {' x '.join(_count(n) for n in self.shape)} = "
                f"{_count(self.num_cells)} cells; the cell index is int32 (at most "
                f"2**31 - 1 = {INT32_MAX} cells)"
            )
        twice = sorted({m for m in self.metrics or [] if self.metrics.count(m) > 1})
        if twice:
            raise ValueError(f"sweep.metrics: {twice} named more than once")
        for name, d in (self.derived or {}).items():
            if name in where:
                raise ValueError(
                    f"sweep.derived.{name}: {name!r} is swept on sweep.axes[{where[name]}]; a "
                    "parameter is either on an axis or derived"
                )
            missing = [n for n in d.inputs if n not in where]
            if missing:
                raise ValueError(
                    f"sweep.derived.{name}: {d.describe()} reads {missing}, which are not on "
                    f"the axes; the axes sweep {list(where)}"
                )
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        """The length of each axis."""
        return tuple(_axis_length(next(iter(axis.values()))) for axis in self.axes)

    @property
    def num_cells(self) -> int:
        return math.prod(self.shape)

    def grid_axes(self) -> list[dict[str, list[float]]]:
        return [
            {k: (v.values() if isinstance(v, RangeSpec) else list(v)) for k, v in axis.items()}
            for axis in self.axes
        ]

    def grid(self) -> Grid:
        """The `lesde.solve.Grid` of the axes and the derived parameters."""
        derived = {k: d.function() for k, d in (self.derived or {}).items()}
        return Grid(self.grid_axes(), derived=derived)


DEFAULT_METRICS = {
    "le_sde": ["loss", "accuracy"],
    "spring_map": ["curvature", "nonuniformity", "shape", "gains"],
    "spring_sde": ["curvature", "nonuniformity", "shape", "gains"],
}


def _is_path_like(name: str) -> bool:
    """A name with a dot or an index names a path of the model, not a variable."""
    return "." in name or "[" in name


def _is_variable(name: str, variables: set[str]) -> bool:
    return name in variables and not _is_path_like(name)


def _check_map_solve(model: Any, solve: "_SolveBase", where: str = "solve") -> None:
    if is_map(model) and solve.dt != 1:
        raise ValueError(
            f"{where}.dt must be 1 for the spring-block map (t1 counts map steps), got "
            f"{solve.dt}"
        )


class SweepConfig(_Strict):
    """A `lesde sweep` run: a model, the swept axes and how to solve each member.
    Refused, besides what `SweepSpec` refuses: unsweepable parameters, axis values that
    make an invalid model, unknown metrics, save times outside (0, t1], results or
    chunk states that need more memory than the machine has."""

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
    def _memory(self):
        """Refuse a sweep whose results (cells x seeds x save times x metric values, 8
        bytes each), states of one chunk and listed axis values need more memory than
        the machine has, before any axis value is listed."""
        s, model = self.sweep, self.model
        sizes = {"gains": getattr(model, "num_blocks", 1),
                 "elongations": getattr(model, "num_blocks", 0) + 1}
        check_memory("sweep", [
            ("the results", {"cells": s.num_cells, "seeds": s.seeds,
                             "save times": len(s.save_times or [self.solve.t1]),
                             "metric values": sum(sizes.get(m, 1) for m in self.metrics)}, 8),
            ("the states of a chunk", {"members": min(s.chunk_size or 1, s.num_cells * s.seeds),
                                       "state values": model.state_size()}, 8),
            # listed as Python floats (32 bytes) and as an array (8 bytes)
            ("the axis values", {"axis values": sum(len(a) * n for a, n in zip(s.axes, s.shape))},
             40),
        ])
        return self

    def _roles(self) -> tuple[list[str], list[str]]:
        """The swept names that are the spec's own parameters and those that are paths
        of the model (the rest are variables that derived parameters read)."""
        allowed = self.model.sweepable()
        variables = {n for d in (self.sweep.derived or {}).values() for n in d.inputs}
        names = [n for axis in self.sweep.axes for n in axis] + list(self.sweep.derived or {})
        own = [n for n in names if n in allowed]
        paths = [n for n in names if n not in allowed and not _is_variable(n, variables)]
        return own, paths

    def build(self, params: Mapping[str, Any]):
        """The model of one cell: the spec built with its own parameters from `params`,
        then the model paths in `params` set (`lesde.models.set_paths`)."""
        own, paths = self._roles()
        model = self.model.build({k: params[k] for k in own})
        return set_paths(model, {path: params[path] for path in paths})

    @model_validator(mode="after")
    def _axes(self):
        _check_map_solve(self.model, self.solve)
        allowed = self.model.sweepable()
        _, paths = self._roles()
        location = {name: f"sweep.axes[{i}]" for i, axis in enumerate(self.sweep.axes)
                    for name in axis}
        location.update({name: f"sweep.derived.{name}" for name in self.sweep.derived or {}})
        base = self.model.build() if paths else None
        for name in paths:
            where = location[name]
            try:
                value = get_at(base, name)
            except ValueError as e:
                raise ValueError(
                    f"{where}: {name!r} is not a sweepable parameter of this model; sweepable: "
                    f"{allowed}, or the path of a number of the model ({e}); a name that is "
                    "neither is a variable only if sweep.derived reads it"
                ) from None
            if value.ndim:
                raise ValueError(
                    f"{where}: {name!r} is an array of shape {tuple(value.shape)}; sweep one "
                    f"entry of it, e.g. {name}[{','.join(['0'] * value.ndim)}]"
                )
        try:
            grid = self.sweep.grid()
        except ValueError as e:
            raise ValueError(f"sweep.derived: {e}") from None
        try:  # every cell must give a valid model, before compute (one vmapped check)
            check_cells(self.build, grid)
        except ValueError as e:
            raise ValueError(f"sweep.axes: {e}") from None
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

    num_saves: Count(2) = 101
    seeds: Count(1) = 16


class SpringRunConfig(_Strict):
    """A `lesde spring` run: one spring-block model, several seeds. Refused: num_saves - 1
    not dividing the number of steps, saved positions (seeds x num_saves x blocks) and
    states that need more memory than the machine has."""

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
        s, L = self.solve, self.model.num_blocks
        check_memory("solve", [
            ("the saved positions", {"seeds": s.seeds, "save times": s.num_saves, "blocks": L}, 8),
            ("the states", {"seeds": s.seeds, "state values": self.model.state_size()}, 8),
        ])
        return self


class ConfigError(ValueError):
    """A configuration that does not match the schema."""


def _where(loc: tuple, data: Any, missing: bool) -> list[str]:
    """The key path of an error location in `data`, without pydantic's labels of union
    members ('float', 'list[float]', 'RangeSpec', ...); the tag of a tagged union (a
    model's kind, an experiment) is kept."""
    path, cur = [], data
    for i, x in enumerate(loc):
        if isinstance(cur, Mapping) and x in cur:
            cur = cur[x]
        elif isinstance(cur, (list, tuple)) and isinstance(x, int) and 0 <= x < len(cur):
            cur = cur[x]
        elif missing and i == len(loc) - 1:
            pass  # the missing key
        elif not isinstance(cur, Mapping) or x not in {
            v for v in cur.values() if isinstance(v, str)
        }:
            continue  # a union member's label
        path.append(str(x))
    return path


def _wrong_type(e: dict) -> bool:
    return e["type"].endswith("_type") or e["type"] == "model_attributes_type"


def _format(err: ValidationError, source: str, data: Any = None) -> str:
    """One line per error: the key path, the message and the value given. Of the
    alternatives of a union, those that failed deeper down or on a value (not on the
    type) are kept; wrong-type alternatives at one key are joined."""
    found = [
        (_where(e["loc"], data, e["type"] == "missing") if data is not None
         else [str(x) for x in e["loc"]], e)
        for e in err.errors()
    ]

    def superseded(where, e) -> bool:
        return any(
            len(w) > len(where) and w[: len(where)] == where
            or w == where and _wrong_type(e) and not _wrong_type(f)
            for w, f in found
        )

    found = [(w, e) for w, e in found if not superseded(w, e)]
    lines: list[str] = []
    for where, e in found:
        key = ".".join(where)
        if e["type"] == "value_error":  # the message names the value
            msg = e["msg"].removeprefix("Value error, ")
            line = msg if not key or msg.startswith(key) else f"{key}: {msg}"
        else:
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            if _wrong_type(e):  # join the alternatives of a union
                alts = [f["msg"] for w, f in found if w == where and _wrong_type(f)]
                msg = alts[0] + "".join(
                    ", or " + a.removeprefix("Input should be ") for a in alts[1:]
                )
            got = repr(e.get("input"))
            got = got if len(got) <= 200 else got[:200] + " ..."
            line = f"{key or '(top level)'}: {msg} (got {got})"
        if line not in lines:
            lines.append(line)
    return "\n".join([f"invalid configuration {source}:"] + [f"  {line}" for line in lines])


def load_config(path: str | Path | None = None, schema: type[BaseModel] | None = None):
    """Read and validate a YAML configuration against `schema` (default `RunConfig`;
    default file: the embedded default run of `schema`)."""
    if path is None:
        path = DEFAULT_SPRING_CONFIG if schema is SpringRunConfig else DEFAULT_CONFIG
    path = Path(path)
    return parse_config(read_yaml(path), source=str(path), schema=schema)


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (ConfigError
    naming the key path and both lines) and reads 1e-3 and 1.0e5 as numbers."""

    source = "<string>"

    def construct_document(self, node):
        self._check_keys(node, "", set())
        return super().construct_document(node)

    def _check_keys(self, node, path: str, done: set) -> None:
        if id(node) in done:  # an alias of a node already checked
            return
        done.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._check_keys(value_node, path, done)
                    continue
                name = (key_node.value if isinstance(key_node, yaml.ScalarNode)
                        else str(id(key_node)))
                here = f"{path}.{name}" if path else name
                mark = key_node.start_mark
                if (key_node.tag, name) in first:
                    was = first[(key_node.tag, name)]
                    at = ([f"line {m.line + 1}" for m in (was, mark)] if was.line != mark.line
                          else [f"line {m.line + 1}, column {m.column + 1}" for m in (was, mark)])
                    raise ConfigError(
                        f"invalid configuration {self.source}: key {here!r} is given twice, at "
                        f"{at[0]} and at {at[1]}"
                    )
                first[(key_node.tag, name)] = mark
                self._check_keys(value_node, here, done)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_keys(item, f"{path}[{i}]", done)


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file; ConfigError if missing, not YAML, or with a key
    given twice in one mapping (PyYAML would keep the last)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    loader = _ConfigLoader(path.read_text())
    loader.source = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from e
    finally:
        loader.dispose()


def parse_config(data: Any, source: str = "<dict>", schema: type[BaseModel] | None = None):
    """Validate a configuration mapping against `schema` (default `RunConfig`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config {source} must be a mapping, got {type(data).__name__}")
    try:
        return (schema or RunConfig).model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, source, data)) from None

