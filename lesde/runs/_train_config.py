"""Configurations of `lesde train` (YAML), validated by a pydantic schema before any
training. Two experiments, chosen by `experiment`:

- `trajectories` (the LE-SDE authors'): SGD with batch size 1 on a network, many trials,
  per-step logits of the drawn sample; one log per label-corruption fraction p.
- `separation` (the spring-block authors'): the BatchNorm MLP with Adam on a grid of
  nonlinearity (leaky slope) and noise (data noise, learning rate, dropout, batch size),
  per-layer data separation and load curves.

Fractions may be written as numbers or as "a/b" strings (e.g. "2/3"); no other string
is a number, and no boolean. Refused before any training: a value of the wrong type (no
coercion: `n_per_class: 3.5`, `steps: "10"`, `learning_rate: true`), a non-finite number,
a key given twice, a seed outside [0, 2**32 - 1], a count below its minimum or above
2**31 - 1, and a run whose log, snapshots, data or network parameters need more memory
than the machine has.
"""

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, model_validator

from ..plot import NORMALISATIONS
from ._config import _Strict, check_memory, Count, Seed

_CLASSES = {"digits": 10, "geomnist": 3, "mnist1d": 10}
_INPUTS = {"digits": 8 * 8, "geomnist": 32 * 32, "mnist1d": 40}


def _fraction(v: Any) -> Any:
    """A string "a/b" (a, b whole numbers, b > 0) as a float; anything else unchanged."""
    if isinstance(v, str):
        m = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", v)
        try:
            return int(m[1]) / int(m[2])
        except (TypeError, ZeroDivisionError, OverflowError):  # no match, b = 0, too large
            raise ValueError(f"not a number or a fraction a/b: {v!r}") from None
    return v


