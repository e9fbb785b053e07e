"""Configurations of `lesde train` (YAML), validated by a pydantic schema before any
training. Two experiments, chosen by `experiment`:

- `trajectories` (the LE-SDE authors'): SGD with batch size 1 on a network, many trials,
  per-step logits of the drawn sample; one log per label-corruption fraction p.
- `separation` (the spring-block authors'): the BatchNorm MLP with Adam on a grid of
  nonlinearity (leaky slope) and noise (data noise, learning rate, dropout, batch size),
  per-layer data separation and load curves.

Fractions may be written as numbers or as "a/b" strings (e.g. "2/3").
"""

from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, model_validator

from ._config import _Strict


def _fraction(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return float(Fraction(v.strip()))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"not a number or a fraction a/b: {v!r}") from None
    return v


Unit = Annotated[float, BeforeValidator(_fraction), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class DataSpec(_Strict):
    """The data set: scikit-learn's `digits` or the synthetic `geomnist` (its
    `n_per_class` images per class), split per class into training and validation."""

    name: Literal["digits", "geomnist"] = "geomnist"
    n_per_class: Annotated[int, Field(ge=2)] = 200
    val_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    seed: int = 0

    def build(self):
        from ..nets import digits, geomnist

        if self.name == "digits":
            if "n_per_class" in self.model_fields_set:
                raise ValueError("data.n_per_class applies to geomnist only (digits has a fixed size)")
            return digits(val_fraction=self.val_fraction, seed=self.seed)
        return geomnist(self.n_per_class, val_fraction=self.val_fraction, seed=self.seed)


class NetworkSpec(_Strict):
    """The network of the trajectories experiment: `lenet` (for 32 x 32 images) or a
    plain `mlp` (width, depth, activation)."""

    name: Literal["lenet", "mlp"] = "lenet"
    width: Annotated[int, Field(ge=1)] = 100
    depth: Annotated[int, Field(ge=1)] = 3
    activation: Literal["relu", "tanh", "linear"] = "relu"

    @model_validator(mode="after")
    def _options(self):
        if self.name == "lenet":
            extra = {"width", "depth", "activation"} & self.model_fields_set
            if extra:
                raise ValueError(f"network.{sorted(extra)[0]} applies to mlp only, not lenet")
        return self

    def options(self) -> dict:
        if self.name == "mlp":
            return dict(width=self.width, depth=self.depth, activation=self.activation)
        return {}


class SGDSpec(_Strict):
    """SGD with batch size 1: `trials` independent runs of `steps` steps; validation every
    `eval_every` steps; `snapshots` > 0 saves the logits of all training samples at about
    that many log-spaced steps (multiples of eval_every); `impact_checkpoints` > 0
    measures the tangent-kernel impact matrix (on `impact_samples` training samples per
    class) at about that many log-spaced steps."""

    trials: Annotated[int, Field(ge=1)] = 100
    steps: Annotated[int, Field(ge=1)] = 10_000
    learning_rate: Positive = 0.005
    eval_every: Annotated[int, Field(ge=1)] = 100
    sampling: Literal["uniform", "epoch"] = "uniform"
    snapshots: Annotated[int, Field(ge=0)] = 0
    impact_checkpoints: Annotated[int, Field(ge=0)] = 0
    impact_samples: Annotated[int, Field(ge=2)] = 10
    seed: int = 0


class TrajectoriesConfig(_Strict):
    """`lesde train` experiment 1: one log per label-corruption fraction in `corruption`
    (a fraction p of each class's training labels flipped evenly to the other classes)."""

    experiment: Literal["trajectories"]
    data: DataSpec = DataSpec()
    network: NetworkSpec = NetworkSpec()
    corruption: Annotated[list[Unit], Field(min_length=1)] = [0.0]
    corruption_seed: int = 0
    train: SGDSpec = SGDSpec()

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(self.corruption)) != len(self.corruption):
            raise ValueError(f"corruption: values must be distinct; got {self.corruption}")
        return self


