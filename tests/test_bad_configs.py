"""A catalogue of bad configurations of every command (`lesde simulate`, `sweep`,
`spring`, `train`, `fit`): each is refused before anything runs with a ConfigError whose
message names the key path and the offending value (or the count and the memory it
would need). Every case is written to a YAML file and read by the command's loader."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import lesde.runs._config as config_module
from lesde.cli import main
from lesde.runs import (
    BoundaryConfig, ConfigError, load_config, load_fit_config, load_train_config, SpringRunConfig, SweepConfig,
)

CONFIGS = Path(__file__).parent.parent / "configs"
MACHINE = 24 * 10**9  # the memory the checks see in these tests: "24 GB"

RUN = {
    "model": {
        "gradient": "ce", "num_classes": 3, "per_class": 4,
        "impact": {"alpha": 1.0, "beta": 0.2}, "noise": {"independent": 0.05},
    },
    "solve": {"t1": 1.0, "dt": 0.1, "num_saves": 3, "seed": 0},
}
SWEEP = {
    "model": {
        "gradient": "identity", "num_classes": 3, "per_class": 5,
        "impact": {"alpha": 0.0, "beta": 0.0}, "noise": {"independent": 0.1},
    },
    "sweep": {
        "axes": [{"impact.alpha": {"linspace": [-0.1, 0.1, 5]},
                  "impact.beta": {"linspace": [0.05, -0.05, 5]}}],
        "seeds": 2,
        "metrics": ["ncm_error"],
    },
    "solve": {"t1": 10.0, "dt": 1.0},
}
SPRING = {"model": {"kind": "spring_map"}, "solve": {"t1": 100, "dt": 1, "num_saves": 11, "seeds": 2}}
TRAJ = {
    "experiment": "trajectories",
    "data": {"name": "geomnist", "n_per_class": 8, "val_fraction": 0.25},
    "network": {"name": "mlp", "width": 12, "depth": 2},
    "corruption": [0.0, "2/3"],
    "train": {"trials": 3, "steps": 40, "learning_rate": 0.05, "eval_every": 20},
}
SEP = {
    "experiment": "separation",
    "data": {"name": "geomnist", "n_per_class": 10, "val_fraction": 0.3},
    "network": {"width": 8, "depth": 3},
    "grid": {"data_noise": [0.0, 0.5], "negative_slope": [0.0, 1.0]},
    "train": {"seeds": 2, "epochs": 2},
}
FIT = {
    "model": {"kind": "le_ode", "impact": {"time": "constant", "alpha": 1.0e-3}},
    "loss": {"kind": "class_mean", "num_steps": 50},
}

BASES = {"run": RUN, "sweep": SWEEP, "spring": SPRING, "traj": TRAJ, "sep": SEP, "fit": FIT}
LOADERS = {
    "run": load_config,
    "sweep": lambda p: load_config(p, schema=SweepConfig),
    "spring": lambda p: load_config(p, schema=SpringRunConfig),
    "traj": load_train_config,
    "sep": load_train_config,
    "fit": load_fit_config,
}

DROP = object()  # as a value: remove the key


@pytest.fixture(autouse=True)
def machine_of_24_gb(monkeypatch):
    monkeypatch.setattr(config_module, "physical_memory", lambda: MACHINE)


def edited(kind: str, edits: dict) -> dict:
    """The base config of `kind` with edits {key path tuple: value}."""
    cfg = copy.deepcopy(BASES[kind])
    for path, value in edits.items():
        d = cfg
        for k in path[:-1]:
            d = d.setdefault(k, {}) if isinstance(d, dict) else d[k]
        if value is DROP:
            del d[path[-1]]
        else:
            d[path[-1]] = value
    return cfg


def write(tmp_path: Path, cfg_or_text, name="c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(cfg_or_text if isinstance(cfg_or_text, str) else yaml.safe_dump(cfg_or_text))
    return path


M = ("model",)
S = ("solve",)
W = ("sweep",)
AX0 = ("sweep", "axes", 0)
T = ("train",)
INT32 = r"less than or equal to 2147483647"
HAS = r"; the machine has 24 GB"

# (kind, edits, regex on the message)
CATALOGUE = {
    # --- lesde simulate (RunConfig)
    "run-bool-for-float": ("run", {M + ("impact", "alpha"): True},
                           r"model\.impact\.alpha: Input should be a valid number.*\(got True\)"),
    "run-string-for-float": ("run", {S + ("t1",): "10"},
                             r"solve\.t1: Input should be a valid number \(got '10'\)"),
    "run-string-dt": ("run", {S + ("dt",): "0.1"},
                      r"solve\.dt: Input should be a valid number \(got '0\.1'\)"),
    "run-float-for-int": ("run", {M + ("per_class",): 3.5},
                          r"model\.per_class: Input should be a valid integer \(got 3\.5\)"),
    "run-float-in-int-list": ("run", {M + ("per_class",): DROP, M + ("class_sizes",): [1, 2.0, 3]},
                              r"model\.class_sizes\.1: Input should be a valid integer \(got 2\.0\)"),
    "run-bool-for-literal": ("run", {M + ("gradient",): True},
                             r"model\.gradient: Input should be 'identity'.* \(got True\)"),
    "run-string-for-float-init": ("run", {M + ("init",): {"std": "0.05"}},
                                  r"model\.init\.std: Input should be a valid number \(got '0\.05'\)"),
    "run-infinite-t1": ("run", {S + ("t1",): float("inf")},
                        r"solve\.t1: Input should be a finite number \(got inf\)"),
    "run-nan-dt": ("run", {S + ("dt",): float("nan")},
                   r"solve\.dt: Input should be a finite number \(got nan\)"),
    "run-nan-noise": ("run", {M + ("noise", "independent"): float("nan")},
                      r"model\.noise\.independent: Input should be a finite number \(got nan\)"),
    "run-steps-beyond-int32": ("run", {S + ("t1",): 1e12},
                               r"solve: t1 / dt = 1000000000000\.0 / 0\.1 = 1e\+13 steps; the "
                               r"solver counts steps in int32 \(at most 2\*\*31 - 1 = 2147483647"),
    "run-no-step": ("run", {S + ("t1",): 1e-9, S + ("dt",): 1},
                    r"solve: t1 / dt must be a whole number of steps >= 1, got t1 = 1e-09 < dt = 1"),
    "run-negative-seed": ("run", {S + ("seed",): -1},
                          r"solve\.seed: Input should be greater than or equal to 0 \(got -1\)"),
    "run-seed-beyond-32-bits": ("run", {S + ("seed",): 2**32},
                                r"solve\.seed: Input should be less than or equal to 4294967295 "
                                r"\(got 4294967296\)"),
    "run-float-seed": ("run", {S + ("seed",): 1.0},
                       r"solve\.seed: Input should be a valid integer \(got 1\.0\)"),
    "run-count-beyond-int32": ("run", {M + ("per_class",): 2**31},
                               rf"model\.per_class: Input should be {INT32} \(got 2147483648\)"),
    "run-labels-beyond-int32": ("run", {M + ("num_classes",): 2**20, M + ("per_class",): 2**12},
                                r"model: N = 4\.29e9 samples; the labels are int32 \(at most "
                                r"2\*\*31 - 1 = 2147483647 samples\)"),
    "run-state-too-big": ("run", {M + ("num_classes",): 10**6},
                          r"model: 4e6 samples x 10\^6 features need 32 TB for the state" + HAS),
    "run-saves-too-big": ("run", {S + ("num_saves",): 10**9},
                          r"solve\.num_saves: 10\^9 save times x 14 saved values need 112 GB for "
                          r"the saved trajectory" + HAS),
    "run-one-save": ("run", {S + ("num_saves",): 1},
                     r"solve\.num_saves: Input should be greater than or equal to 2 \(got 1\)"),
    "run-unknown-key": ("run", {M + ("speed",): 3}, r"model\.speed: unknown key \(got 3\)"),
    # --- lesde sweep (SweepConfig)
    "sweep-float-seeds": ("sweep", {W + ("seeds",): 2.0},
                          r"sweep\.seeds: Input should be a valid integer \(got 2\.0\)"),
    "sweep-string-in-axis": ("sweep", {AX0 + ("impact.alpha",): [0.1, "a"],
                                       AX0 + ("impact.beta",): [0, 1]},
                             r"sweep\.axes\.0\.impact\.alpha\.1: Input should be a valid number "
                             r"\(got 'a'\)"),
    "sweep-bool-in-axis": ("sweep", {AX0 + ("impact.alpha",): [True], AX0 + ("impact.beta",): [0.0]},
                           r"sweep\.axes\.0\.impact\.alpha\.0: Input should be a valid number "
                           r"\(got True\)"),
    "sweep-infinite-in-axis": ("sweep", {AX0 + ("impact.alpha",): [0.1, float("inf")],
                                         AX0 + ("impact.beta",): [0, 1]},
                               r"sweep\.axes\.0\.impact\.alpha\.1: Input should be a finite number "
                               r"\(got inf\)"),
    "sweep-zipped-lengths": ("sweep", {AX0 + ("impact.beta",): {"linspace": [0, 1, 4]}},
                             r"sweep\.axes\[0\]: zipped parameters must have equal lengths, got "
                             r"impact\.alpha: 5, impact\.beta: 4"),
    "sweep-float-num": ("sweep", {AX0 + ("impact.beta",): {"linspace": [0, 1, 5.0]}},
                        r"sweep\.axes\.0\.impact\.beta\.linspace\.2: Input should be a valid "
                        r"integer \(got 5\.0\)"),
    "sweep-logspace-overflow": ("sweep", {AX0 + ("impact.beta",): {"logspace": [0, 400, 5]}},
                                r"sweep\.axes\.0\.impact\.beta: logspace: 10\^400 is beyond the "
                                r"float64 range"),
    "sweep-empty-axis": ("sweep", {W + ("axes",): [{}]}, r"sweep\.axes\[0\] is empty"),
    "sweep-axis-twice": ("sweep", {W + ("axes",): [{"impact.alpha": [1.0]},
                                                   {"impact.alpha": [2.0]}]},
                         r"sweep\.axes\[1\]: 'impact\.alpha' is swept on sweep\.axes\[0\] too"),
    "sweep-chunk-size-0": ("sweep", {W + ("chunk_size",): 0},
                           r"sweep\.chunk_size: Input should be greater than or equal to 1 "
                           r"\(got 0\)"),
    "sweep-metric-twice": ("sweep", {W + ("metrics",): ["loss", "loss"]},
                           r"sweep\.metrics: \['loss'\] named more than once"),
    "sweep-cells-beyond-int32": ("sweep", {W + ("axes",): [
                                     {"impact.alpha": {"linspace": [0, 1, 10**5]}},
                                     {"noise.independent": {"linspace": [0.01, 1, 10**5]}}]},
                                 r"sweep\.axes: 100000 x 100000 = 10\^10 cells; the cell index is "
                                 r"int32 \(at most 2\*\*31 - 1 = 2147483647 cells\)"),
    "sweep-results-too-big": ("sweep", {W + ("axes",): [
                                  {"impact.alpha": {"linspace": [0, 1, 10**4]}},
                                  {"noise.independent": {"linspace": [0.01, 1, 10**5]}}],
                                        W + ("seeds",): 1000},
                              r"sweep: 10\^9 cells x 1000 seeds need 8 TB for the results" + HAS),
    # a chunk holds at most the sweep's members: 10^9 of them here
    "sweep-chunk-too-big": ("sweep", {W + ("chunk_size",): 10**9, W + ("seeds",): 2 * 10**8},
                            r"sweep: 5 cells x 2e8 seeds need 8 GB for the results; 10\^9 members x "
                            r"45 state values need 360 GB for the states of a chunk \(368 GB in all\)"
                            + HAS),
    "sweep-axis-values-too-big": ("sweep", {W + ("axes",): [
                                      {"impact.alpha": {"linspace": [0, 1, 2**31 - 1]},
                                       "impact.beta": {"linspace": [0, 1, 2**31 - 1]}}],
                                      W + ("seeds",): 1},
                                  r"sweep: 2\.15e9 cells need 17\.2 GB for the results; 4\.29e9 "
                                  r"axis values need 172 GB for the axis values \(189 GB in all\)"
                                  + HAS),
    "sweep-float-t1-string": ("sweep", {S + ("t1",): "10"},
                              r"solve\.t1: Input should be a valid number \(got '10'\)"),
    "sweep-unknown-key": ("sweep", {W + ("speed",): 1}, r"sweep\.speed: unknown key \(got 1\)"),
    # --- lesde spring (SpringRunConfig)
    "spring-string-noise": ("spring", {M + ("noise",): "0.1"},
                            r"model\.spring_map\.noise: Input should be a valid number \(got '0\.1'\)"),
    "spring-float-num-saves": ("spring", {S + ("num_saves",): 11.0},
                               r"solve\.num_saves: Input should be a valid integer \(got 11\.0\)"),
    "spring-steps-beyond-int32": ("spring", {S + ("t1",): 2**31},
                                  r"solve: t1 / dt = 2147483648\.0 / 1\.0 = 2\.147e\+09 steps"),
    "spring-saves-too-big": ("spring", {S + ("seeds",): 10**9},
                             r"solve: 10\^9 seeds x 11 save times x 7 blocks need 616 GB for the "
                             r"saved positions; 10\^9 seeds x 7 state values need 56 GB for the "
                             r"states \(672 GB in all\)" + HAS),
    "spring-state-too-big": ("spring", {M + ("kind",): "spring_sde", M + ("num_blocks",): 2**31 - 1,
                                         S + ("dt",): 0.5, S + ("t1",): 10.0},
                             r"model\.spring_sde: num_blocks: 4\.29e9 state values need 34\.4 GB "
                             r"for the state" + HAS),
    "spring-bool-control": ("spring", {M + ("control",): False},
                            r"model\.spring_map\.control: Input should be 'displacement' or "
                            r"'force' \(got False\)"),
    # --- lesde train, trajectories
    "traj-float-for-int": ("traj", {("data", "n_per_class"): 3.5},
                           r"trajectories\.data\.n_per_class: Input should be a valid integer "
                           r"\(got 3\.5\)"),
    "traj-bool-corruption": ("traj", {("corruption",): [True]},
                             r"trajectories\.corruption\.0: Input should be a valid number "
                             r"\(got True\)"),
    "traj-decimal-string": ("traj", {("corruption",): ["0.5"]},
                            r"trajectories\.corruption\.0: not a number or a fraction a/b: '0\.5'"),
    "traj-string-steps": ("traj", {T + ("steps",): "10"},
                          r"trajectories\.train\.steps: Input should be a valid integer \(got '10'\)"),
    "traj-seed-range": ("traj", {("corruption_seed",): 2**32},
                        r"trajectories\.corruption_seed: Input should be less than or equal to "
                        r"4294967295 \(got 4294967296\)"),
    "traj-infinite-rate": ("traj", {T + ("learning_rate",): float("inf")},
                           r"trajectories\.train\.learning_rate: Input should be a finite number "
                           r"\(got inf\)"),
    "traj-log-too-big": ("traj", {T + ("trials",): 10**6, T + ("steps",): 10**6},
                         r"train: 10\^6 trials x 10\^6 steps x 6 values per step need 24 TB for "
                         r"the log of one block of trials; 2 fractions x 10\^6 trials x 10\^6 "
                         r"steps x 6 values per step need 48 TB for the logs of all corruption "
                         r"fractions \(72\.1 TB in all\)" + HAS),
    "traj-images-too-big": ("traj", {("data", "n_per_class"): 10**9},
                            r"trajectories\.data: n_per_class: 10\^9 images per class x 3 classes x "
                            r"1024 pixels need 12\.3 TB for the images" + HAS),
    # --- lesde train, separation
    "sep-bool-rate": ("sep", {("grid", "learning_rate"): [True]},
                      r"separation\.grid\.learning_rate: values must be finite numbers > 0; got True"),
    "sep-chunk-size-0": ("sep", {T + ("chunk_size",): 0},
                         r"separation\.train\.chunk_size: Input should be greater than or equal "
                         r"to 1 \(got 0\)"),
    "sep-epochs-beyond-int32": ("sep", {T + ("epochs",): 2**31},
                                rf"separation\.train\.epochs: Input should be {INT32}"),
    "sep-float-batch-size": ("sep", {("grid", "batch_size"): 2.5},
                             r"separation\.grid\.batch_size: Input should be a valid integer.* "
                             r"\(got 2\.5\)"),
    "sep-unknown-normalisation": ("sep", {("figure", "normalisation"): "global"},
                                  r"separation\.figure\.normalisation: Input should be 'cell' or "
                                  r"'panel'"),
    "sep-network-too-big": ("sep", {("network", "width"): 10**6, T + ("chunk_size",): 8},
                            r"separation: train: 8 members x 3 copies x 1e12 parameters need "
                            r"96\.1 TB for the parameters and Adam moments of a chunk" + HAS),
    # --- lesde fit
    "fit-bool-for-int": ("fit", {("data", "window"): True},
                         r"data\.window: Input should be a valid integer \(got True\)"),
    "fit-float-steps": ("fit", {("optimizer", "steps"): 1000.0},
                        r"optimizer\.steps: Input should be a valid integer \(got 1000\.0\)"),
    "fit-string-bool": ("fit", {M + ("fit_noise",): "true"},
                        r"model\.fit_noise: Input should be a valid boolean \(got 'true'\)"),
    "fit-nan-alpha": ("fit", {M + ("impact", "alpha"): float("nan")},
                      r"model\.impact\.alpha: Input should be a finite number \(got nan\)"),
    "fit-negative-seed": ("fit", {("loss", "seed"): -1},
                          r"loss\.seed: Input should be greater than or equal to 0 \(got -1\)"),
    "fit-solver-steps-beyond-int32": ("fit", {("loss", "num_steps"): 2**31},
                                      rf"loss\.num_steps: Input should be {INT32} \(got 2147483648\)"),
    "fit-knots-beyond-int32": ("fit", {M + ("impact",): {"time": "piecewise_linear", "knots": 2**31}},
                               r"model\.impact\.knots: a number of knots must be in "
                               r"\[2, 2\*\*31 - 1\], got 2147483648"),
    "fit-ensemble-too-big": ("fit", {M + ("kind",): "le_sde", M + ("samples_per_class",): 10**6,
                                     ("loss", "ensemble"): 10**6},
                             r"loss\.ensemble: 10\^6 members x 10\^6 samples per class x 2 classes x "
                             r"2 features need 32 TB for the LE-SDE ensemble's states" + r".*" + HAS),
    "fit-unknown-key": ("fit", {("surprise",): 1}, r"surprise: unknown key \(got 1\)"),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_bad_config_is_refused_naming_key_and_value(tmp_path, case):
    kind, edits, pattern = CATALOGUE[case]
    path = write(tmp_path, edited(kind, edits))
    with pytest.raises(ConfigError, match=pattern):
        LOADERS[kind](path)


def test_a_chunk_larger_than_a_small_sweep_is_accepted(tmp_path):
    """A chunk never holds more members than the sweep, so a large chunk_size on a small
    sweep needs no memory of its own."""
    config = LOADERS["sweep"](write(tmp_path, edited("sweep", {W + ("chunk_size",): 10**9})))
    assert config.sweep.chunk_size == 10**9


# YAML written by hand: keys given twice, YAML's own spellings of infinity and NaN
YAML_CASES = {
    "run-duplicate-key": ("run", "model:\n  gradient: ce\n  num_classes: 3\n  per_class: 4\n"
                                 "  impact: {alpha: 1.0, beta: 0.2}\nsolve:\n  t1: 1.0\n  dt: 0.1\n"
                                 "  t1: 2.0\n",
                          r"key 'solve\.t1' is given twice, at line 7 and at line 9"),
    "sweep-duplicate-axis-parameter": (
        "sweep", "model: {gradient: identity, num_classes: 3, per_class: 5,\n"
                 "        impact: {alpha: 0.0, beta: 0.0}}\n"
                 "sweep:\n  axes:\n    - impact.alpha: [0.1, 0.2]\n      impact.alpha: [0.3]\n"
                 "solve: {t1: 1.0, dt: 0.1}\n",
        r"key 'sweep\.axes\[0\]\.impact\.alpha' is given twice, at line 5 and at line 6"),
    "train-duplicate-key": ("traj", "experiment: trajectories\ntrain:\n  steps: 10\n  steps: 20\n",
                            r"key 'train\.steps' is given twice, at line 3 and at line 4"),
    "fit-duplicate-key": ("fit", "data: {window: 5, window: 6}\n",
                          r"key 'data\.window' is given twice, at line 1, column 8 and at "
                          r"line 1, column 19"),
    "run-yaml-inf": ("run", "model: {num_classes: 3, per_class: 4, impact: {alpha: 1.0, beta: 0.2}}\n"
                            "solve: {t1: .inf, dt: 0.1}\n",
                     r"solve\.t1: Input should be a finite number \(got inf\)"),
    "run-yaml-nan": ("run", "model: {num_classes: 3, per_class: 4, impact: {alpha: .nan, beta: 0.2}}\n"
                            "solve: {t1: 1.0, dt: 0.1}\n",
                     r"model\.impact\.alpha: Input should be a finite number \(got nan\)"),
    "run-quoted-number": ("run", "model: {num_classes: 3, per_class: '4',\n"
                                 "        impact: {alpha: 1.0, beta: 0.2}}\n"
                                 "solve: {t1: 1.0, dt: 0.1}\n",
                          r"model\.per_class: Input should be a valid integer \(got '4'\)"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_bad_yaml_is_refused_naming_key_and_line(tmp_path, case):
    kind, text, pattern = YAML_CASES[case]
    with pytest.raises(ConfigError, match=pattern):
        LOADERS[kind](write(tmp_path, text))


def test_what_stays_accepted(tmp_path):
    """Ints where floats are expected, lists for [start, stop, num], "a/b" fractions,
    and exponent notation without a dot (which YAML 1.1 would read as a string)."""
    cfg = load_config(write(tmp_path, "model: {num_classes: 3, per_class: 4,\n"
                                      "        impact: {alpha: 1, beta: 2e-1}}\n"
                                      "solve: {t1: 1, dt: 1e-1, seed: 4294967295}\n"))
    assert cfg.model.impact.alpha == 1.0 and cfg.model.impact.beta == 0.2
    assert cfg.solve.dt == 0.1 and cfg.solve.seed == 2**32 - 1
    sweep = load_config(write(tmp_path, edited("sweep", {}), "s.yaml"), schema=SweepConfig)
    assert sweep.sweep.axes[0]["impact.alpha"].linspace == (-0.1, 0.1, 5)
    train = load_train_config(write(tmp_path, edited("traj", {}), "t.yaml"))
    assert train.corruption == [0.0, 2 / 3]
    text = write(tmp_path, "experiment: trajectories\ntrain: {learning_rate: 1e-3}\n", "u.yaml")
    assert load_train_config(text).train.learning_rate == 1e-3
    # a quoted exponent stays a string, and is refused
    quoted = write(tmp_path, "experiment: trajectories\ntrain: {learning_rate: '1e-3'}\n", "q.yaml")
    with pytest.raises(ConfigError, match=r"train\.learning_rate: Input should be a valid number"):
        load_train_config(quoted)


def test_shipped_configs_still_load():
    for path in sorted(CONFIGS.glob("*.yaml")):
        if path.name.startswith(("train_", "separation_")):
            load_train_config(path)
        elif path.name.startswith("fit_"):
            load_fit_config(path)
        else:
            data = yaml.safe_load(path.read_text())
            spring = data["model"].get("kind", "le_sde") != "le_sde"
            load_config(path, schema=SweepConfig if "sweep" in data else
                        BoundaryConfig if "boundary" in data else
                        SpringRunConfig if spring else None)
    load_config(None)
    load_config(None, schema=SpringRunConfig)


# ---------------------------------------------------------------------------------
# The command line: exit status 2, the message on stderr, nothing written


@pytest.mark.parametrize("value, shown", [("0", "got 0"), ("-3", "got -3"), ("many", "got 'many'")])
def test_sweep_chunk_size_must_be_positive(tmp_path, capsys, value, shown):
    cfg = write(tmp_path, SWEEP)
    with pytest.raises(SystemExit) as exit:
        main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--chunk-size", value])
    assert exit.value.code == 2
    assert f"argument --chunk-size: must be an integer >= 1, {shown}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "command, kind, edits, message",
    [
        ("simulate", "run", {S + ("t1",): "10"}, "solve.t1: Input should be a valid number (got '10')"),
        ("spring", "spring", {S + ("seeds",): 10**9}, "need 616 GB for the saved positions"),
        ("sweep", "sweep", {AX0 + ("impact.beta",): [0.0]},
         "zipped parameters must have equal lengths, got impact.alpha: 5, impact.beta: 1"),
        ("train", "traj", {T + ("seed",): -1}, "trajectories.train.seed: Input should be greater"),
        ("fit", "fit", {("loss", "ensemble"): 0}, "loss.ensemble: Input should be greater"),
    ],
)
def test_commands_exit_2_naming_the_key(tmp_path, capsys, command, kind, edits, message):
    cfg, out = str(write(tmp_path, edited(kind, edits))), str(tmp_path / "o")
    args = {"fit": ["fit", str(tmp_path / "no_log.nc"), "--config", cfg, "--out", out]}.get(
        command, [command, cfg, "--out", out]
    )
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_chunk_size_0_exit_status_of_the_process(tmp_path):
    cfg = write(tmp_path, SWEEP)
    done = subprocess.run(
        [sys.executable, "-m", "lesde.cli", "sweep", str(cfg), "--out", str(tmp_path / "o"),
         "--chunk-size", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "argument --chunk-size: must be an integer >= 1, got 0" in done.stderr
