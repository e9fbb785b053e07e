"""`lesde train`: configuration checks, the two experiments end to end at toy sizes,
resuming, and the files written."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from cf_check import assert_cf

from lesde.cli import main
from lesde.io import read_log
from lesde.runs import ConfigError, load_train_config
from lesde.nets import corrupt_labels, geomnist

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

TRAJ = {
    "experiment": "trajectories",
    "data": {"name": "geomnist", "n_per_class": 8, "val_fraction": 0.25, "seed": 1},
    "network": {"name": "mlp", "width": 12, "depth": 2},
    "corruption": [0.0, "2/3"],
    "corruption_seed": 3,
    "train": {
        "trials": 3, "steps": 40, "learning_rate": 0.05, "eval_every": 20,
        "snapshots": 3, "impact_checkpoints": 2, "impact_samples": 3, "seed": 0,
    },
}

SEP = {
    "experiment": "separation",
    "data": {"name": "geomnist", "n_per_class": 10, "val_fraction": 0.3},
    "network": {"width": 8, "depth": 3},
    "grid": {"data_noise": [0.0, 0.5], "negative_slope": [0.0, 1.0]},
    "train": {"seeds": 2, "epochs": 2},
}


def _write(tmp_path, config, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "change, match",
    [
        ({"experiment": "other"}, "experiment must be 'trajectories' or 'separation'"),
        ({"epochs": 3}, "epochs"),
        ({"corruption": [0.0, 1.5]}, "corruption.1"),
        ({"corruption": ["2/x"]}, "not a number or a fraction"),
        ({"corruption": [0.5, "1/2"]}, "distinct"),
        ({"train": {"learning_rate": -1.0}}, "train.learning_rate"),
        ({"network": {"name": "lenet", "width": 3}}, "applies to mlp only"),
        ({"train": {"trials": 0}}, "train.trials"),
    ],
)
def test_trajectory_config_errors(tmp_path, change, match):
    config = {**TRAJ, **change}
    with pytest.raises(ConfigError, match=match):
        load_train_config(_write(tmp_path, config))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"grid": {"negative_slope": [0.0, 1.5]}}, "negative_slope"),
        ({"grid": {"dropout": 1.0}}, "dropout"),
        ({"grid": {"learning_rate": [0.1, -0.1]}}, "learning_rate"),
        ({"grid": {"batch_size": 1}}, "batch_size"),
        ({"train": {"epochs": 2, "eval_epochs": [5]}}, "eval_epochs"),
        ({"unknown": 1}, "unknown key"),
        ({"train": {"measure": "D"}}, "train.measure"),
        ({"train": {"stop_loss": 0}}, "train.stop_loss"),
        ({"data": {"name": "geomnist", "size": 10}}, "size applies to digits only"),
        ({"data": {"name": "digits", "size": 10.0}}, "data.size"),
        ({"data": {"name": "digits", "size": 6}}, "data.size"),
        ({"panels": {"Data noise": {"data_noise": [0.1]}}}, "lower-case letters"),
        ({"panels": {}}, "panels"),
        ({"panels": {"a": {"dropout": [1.0]}}}, "panels.a.dropout"),
        ({"panels": {"a": {"epochs": 0}}}, "panels.a.epochs"),
        ({"panels": {"a": {"seeds": 3}}}, "panels.a.seeds"),
        ({"panels": {"a": {"epochs": 1}}, "train": {"epochs": 2, "eval_epochs": [0, 2]}}, "panel a trains 1"),
    ],
)
def test_separation_config_errors(tmp_path, change, match):
    config = {**SEP, **change}
    with pytest.raises(ConfigError, match=match):
        load_train_config(_write(tmp_path, config))


PANELS = {
    **SEP,
    "network": {"width": 4, "depth": 2},
    "grid": {"negative_slope": [0.0, 1.0]},
    "panels": {"data_noise": {"data_noise": [0.0, 0.5]}, "dropout": {"dropout": [0.0, 0.2], "epochs": 1}},
}


def test_separation_panels_end_to_end_resume_and_stale_panels(tmp_path, capsys):
    """Each panel is trained and written on its own (separation_<panel>.nc, CF), the
    summary holds each panel's cells and phase-diagram reading, the figure has a panel
    each; a rerun keeps both files; a panel dropped from the config loses its file."""
    import xarray as xr

    out = tmp_path / "out"
    cfg = _write(tmp_path, PANELS)
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"separation_data_noise.nc", "separation_dropout.nc", "phase_diagram.png", "summary.json"} <= names
    assert "separation.nc" not in names and "load_curves.png" not in names
    for name, axis, epochs in (("data_noise", "data_noise", 2), ("dropout", "dropout", 1)):
        assert_cf(out / f"separation_{name}.nc")
        with xr.open_dataset(out / f"separation_{name}.nc") as ds:
            assert set(ds["curve"].dims) == {"negative_slope", axis, "seed", "epoch", "layer"}
            assert int(ds["epoch"][-1]) == epochs and ds.attrs["measure"] == "log_trace_ratio"
            assert np.all(ds["stop_epoch"].values == epochs)
    summary = json.loads((out / "summary.json").read_text())["results"]["panels"]
    assert set(summary) == {"data_noise", "dropout"}
    for name, panel in summary.items():
        assert len(panel["cells"]) == 4 and panel["reading"]["axis"] == name
        assert set(panel["reading"]["mean_rank_correlation"]) == {"value", "low", "high"}
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.count("kept (same configuration)") == 2
    fewer = {**PANELS, "panels": {"data_noise": PANELS["panels"]["data_noise"]}}
    assert main(["train", str(_write(tmp_path, fewer, "d.yaml")), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "removed separation_dropout.nc" in text and "kept (same configuration)" in text
    assert not (out / "separation_dropout.nc").exists()


def test_digits_refuses_n_per_class(tmp_path, capsys):
    config = {**SEP, "data": {"name": "digits", "n_per_class": 5}}
    assert main(["train", str(_write(tmp_path, config)), "--out", str(tmp_path / "o")]) == 2
    assert "n_per_class applies to geomnist and mnist1d only" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.name for p in [*CONFIGS.glob("train_*.yaml"), *CONFIGS.glob("separation_*.yaml")]))
def test_shipped_train_configs_parse(name):
    config = load_train_config(CONFIGS / name)
    assert config.experiment in ("trajectories", "separation")


def test_train_trajectories_end_to_end(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    cfg = _write(tmp_path, TRAJ)
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"log_p0.0000.nc", "log_p0.6667.nc", "logits.png", "validation.png", "summary.json"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == {"0.0000", "0.6667"}
    data = geomnist(8, val_fraction=0.25, seed=1)
    for p in (0.0, 2 / 3):
        log = read_log(out / f"log_p{p:.4f}.nc")
        assert log.sizes["trial"] == 3 and log.sizes["step"] == 40
        assert list(log["eval_step"].values) == [0, 20, 40]
        # the trained labels are the corrupted ones: exactly those of corrupt_labels
        expected, _ = corrupt_labels(data.y_train, p, 3, seed=3)
        np.testing.assert_array_equal(log["train_labels"], np.asarray(expected))
        np.testing.assert_array_equal(log["label"], np.asarray(expected)[log["sample"].values])
        assert log["impact"].shape == (3, log.sizes["impact_step"], 3, 3)
        assert np.isfinite(log["impact"]).all()
        assert np.isclose(log.attrs["corruption"], p)
    # at p = 2/3 with K = 3 every class keeps a third of its labels
    flipped = np.asarray(read_log(out / "log_p0.6667.nc")["train_labels"]) != np.asarray(data.y_train)
    assert flipped.sum() == round(2 / 3 * data.num_train)

    # a rerun of the same configuration keeps the finished logs
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.count("kept log_p") == 2

    # the fractions in another order: the same logs, and the figures in increasing p
    import lesde.runs._train as train_module

    drawn = []
    real = train_module.plot_logit_trajectories
    monkeypatch.setattr(train_module, "plot_logit_trajectories",
                        lambda logs, **kw: (drawn.append(list(logs)), real(logs, **kw))[1])
    reordered = _write(tmp_path, {**TRAJ, "corruption": ["2/3", 0.0]}, "reordered.yaml")
    assert main(["train", str(reordered), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.count("kept log_p") == 2
    assert drawn == [["p = 0", "p = 0.667"]]


def test_train_separation_end_to_end(tmp_path):
    import xarray as xr

    out = tmp_path / "out"
    assert main(["train", str(_write(tmp_path, SEP)), "--out", str(out), "--quiet"]) == 0
    assert {"separation.nc", "load_curves.png", "summary.json"} <= {p.name for p in out.iterdir()}
    assert_cf(out / "separation.nc")
    with xr.open_dataset(out / "separation.nc") as ds:
        assert dict(ds["D"].sizes) == {"negative_slope": 2, "data_noise": 2, "seed": 2, "epoch": 2, "layer": 3}
        assert np.all(np.isfinite(ds["D"].values)) and np.all(ds["D"].values > 0)
        assert ds["test_acc"].min() >= 0 and ds["test_acc"].max() <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["results"]["cells"]) == 4


def test_a_damaged_panel_file_is_trained_again(tmp_path, capsys):
    """A panel file cut short (an interrupted copy, a full disk) is not kept: the panel is
    trained again and the file replaced."""
    import xarray as xr

    out = tmp_path / "out"
    one = {**PANELS, "panels": {"data_noise": PANELS["panels"]["data_noise"]}}
    cfg = _write(tmp_path, one)
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    path = out / "separation_data_noise.nc"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "kept" not in capsys.readouterr().out
    with xr.open_dataset(path) as ds:
        assert ds["curve"].sizes["data_noise"] == 2
