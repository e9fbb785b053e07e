"""`lesde fit`: the configuration schema, every check before any computation (bad
configs, bad logs, configs that do not fit the log), and the command end to end on a
tiny log planted by an exact LE-ODE, from netCDF and from the authors' CSV layout."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import yaml
from cf_check import assert_cf

import lesde
from lesde.cli import main
from lesde.io import make_log, write_csv, write_log
from lesde.runs import ConfigError, FitConfig, load_fit_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

K, TRIALS, STEPS, WINDOW = 3, 3, 400, 4
ALPHA, BETA = 4e-3, 1e-3
X0 = np.array([[1.0, -0.3, 0.2], [-0.4, 0.8, 0.1], [0.2, 0.1, -0.9]])  # no zero deviation

# identity LE-ODE with constant alpha, beta: exactly the planted model family
PLANTED = {
    "data": {"window": WINDOW, "fit_until": 0.75},
    "model": {
        "kind": "le_ode", "gradient": "identity",
        "impact": {"form": "alpha_beta", "time": "constant", "alpha": 1e-3, "beta": 0.0},
    },
    "loss": {"kind": "class_mean", "num_steps": 50},
    "optimizer": {"steps": 60, "learning_rate": 0.1, "patience": None},
    "closed_form": {"estimator": "identity", "savgol_window": 11},
}


def _planted_log():
    """Logits of an exact identity LE-ODE (closed form): at step t trial r draws a
    sample of class (r + t) mod K, whose logits are the class mean Xbar_k(t). Every
    class is drawn at every step, so the log's class means are the planted ones."""
    model = lesde.LEODE(lesde.LocallyElastic(ALPHA, BETA), "identity", K)
    ts = jnp.arange(STEPS, dtype=float)
    xbar = np.asarray(jax.vmap(lambda t: lesde.closed_form(model, jnp.asarray(X0), t))(ts))
    label = (np.arange(TRIALS)[:, None] + np.arange(STEPS)[None, :]) % K
    return make_log(label, label, xbar[np.arange(STEPS)[None, :], label], np.zeros((TRIALS, STEPS)))


