"""`lesde simulate` and its configuration schema."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from cf_check import assert_cf

import lesde
from lesde.cli import main
from lesde.runs import BoundaryConfig, ConfigError, load_config, parse_config, SpringRunConfig, SweepConfig

CONFIGS = Path(__file__).parent.parent / "configs"

SMALL = {
    "model": {
        "gradient": "linear-ce",
        "num_classes": 3,
        "per_class": 4,
        "impact": {"alpha": 2.0, "beta": 0.5},
        "noise": {"independent": 0.01},
    },
    "solve": {"t1": 6.0, "dt": 0.1, "num_saves": 4, "seed": 3},
}


def write(tmp_path, cfg, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_simulate_writes_a_complete_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", str(write(tmp_path, SMALL)), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "status: success" in printed
    summary = json.loads((out / "summary.json").read_text())
    data = lesde.open_result(out)  # trajectory.nc
    assert_cf(out / "trajectory.nc")
    assert data["status"].item() == 0 and data["status"].attrs["flag_meanings"].startswith("success ")
    np.testing.assert_allclose(data["time"], [0, 2, 4, 6], atol=1e-6)
    assert data["class_means"].shape == (4, 3, 3)
    assert summary["final"]["loss"] == pytest.approx(float(data["loss"][-1]))
    # linear-ce: class means move along W^T d_k at rate (alpha - beta)/K (closed form);
    # the noise (sigma = 0.01, 4 samples a class) is far smaller than the motion.
    cm = data["class_means"].values
    d = np.eye(3) - 1 / 3
    np.testing.assert_allclose(cm[-1] - cm[0], 6.0 * (2.0 - 0.5) / 3 * d, atol=0.05)
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["gradient"] == "linear-ce"
    assert not list(out.glob(".*partial"))


# train_*.yaml and separation_*.yaml are `lesde train` configs, checked in
# test_train_cli.py; fit_*.yaml are `lesde fit` configs, checked in test_fit_cli.py
SOLVER_CONFIGS = sorted(
    p for p in CONFIGS.glob("*.yaml") if not p.name.startswith(("train_", "fit_", "separation_"))
)


@pytest.mark.parametrize("path", SOLVER_CONFIGS + [None], ids=str)
def test_shipped_configs_validate_and_build(path):
    data = {} if path is None else yaml.safe_load(path.read_text())
    kind = data.get("model", {}).get("kind", "le_sde")
    schema = (SweepConfig if "sweep" in data else BoundaryConfig if "boundary" in data
              else SpringRunConfig if kind != "le_sde" else None)
    cfg = load_config(path, schema=schema)
    model = cfg.model.build()
    expected = {
        "le_sde": lesde.LESDE, "spring_map": lesde.SpringBlockMap,
        "spring_sde": lesde.SpringBlockSDE,
    }
    assert isinstance(model, expected[kind])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["model"].update(speed=3), r"model.speed: unknown key"),
        (lambda c: c["model"].update(gradient="mse"), r"model.gradient: Input should be"),
        (lambda c: c["model"]["noise"].update(independent=-0.1), r"noise.independent sigma must be >= 0, got -0.1"),
        (lambda c: c["model"]["impact"].pop("beta"), r"needs both alpha and beta"),
        (lambda c: c["solve"].update(dt="small"), r"solve.dt: Input should be a valid number"),
        (lambda c: c["solve"].update(dt=0.25, t1=1.1), r"whole number of steps"),
        (lambda c: c["solve"].update(solver="rk4"), r"solve.solver"),
        (lambda c: c["model"].update(class_sizes=[1, 2]), r"exactly one of per_class and class_sizes"),
        (
            lambda c: c["model"]["impact"].update(alpha={"power_law": {"c": 1.0}}),
            r"model.impact.alpha: power_law needs the argument 'r'",
        ),
    ],
)
def test_bad_configs_are_named(tmp_path, capsys, edit, match):
    cfg = json.loads(json.dumps(SMALL))
    edit(cfg)
    with pytest.raises(ConfigError, match=match):
        parse_config(cfg)
    out = tmp_path / "run"
    assert main(["simulate", str(write(tmp_path, cfg)), "--out", str(out), "--quiet"]) == 2
    assert "invalid configuration" in capsys.readouterr().err
    assert not out.exists()  # nothing computed or written


def test_model_level_errors_before_compute(tmp_path, capsys):
    cfg = json.loads(json.dumps(SMALL))
    cfg["model"].update(gradient="projected", dim=5)
    out = tmp_path / "run"
    assert main(["simulate", str(write(tmp_path, cfg)), "--out", str(out), "--quiet"]) == 2
    assert "projected model needs dim p = num_classes K" in capsys.readouterr().err
    assert not out.exists()


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


def test_rewriting_a_run_removes_the_complete_marker_first(tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = write(tmp_path, SMALL)
    assert main(["simulate", str(cfg), "--out", str(out), "--quiet"]) == 0

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(RuntimeError):
        main(["simulate", str(cfg), "--out", str(out), "--quiet"])
    assert not (out / "summary.json").exists()  # the interrupted run is not complete


def test_lesde_configs_lists_and_copies_the_installed_configs(tmp_path, capsys, monkeypatch):
    installed = lesde.runs.installed_configs()
    assert sorted(installed) == sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert installed["phase_transition"]["command"] == "sweep"
    assert installed["spring_map_authors"]["command"] == "spring"
    assert installed["fit_digits"]["command"] == "fit"
    assert installed["train_label_corruption"]["command"] == "train"
    assert installed["decaying_impacts"]["command"] == "simulate"
    assert main(["configs"]) == 0
    listed = capsys.readouterr().out
    for name, c in installed.items():
        assert f"lesde {c['command']}" in listed and name in listed
    monkeypatch.chdir(tmp_path)
    assert main(["configs", "phase_transition"]) == 0
    copied = tmp_path / "phase_transition.yaml"
    assert copied.read_text() == (CONFIGS / "phase_transition.yaml").read_text()
    assert "lesde sweep phase_transition.yaml --out DIR" in capsys.readouterr().out
    copied.write_text("edited\n")
    assert main(["configs", "phase_transition"]) == 2  # never replaced silently
    assert "exists; pass --force" in capsys.readouterr().err and copied.read_text() == "edited\n"
    assert main(["configs", "phase_transition.yaml", "--force"]) == 0
    assert copied.read_text() == (CONFIGS / "phase_transition.yaml").read_text()
    assert main(["configs", "fit_digits", "--out", "new/folder/"]) == 0
    assert (tmp_path / "new" / "folder" / "fit_digits.yaml").is_file()
    assert main(["configs", "no_such_config"]) == 2
    assert "no installed config 'no_such_config'" in capsys.readouterr().err
    # a copied config runs as it is
    parse_config(yaml.safe_load(copied.read_text()), schema=SweepConfig)


def test_progress_is_plain_lines_when_the_output_is_not_a_terminal(tmp_path, capsys):
    from lesde._progress import progress_bar

    with progress_bar(total=5, desc="work", unit="item", mininterval=0) as bar:
        for _ in range(5):
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("work:   0%") and lines[-1].startswith("work: 100%")
    assert all(line.strip() for line in lines) and "5/5" in lines[-1]
    with progress_bar(total=5, desc="off", unit="item", disable=True) as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""


def test_every_command_takes_quiet(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    listed = capsys.readouterr().out
    commands = [c for c in ("simulate", "sweep", "spring", "train", "fit", "plot", "configs") if c in listed]
    assert len(commands) == 7
    for command in commands:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--quiet" in capsys.readouterr().out, command
    assert main(["configs", "--quiet"]) == 0