Unit = Annotated[float, BeforeValidator(_fraction), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class DataSpec(_Strict):
    """The data set: scikit-learn's `digits` (`size` x `size` images, upsampled from
    8 x 8 when size > 8), the synthetic `geomnist` or `mnist1d` (their `n_per_class`
    samples per class), split per class into training and validation."""

    name: Literal["digits", "geomnist", "mnist1d"] = "geomnist"
    n_per_class: Count(2) = 200
    size: Annotated[int, Field(ge=8, le=64, strict=True)] = 8
    val_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    seed: Seed = 0

    @model_validator(mode="after")
    def _applies(self):
        if self.name == "digits" and "n_per_class" in self.model_fields_set:
            raise ValueError("data.n_per_class applies to geomnist and mnist1d only (digits has a fixed size)")
        if self.name != "digits" and "size" in self.model_fields_set:
            raise ValueError(f"data.size applies to digits only, not {self.name}")
        return self

    @model_validator(mode="after")
    def _memory(self):
        if self.name == "geomnist":
            check_memory("n_per_class", [
                ("the images", {"images per class": self.n_per_class, "classes": 3,
                                "pixels": _INPUTS["geomnist"]}, 4),
            ])
        return self

    @property
    def num_classes(self) -> int:
        return _CLASSES[self.name]

    @property
    def num_train(self) -> int:
        """About the number of training samples."""
        total = 1797 if self.name == "digits" else self.num_classes * self.n_per_class
        return max(1, math.floor(total * (1 - self.val_fraction)))

    @property
    def num_inputs(self) -> int:
        """Values per sample."""
        return self.size**2 if self.name == "digits" else _INPUTS[self.name]

    def parameters(self, width: int, depth: int) -> int:
        """Weights and biases of a dense network of `depth` linear layers of `width` on
        this data set's inputs."""
        sizes = [self.num_inputs] + [width] * (depth - 1) + [self.num_classes]
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    def build(self):
        from ..nets import digits, geomnist, mnist1d

        if self.name == "digits":
            return digits(val_fraction=self.val_fraction, seed=self.seed, size=self.size)
        if self.name == "mnist1d":
            return mnist1d(self.n_per_class, val_fraction=self.val_fraction, seed=self.seed)
        return geomnist(self.n_per_class, val_fraction=self.val_fraction, seed=self.seed)


class NetworkSpec(_Strict):
    """The network of the trajectories experiment: `lenet` (for 32 x 32 images) or a
    plain `mlp` (width, depth, activation)."""

    name: Literal["lenet", "mlp"] = "lenet"
    width: Count(1) = 100
    depth: Count(1) = 3
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
    class) at about that many log-spaced steps. `trials_per_block` (default: all trials
    in one block) trains each corruption fraction in blocks of that many trials, each
    written as a part file when finished, so that an interrupted run resumes at the
    first missing block; a block larger than `trials` is one block of all trials."""

    trials: Count(1) = 100
    trials_per_block: Count(1) | None = None
    steps: Count(1) = 10_000
    learning_rate: Positive = 0.005
    eval_every: Count(1) = 100
    sampling: Literal["uniform", "epoch"] = "uniform"
    snapshots: Count(0) = 0
    impact_checkpoints: Count(0) = 0
    impact_samples: Count(2) = 10
    seed: Seed = 0


class TrajectoriesConfig(_Strict):
    """`lesde train` experiment 1: one log per label-corruption fraction in `corruption`
    (a fraction p of each class's training labels flipped evenly to the other classes)."""

    experiment: Literal["trajectories"]
    data: DataSpec = DataSpec()
    network: NetworkSpec = NetworkSpec()
    corruption: Annotated[list[Unit], Field(min_length=1)] = [0.0]
    corruption_seed: Seed = 0
    train: SGDSpec = SGDSpec()

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(self.corruption)) != len(self.corruption):
            raise ValueError(f"corruption: values must be distinct; got {self.corruption}")
        return self

    @property
    def block_size(self) -> int:
        """Trials trained at once: `train.trials_per_block`, at most `train.trials`."""
        return min(self.train.trials, self.train.trials_per_block or self.train.trials)

    @model_validator(mode="after")
    def _memory(self):
        """Refuse a run that needs more memory than the machine has (4 bytes a value):
        the arrays of the block being trained (block trials x steps x (K + 3) values:
        sample, label, loss, K logits; snapshots, block trials x snapshot steps x
        training samples x K; for an MLP the block's parameters and gradients), plus the
        logs of all trials of every corruption fraction, which are held for the summary
        and the figures, and, when a fraction is trained in several blocks, one more
        copy of a fraction's log while its parts are joined."""
        t, d, K = self.train, self.data, self.data.num_classes
        block, fractions = self.block_size, len(self.corruption)
        blocked = block < t.trials
        snap = {"snapshot steps": t.snapshots + 2, "training samples": d.num_train, "classes": K}
        parts = [("the log of one block of trials",
                  {"trials": block, "steps": t.steps, "values per step": K + 3}, 4)]
        if t.snapshots:
            parts.append(("the snapshots of one block of trials", {"trials": block, **snap}, 4))
        if self.network.name == "mlp":
            n = self.network
            parts.append(("the network parameters and gradients of one block of trials",
                          {"trials": block, "copies": 2,
                           "parameters": d.parameters(n.width, n.depth)}, 4))
        parts.append(("the logs of all corruption fractions" + (" and the joining of one" if blocked else ""),
                      {"fractions": fractions + blocked, "trials": t.trials, "steps": t.steps,
                       "values per step": K + 3}, 4))
        if t.snapshots:
            parts.append(("the snapshots of all corruption fractions",
                          {"fractions": fractions + blocked, "trials": t.trials, **snap}, 4))
        check_memory("train", parts)
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
    batch_size: Count(2) | None | list[Count(2) | None] = None

    def num_cells(self) -> int:
        """Grid cells (batch sizes included)."""
        axes = (self.negative_slope, self.data_noise, self.dropout, self.learning_rate,
                self.batch_size)
        return math.prod(len(a) if isinstance(a, list) else 1 for a in axes)


class PanelSpec(GridSpec):
    """One panel of a phase diagram: the entries of `grid` it changes, and optionally its
    own number of `epochs` (the authors train the learning-rate panel for 200)."""

    epochs: Count(1) | None = None


class SeparationTrainSpec(_Strict):
    """Adam training of the separation experiment: `seeds` per cell, `epochs`, the epochs
    at which D_l is measured (default 0 and the last), the separation `measure` of the
    load curve (see `lesde.nets.MEASURES`; the authors plot log_trace_ratio), early
    stopping at a mean epoch loss below `stop_loss` (null: never), members trained at
    once."""

    seeds: Count(1) = 10
    epochs: Count(1) = 100
    eval_epochs: list[Count(0)] | None = None
    measure: Literal["log_trace_ratio", "trace_ratio", "log_fuzziness", "fuzziness"] = "log_trace_ratio"
    stop_loss: Positive | None = 1e-4
    chunk_size: Count(1) | None = None
    seed: Seed = 0

    @model_validator(mode="after")
    def _epochs(self):
        if self.eval_epochs is not None and max(self.eval_epochs, default=0) > self.epochs:
            raise ValueError(f"eval_epochs must lie in [0, epochs={self.epochs}]; got {self.eval_epochs}")
        return self