def _with_snapshots(log, per_class=4, sigma=0.02):
    """The log with `features` snapshots (trial, snapshot_step, train_sample, class), as
    `lesde train` writes them with snapshot steps: Euler-Maruyama paths (dt = 1 step) of
    the planted identity LE-SDE with independent noise `sigma`,
    dX_i = (1/K) sum_k' E_{y_i k'} Xbar_k' dt + sigma dW_i, one path per trial, saved
    every 20 steps."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(K), per_class)
    E = (ALPHA - BETA) * np.eye(K) + BETA
    x = np.repeat(X0[labels][None], TRIALS, axis=0)  # (trial, sample, coordinate)
    snaps = np.arange(0, STEPS, 20)
    saved = []
    for t in range(snaps[-1] + 1):
        if t in snaps:
            saved.append(x.copy())
        xbar = np.stack([x[:, labels == k].mean(1) for k in range(K)], axis=1)
        x = x + (E @ xbar / K)[:, labels] + sigma * rng.normal(size=x.shape)
    features = np.stack(saved, axis=1).astype(np.float32)
    return log.assign(
        features=(("trial", "snapshot_step", "train_sample", "class"), features),
        train_labels=("train_sample", labels.astype(np.int32)),
    ).assign_coords(snapshot_step=snaps.astype(np.int32))


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    log = _planted_log()
    return {
        "log": log, "nc": write_log(log, root / "log.nc"), "csv": write_csv(log, root / "log.csv"),
        "snapshots": write_log(_with_snapshots(log), root / "snapshots.nc"),
    }


def _write(tmp_path, config, name="fit.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _merge(base, change):
    out = json.loads(json.dumps(base))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def nc_run(logs, tmp_path_factory):
    root = tmp_path_factory.mktemp("nc_run")
    out = root / "out"
    code = main(["fit", str(logs["nc"]), "--config", str(_write(root, PLANTED)), "--out", str(out), "--quiet"])
    return code, out


# ---------------------------------------------------------------------------------
# End to end


def test_fit_end_to_end_recovers_the_planted_impacts(nc_run, capsys):
    code, out = nc_run
    assert code == 0
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}  # not the lock
    assert names == {"report.json", "fit.nc", "fit.png", "closed_form.png", "summary.json"}
    summary_time = (out / "summary.json").stat().st_mtime_ns
    assert all((out / n).stat().st_mtime_ns <= summary_time for n in names)  # written last

    report = json.loads((out / "report.json").read_text())
    params = report["fit"]["parameters"]
    assert set(params) == {"impact.alpha.value", "impact.beta.value"}
    assert params["impact.alpha.value"]["value"] == pytest.approx(ALPHA, rel=0.05)
    assert params["impact.beta.value"]["value"] == pytest.approx(BETA, rel=0.15)
    assert all(p["stderr"] is not None and p["stderr"] >= 0 for p in params.values())
    assert report["fit"]["goodness"]["fit"]["r2"] > 0.99
    assert report["fit"]["goodness"]["heldout"]["r2"] > 0.9  # the prediction holds
    # the identity inversion is exact on the planted model: A_hat = alpha (t - t_0)
    cf = report["closed_form"]
    span = (STEPS - WINDOW / 2 - 0.5) - (WINDOW / 2 - 0.5)
    assert cf["A_hat_final"] == pytest.approx(ALPHA * span, rel=1e-3)
    assert cf["B_hat_final"] == pytest.approx(BETA * span, rel=1e-2)
    assert cf["power_law_alpha_hat"]["c"] == pytest.approx(ALPHA, rel=0.02)
    assert isinstance(cf["tail_index"], float) and not cf["errors"]
    assert report["config"]["data"]["window"] == WINDOW and report["log"].endswith("log.nc")
    assert FitConfig.model_validate(report["config"]) == FitConfig.model_validate(PLANTED)
    assert report["fit_until"] == 299.0 and "version_lesde" in report

    assert report["complete"] is True and report["stopped"] == "max_steps"
    assert report["converged"] is False and report["heldout_window"] is True
    assert report["knots_beyond_data"] == []
    assert report["fit"]["covariance_rank"] == {
        "rank": 2, "parameters": 2, "not_identified": [], "rtol": report["fit"]["covariance_rank"]["rtol"]}
    assert all(p["identified"] for p in params.values())
    for name in names - {"fit.png", "closed_form.png", "fit.nc"}:
        _strict_json((out / name).read_text())  # no NaN or Infinity tokens

    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "max_steps" and summary["steps_run"] == 60
    assert summary["converged"] is False
    assert summary["r2_fit"] == report["fit"]["goodness"]["fit"]["r2"]
    assert summary["tail_index"] == cf["tail_index"] and summary["wall_time_s"] > 0

    assert_cf(out / "fit.nc")
    with xr.open_dataset(out / "fit.nc") as ds:
        T = STEPS // WINDOW
        assert ds["data"].dims == ("step", "class", "logit") and ds["data"].shape == (T, K, K)
        assert ds["model"].shape == (T, K, K) and ds["impact"].shape == (T, K, K)
        held = ds["heldout"].values
        assert held.dtype == bool and held.sum() == T // 4 and not held[: 3 * T // 4].any()
        np.testing.assert_allclose(ds["model"], ds["data"], atol=0.02)
        e = ds["impact"].values[0]  # (alpha - beta) I + beta 1 1^T
        assert e[0, 0] == pytest.approx(ALPHA, rel=0.05) and e[0, 1] == pytest.approx(BETA, rel=0.15)
        for name in ("A_hat", "B_hat", "alpha_hat", "beta_hat"):
            assert ds[name].dims == ("cf_step",)
        assert ds.attrs["r2_fit"] > 0.99 and "config" in ds.attrs
        assert ds.attrs["complete"] == 1 and ds.attrs["stopped"] == "max_steps"
        assert ds.attrs["converged"] == 0 and ds.attrs["heldout_window"] == 1
    assert not list(out.glob(".*partial*"))


def test_fit_from_csv_matches_netcdf(logs, nc_run, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = _write(tmp_path, PLANTED)
    assert main(["fit", str(logs["csv"]), "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "alpha" in printed and "R^2" in printed and "closed form (identity inversion)" in printed
    a = json.loads((out / "report.json").read_text())["fit"]["parameters"]
    b = json.loads((nc_run[1] / "report.json").read_text())["fit"]["parameters"]
    for name in a:
        assert a[name]["value"] == pytest.approx(b[name]["value"], rel=1e-5)
    assert (out / "summary.json").is_file()


def test_fit_lesde_transition_likelihood_with_bootstrap(logs, tmp_path, capsys):
    """An LE-SDE by the transition likelihood of snapshots, standard errors from a
    bootstrap over trials, no closed form."""
    config = _merge(PLANTED, {
        "model": {"kind": "le_sde", "noise": {"independent": 0.05}},
        "loss": {"kind": "transition"},
        "optimizer": {"steps": 40},
        "uncertainty": {"method": "bootstrap", "samples": 3, "steps": 20},
        "closed_form": {"estimator": "none"},
    })
    out = tmp_path / "out"
    cfg = _write(tmp_path, config)
    assert main(["fit", str(logs["snapshots"]), "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {
        "report.json", "fit.nc", "fit.png", "summary.json"}
    report = json.loads((out / "report.json").read_text())
    assert report["closed_form"] is None and report["fit"]["loss"] == "TransitionLoss"
    assert report["fit"]["uncertainty"].startswith("bootstrap over trials (3 resamples)")
    params = report["fit"]["parameters"]
    assert set(params) == {"impact.alpha.value", "impact.beta.value",
                           "noise.terms.independent.sigma.value"}
    # the likelihood moves the noise level from 0.05 to about the planted 0.02
    assert params["noise.terms.independent.sigma.value"]["value"] == pytest.approx(0.02, rel=0.2)
    assert all(p["stderr"] is not None for p in params.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nll_fit"] is not None and summary["tail_index"] is None
    with xr.open_dataset(out / "fit.nc") as ds:
        assert ds.sizes["step"] == STEPS // 20 and not ds["heldout"].values[0]
        assert "A_hat" not in ds.data_vars


def _strict_json(text):
    """json.loads that refuses the non-JSON tokens NaN, Infinity and -Infinity."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_no_heldout_window_reports_its_goodness_as_null(logs):
    """data.fit_until = 1 fits every window: the held-out goodness is not available
    (null in JSON, 0 points), not a number computed from nothing."""
    from lesde.runs import build_fit
    from lesde.io._results import dump_json

    setup = build_fit(FitConfig.model_validate(_merge(PLANTED, {"data": {"fit_until": 1.0}})),
                      logs["log"])
    assert setup.heldout is False and setup.fit_until == STEPS - 1
    good = _strict_json(dump_json(setup.loss.goodness(setup.params)))
    assert good["heldout"] == {"rmse": None, "relative_rmse": None, "r2": None, "points": 0}
    assert good["fit"]["points"] == (STEPS // WINDOW) * K * K and good["fit"]["r2"] is not None


def test_a_fit_whose_loss_becomes_nonfinite_exits_1_marked_not_converged(logs, tmp_path, capsys,
                                                                         monkeypatch):
    from lesde import fit as F

    real = F.fit

    def diverging(*args, **kwargs):  # the loss became NaN after 3 steps
        r = real(*args, **{**kwargs, "steps": 3})
        return F.FitResult(params=r.params, free=r.free, history=np.r_[r.history, np.nan],
                           best_loss=r.best_loss, best_step=r.best_step, stopped="nonfinite",
                           time_scale=r.time_scale)

    monkeypatch.setattr(F, "fit", diverging)
    out = tmp_path / "out"
    code = main(["fit", str(logs["nc"]), "--config", str(_write(tmp_path, PLANTED)), "--out",
                 str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "the loss became non-finite at step 3" in err and '"converged": false' in err
    report = _strict_json((out / "report.json").read_text())
    assert report["complete"] is True and report["converged"] is False
    assert report["stopped"] == "nonfinite" and report["fit"]["uncertainty"].startswith("not computed")
    assert all(p["stderr"] is None for p in report["fit"]["parameters"].values())
    assert _strict_json((out / "summary.json").read_text())["converged"] is False
    with xr.open_dataset(out / "fit.nc") as ds:
        assert ds.attrs["converged"] == 0 and ds.attrs["stopped"] == "nonfinite"


SIGINT_CONFIG = _merge(PLANTED, {
    "optimizer": {"steps": 1_000_000, "patience": None},
    "closed_form": {"estimator": "none"},
    "loss": {"num_steps": 20},
})


def test_an_interrupted_fit_exits_130_and_looks_incomplete(logs, tmp_path):
    """Ctrl-C (SIGINT) once the fit loop runs: exit status 130, no summary.json, the
    report and fit.nc marked incomplete with the best parameters so far."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}\n")  # a previous complete run is replaced
    (out / "fit.png").write_bytes(b"old")
    cfg = _write(tmp_path, SIGINT_CONFIG)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lesde.cli", "fit", str(logs["nc"]), "--config", str(cfg),
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    err = bytearray()
    reader = threading.Thread(target=lambda: [err.extend(c) for c in iter(lambda: proc.stderr.read1(4096), b"")],
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not re.search(rb"fit: .*\| *[1-9][0-9]*/1000000", bytes(err)):  # a step is done
            assert proc.poll() is None and time.monotonic() < deadline, bytes(err).decode()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    reader.join(timeout=10)
    text = bytes(err).decode()
    assert code == 130, text[-2000:]
    assert re.search(r"lesde fit: interrupted at step \d+ of 1000000; kept the best parameters so "
                     r"far .* marked \"complete\": false \(no summary\.json\); rerunning the same "
                     r"command starts the fit again", text), text[-2000:]
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {"report.json", "fit.nc"}
    report = _strict_json((out / "report.json").read_text())
    assert report["complete"] is False and report["stopped"] == "interrupted"
    assert report["fit"]["stopped"] == "interrupted" and report["converged"] is False
    assert 0 < report["fit"]["steps_run"] < 1_000_000
    assert all(p["stderr"] is None for p in report["fit"]["parameters"].values())
    with xr.open_dataset(out / "fit.nc") as ds:
        assert ds.attrs["complete"] == 0 and ds.attrs["stopped"] == "interrupted"


# ---------------------------------------------------------------------------------
# Errors: exit code 2, the key named, nothing written


def _fails(tmp_path, capsys, log_path, config, match):
    out = tmp_path / "out"
    cfg = config if isinstance(config, Path) else _write(tmp_path, config)
    assert main(["fit", str(log_path), "--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lesde fit: ")
    assert match in err, err
    assert not (out / "report.json").exists() and not (out / "summary.json").exists()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"model": {"speed": 1}}, "model.speed: unknown key"),
        ({"surprise": 1}, "surprise: unknown key"),
        ({"data": {"window": 0}}, "data.window"),
        ({"data": {"fit_until": 1.5}}, "data.fit_until"),
        ({"data": {"trials": 0}}, "data.trials"),
        ({"model": {"gradient": "mse"}}, "model.gradient"),
        ({"model": {"kind": "sde"}}, "model.kind"),
        ({"model": {"impact": {"form": "diagonal"}}}, "impact.form"),
        ({"model": {"impact": {"knots": 1}}}, "impact.knots"),
        ({"model": {"impact": {"time": "piecewise_linear", "knots": [0, 100, 50]}}}, "impact.knots"),
        ({"model": {"impact": {"knots": 4}}}, "impact.knots applies to time 'piecewise_linear'"),
        ({"model": {"impact": {"exponent": 0.3}}}, "impact.exponent applies to time 'power_law'"),
        ({"model": {"impact": {"factor": 0.5}}}, "impact.factor applies to time 'kernel'"),
        ({"model": {"impact": {"time": "kernel", "knots": 4}}}, "impact.knots applies to time 'piecewise_linear'"),
        ({"model": {"impact": {"alpha": "big"}}}, "impact.alpha"),
        ({"model": {"impact": {"t0": 0.0}}}, "impact.t0"),
        ({"model": {"gradient": "ce"}}, "model.gradient 'ce' needs model.kind 'le_sde'"),
        ({"model": {"noise": {"independent": 0.1}}}, "model.noise.independent applies to model.kind 'le_sde'"),
        ({"model": {"samples_per_class": 5}}, "model.samples_per_class applies to model.kind 'le_sde'"),
        ({"model": {"kind": "le_sde", "noise": {"independent": -0.1}}}, "model.noise.independent"),
        ({"loss": {"kind": "moments"}}, "loss.kind 'moments' needs model.kind 'le_sde'"),
        ({"model": {"kind": "le_sde"}, "loss": {"kind": "transition"}},
         "loss.kind 'transition' needs model.noise.independent > 0"),
        ({"model": {"kind": "le_sde", "noise": {"independent": 0.0}}, "loss": {"kind": "transition"}},
         "loss.kind 'transition' needs model.noise.independent > 0"),
        ({"loss": {"num_steps": 0}}, "loss.num_steps"),
        ({"optimizer": {"learning_rate": -1.0}}, "optimizer.learning_rate"),
        ({"optimizer": {"schedule": "linear"}}, "optimizer.schedule"),
        ({"uncertainty": {"method": "jackknife"}}, "uncertainty.method"),
        ({"uncertainty": {"samples": 1}}, "uncertainty.samples"),
        ({"closed_form": {"savgol_window": 10}}, "closed_form.savgol_window"),
        ({"closed_form": {"estimator": "ols"}}, "closed_form.estimator"),
        ({"closed_form": {"tail_last": 0.0}}, "closed_form.tail_last"),
    ],
)
def test_bad_configs_exit_2_naming_the_key(logs, tmp_path, capsys, change, match):
    _fails(tmp_path, capsys, logs["nc"], _merge(PLANTED, change), match)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"data": {"trials": 10}}, "data.trials: 10 trials asked for, the log has 3"),
        ({"data": {"window": 1000}}, "data.window"),
        ({"data": {"fit_until": 0.005}}, "data.fit_until"),
        # 8 windows of 50 steps, 6 in the fit window: too few for 6 knots
        ({"data": {"window": 50}, "model": {"impact": {"time": "piecewise_linear"}}},
         "impact.knots: too few time points"),
        ({"model": {"impact": {"time": "piecewise_linear", "knots": [0.0, 10.0, 11.0, 200.0]}}},
         "impact.knots: too few time points"),
        ({"model": {"kind": "le_sde", "noise": {"independent": 0.1}}, "loss": {"kind": "transition"}},
         "no 'features' variable"),
        ({"model": {"impact": {"time": "kernel"}}}, "(the tangent-kernel impact): the log has no tangent-kernel impact"),
        ({"model": {"impact": {"time": "kernel_growth"}}}, "train.impact_checkpoints > 0"),
        # 2 windows in the fit window: 18 data values for 9 + 9 free parameters
        ({"data": {"fit_until": 0.02}, "model": {"fit_initial": True, "impact": {"form": "general"}}},
         "uncertainty.method: 'curvature' needs more data values"),
    ],
)
def test_configs_that_do_not_fit_the_log(logs, tmp_path, capsys, change, match):
    _fails(tmp_path, capsys, logs["nc"], _merge(PLANTED, change), match)


def test_a_fit_that_fails_exits_1_writing_nothing(logs, tmp_path, capsys):
    # the identity model's exponential growth overflows at such an impact
    config = _merge(PLANTED, {"model": {"impact": {"alpha": 10.0}}})
    out = tmp_path / "out"
    assert main(["fit", str(logs["nc"]), "--config", str(_write(tmp_path, config)),
                 "--out", str(out), "--quiet"]) == 1
    assert "the loss is not finite at the starting parameters" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == [".lesde.lock"]  # checked and locked, nothing written


def test_bad_logs_exit_2(logs, tmp_path, capsys):
    lines = Path(logs["csv"]).read_text().splitlines()
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("y_logit1")] = "nan"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:5] + [",".join(row)] + lines[6:]) + "\n")
    _fails(tmp_path, capsys, bad, PLANTED, "y_logit1")  # the CSV reader's LogError
    _fails(tmp_path, capsys, tmp_path / "missing.nc", PLANTED, "no log file")
    _fails(tmp_path, capsys, tmp_path / "missing.csv", PLANTED, "no CSV log")
    other = tmp_path / "log.txt"
    other.write_text("not a log")
    _fails(tmp_path, capsys, other, PLANTED, "log.txt")


def test_missing_and_malformed_configs(logs, tmp_path, capsys):
    _fails(tmp_path, capsys, logs["nc"], tmp_path / "nope.yaml", "config file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    _fails(tmp_path, capsys, logs["nc"], bad, "must be a mapping")
    bad.write_text("data: [1, 2\n")
    _fails(tmp_path, capsys, logs["nc"], bad, "not valid YAML")


# ---------------------------------------------------------------------------------
# Schema


def test_empty_config_is_the_default(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    config = load_fit_config(path)
    assert config == FitConfig()
    assert config.model.kind == "le_ode" and config.model.impact.time == "piecewise_linear"
    assert config.model.impact.knots == 6 and config.data.window == 50
    with pytest.raises(ConfigError, match="data.window"):
        load_fit_config(_write(tmp_path, {"data": {"window": -1}}))


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("fit_*.yaml")))
def test_shipped_fit_configs_validate(name):
    config = load_fit_config(CONFIGS / name)
    assert "lesde fit " in (CONFIGS / name).read_text()  # the header shows the command
    if name == "fit_digits.yaml":
        assert config.model.kind == "le_sde" and config.model.gradient == "ce"
        assert config.model.impact.form == "general" and config.model.fit_initial
        assert config.model.noise.independent is None and config.model.noise.shared is None
    if name == "fit_label_corruption.yaml":
        assert config.model.kind == "le_ode" and config.model.gradient == "identity"
        assert config.model.impact.form == "alpha_beta" and config.data.window == 50


def test_a_log_cut_short_is_fitted_only_with_ragged(logs, tmp_path, capsys):
    """The CSV of a run killed mid-trial (the last trial shorter) is refused with the way
    out named; `--ragged complete_trials` reads it (here the run then stops at the
    output check: --out is a file)."""
    header, *rows = logs["csv"].read_text().splitlines()
    last = max(int(r.split(",")[0]) for r in rows)
    kept = [r for r in rows if int(r.split(",")[0]) < last or int(r.split(",")[1]) < 10]
    cut = tmp_path / "cut.csv"
    cut.write_text("\n".join([header, *kept]) + "\n")
    cfg = _write(tmp_path, PLANTED)
    assert main(["fit", str(cut), "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "ragged='common_steps'" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.warns(lesde.io.LogWarning, match=r"kept trials \[0, 1\].* left out trials \[2\]"):
        code = main(["fit", str(cut), "--config", str(cfg), "--out", str(blocker), "--ragged", "complete_trials"])
    err = capsys.readouterr().err
    assert code == 2 and "ragged" not in err and "a_file" in err  # the log was read; --out refused
    assert not (tmp_path / "o").exists()