def _unit_or_list(lo: float, hi: float, hi_open: bool = False):
    def check(v):
        vals = v if isinstance(v, list) else [v]
        if not vals:
            raise ValueError("an empty list")
        for x in vals:
            x = _fraction(x)
            if isinstance(x, bool) or not isinstance(x, int | float):
                raise ValueError(f"must be a number or a list of numbers; got {x!r}")
            if not (lo <= x and (x < hi if hi_open else x <= hi)):
                raise ValueError(f"values must lie in [{lo}, {hi}{')' if hi_open else ']'}; got {x}")
        return [float(_fraction(x)) for x in v] if isinstance(v, list) else float(_fraction(v))

    return Annotated[float | list[float], BeforeValidator(check)]


def _positive_or_list(v):
    vals = v if isinstance(v, list) else [v]
    if not vals:
        raise ValueError("an empty list")
    for x in vals:
        if isinstance(x, bool) or not isinstance(x, int | float) or not 0 < x < float("inf"):
            raise ValueError(f"values must be finite numbers > 0; got {x!r}")
    return v


class GridSpec(_Strict):
    """The grid of the separation experiment: each entry a number (fixed) or a list (an
    axis). negative_slope a in [0, 1] (0 = ReLU, 1 = linear), data_noise s in [0, 1],
    dropout q in [0, 1), learning_rate > 0, batch_size an int >= 2 or null (full batch)."""

    negative_slope: _unit_or_list(0.0, 1.0) = 0.0
    data_noise: _unit_or_list(0.0, 1.0) = 0.0
    dropout: _unit_or_list(0.0, 1.0, hi_open=True) = 0.0
    learning_rate: Annotated[float | list[float], BeforeValidator(_positive_or_list)] = 1e-3
    batch_size: Annotated[int, Field(ge=2)] | None | list[Annotated[int, Field(ge=2)] | None] = None


class SeparationTrainSpec(_Strict):
    """Adam training of the separation experiment: `seeds` per cell, `epochs`, the epochs
    at which D_l is measured (default 0 and the last), members trained at once."""

    seeds: Annotated[int, Field(ge=1)] = 10
    epochs: Annotated[int, Field(ge=1)] = 100
    eval_epochs: list[Annotated[int, Field(ge=0)]] | None = None
    chunk_size: Annotated[int, Field(ge=1)] | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _epochs(self):
        if self.eval_epochs is not None and max(self.eval_epochs, default=0) > self.epochs:
            raise ValueError(f"eval_epochs must lie in [0, epochs={self.epochs}]; got {self.eval_epochs}")
        return self


class MLPSpec(_Strict):
    """The BatchNorm MLP: `depth` linear layers (depth - 1 hidden blocks) of `width`."""

    width: Annotated[int, Field(ge=1)] = 100
    depth: Annotated[int, Field(ge=2)] = 8


class SeparationConfig(_Strict):
    """`lesde train` experiment 2: layer-wise data separation over a noise x
    nonlinearity grid."""

    experiment: Literal["separation"]
    data: DataSpec = DataSpec(name="digits")
    network: MLPSpec = MLPSpec()
    grid: GridSpec = GridSpec()
    train: SeparationTrainSpec = SeparationTrainSpec()


TrainConfig = Annotated[TrajectoriesConfig | SeparationConfig, Discriminator("experiment")]


def load_train_config(path) -> TrajectoriesConfig | SeparationConfig:
    """Read and validate a `lesde train` YAML configuration (`experiment` picks the
    schema); ConfigError names the offending key and value."""
    from pathlib import Path

    from pydantic import TypeAdapter, ValidationError

    from ._config import _format, ConfigError, read_yaml

    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict) or data.get("experiment") not in ("trajectories", "separation"):
        got = data.get("experiment") if isinstance(data, dict) else data
        raise ConfigError(
            f"invalid configuration {path}: experiment must be 'trajectories' or 'separation' (got {got!r})"
        )
    try:
        return TypeAdapter(TrainConfig).validate_python(data)
    except ValidationError as e:
        raise ConfigError(_format(e, str(path))) from None