class MLPSpec(_Strict):
    """The BatchNorm MLP: `depth` linear layers (depth - 1 hidden blocks) of `width`."""

    width: Count(1) = 100
    depth: Count(2) = 8


class SeparationFigureSpec(_Strict):
    """The figures of the separation experiment: how the load curves are scaled to their
    cells (`lesde.plot.NORMALISATIONS`): 'cell', each min-max normalised (the authors'
    figures), or 'panel', the measure on one range for all cells of a panel. The figures
    only: the results and their fingerprint do not depend on it."""

    normalisation: Literal[NORMALISATIONS] = "cell"


_PANEL_NAME = re.compile(r"[a-z][a-z0-9_]*")


class SeparationConfig(_Strict):
    """`lesde train` experiment 2: layer-wise data separation over a noise x
    nonlinearity grid, or over several grids: `panels` (name -> the entries of `grid` it
    changes, and its epochs), each trained as its own computation and written to its own
    file, drawn side by side as the panels of one phase diagram."""

    experiment: Literal["separation"]
    data: DataSpec = DataSpec(name="digits")
    network: MLPSpec = MLPSpec()
    grid: GridSpec = GridSpec()
    panels: Annotated[dict[str, PanelSpec], Field(min_length=1)] | None = None
    train: SeparationTrainSpec = SeparationTrainSpec()
    figure: SeparationFigureSpec = SeparationFigureSpec()

    @model_validator(mode="after")
    def _panel_names(self):
        for name in self.panels or {}:
            if not _PANEL_NAME.fullmatch(name):
                raise ValueError(
                    f"panels: a name must be lower-case letters, digits and _ starting with a "
                    f"letter (it names a file); got {name!r}"
                )
        return self

    def grids(self) -> dict[str | None, tuple[GridSpec, int]]:
        """{panel name: (its grid, its epochs)}; {None: (grid, epochs)} without panels."""
        if not self.panels:
            return {None: (self.grid, self.train.epochs)}
        out = {}
        for name, panel in self.panels.items():
            changed = panel.model_dump(exclude_unset=True)
            epochs = changed.pop("epochs", None) or self.train.epochs
            grid = GridSpec.model_validate({**self.grid.model_dump(), **changed})
            out[name] = (grid, epochs)
        return out

    @model_validator(mode="after")
    def _memory(self):
        """Refuse a chunk whose members' parameters and Adam moments (3 copies), and
        results (members x eval epochs x layers) that need more memory than the machine
        has (4 bytes a value)."""
        t, n = self.train, self.network
        for name, (grid, epochs) in self.grids().items():
            if t.eval_epochs is not None and max(t.eval_epochs, default=0) > epochs:
                where = "" if name is None else f" (panel {name} trains {epochs})"
                raise ValueError(f"eval_epochs must lie in [0, epochs={epochs}]{where}; got {t.eval_epochs}")
            members = grid.num_cells() * t.seeds
            check_memory("train" if name is None else f"panels.{name}", [
                ("the parameters and Adam moments of a chunk",
                 {"members": min(t.chunk_size or members, members), "copies": 3,
                  "parameters": self.data.parameters(n.width, n.depth)}, 4),
                ("the results", {"cells": grid.num_cells(), "seeds": t.seeds,
                                 "eval epochs": len(set(t.eval_epochs or [0, epochs])),
                                 "layers": n.depth}, 4),
            ])
        return self


TrainConfig = Annotated[TrajectoriesConfig | SeparationConfig, Discriminator("experiment")]


def load_train_config(path) -> TrajectoriesConfig | SeparationConfig:
    """Read (`lesde.io._config.read_yaml`: a key given twice is refused) and validate a
    `lesde train` YAML configuration (`experiment` picks the schema); ConfigError names
    the offending key and value."""
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
        raise ConfigError(_format(e, str(path), data)) from None
