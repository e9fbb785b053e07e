"""A catalogue of bad fit inputs and bad logs: each case builds one bad input and names
the error it must raise (type and the message's field/value part), before any
computation. Then what is flagged rather than refused (no held-out window, knots whose
values are extrapolated) and the JSON every lesde file is written with."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lesde import fit as F
from lesde.cli import main
from lesde.io import LogError, make_log, read_csv, read_log, write_csv, write_log
from lesde.runs import build_fit, FitConfig
from lesde.io._results import dump_json

K, TRIALS, STEPS, WINDOW = 3, 3, 400, 4
TS = np.arange(6.0)
CONFIG = {
    "data": {"window": WINDOW, "fit_until": 0.75},
    "model": {"impact": {"time": "constant"}},
    "uncertainty": {"method": "curvature"},
}


def _log(logits=None, steps=STEPS):
    """A log where trial r draws a sample of class (r + t) mod K at step t, with
    logits `logits(t)` (steps, K) (default: a slow ramp away from distinct class
    centres)."""
    t = np.arange(steps)
    label = (np.arange(TRIALS)[:, None] + t[None, :]) % K
    if logits is None:
        centres = np.array([[1.0, -0.3, 0.2], [-0.4, 0.8, 0.1], [0.2, 0.1, -0.9]])
        x = centres[label] * (1.0 + t / steps)[None, :, None]
    else:
        x = np.broadcast_to(logits(t)[None], (TRIALS, steps, K))
    return make_log(label, label, x, np.zeros((TRIALS, steps)))


def _build(change=None, log=None):
    config = json.loads(json.dumps(CONFIG))
    for section, values in (change or {}).items():
        config.setdefault(section, {})
        for key, value in values.items():
            if isinstance(value, dict):
                config[section].setdefault(key, {}).update(value)
            else:
                config[section][key] = value
    return build_fit(FitConfig.model_validate(config), _log() if log is None else log,
                     source="run/log.nc")


def _means(xbar):
    return F.ClassMeans(TS, xbar)


def _ramp(scale=1.0, offset=0.0):
    """Class means (6, K, K) that change in time by `scale` per step around `offset`."""
    return offset + scale * TS[:, None, None] * np.ones((1, K, K))


def _snapshots(features):
    return F.Snapshots(TS, features, np.repeat(np.arange(K), 2))


def _csv(tmp_path, edit):
    """The CSV of a small log with a final evaluation after the last step (a
    validation-only row per trial), edited by `edit(header, rows)`, read back."""
    log = make_log(np.zeros((2, 4), int), np.zeros((2, 4), int), np.ones((2, 4, 2)), np.ones((2, 4)),
                   np.ones((2, 2)), np.ones((2, 2)), eval_steps=[0, 4])
    path = write_csv(log, tmp_path / "log.csv")
    header, *rows = [r.split(",") for r in path.read_text().splitlines()]
    header, rows = edit(header, rows)
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return read_csv(path)


def _csv_text(tmp_path, edit, **kw):
    """The CSV of the small log of `_csv` as text, edited by `edit(text)`, read back."""
    log = make_log(np.zeros((2, 4), int), np.zeros((2, 4), int), np.ones((2, 4, 2)), np.ones((2, 4)))
    path = write_csv(log, tmp_path / "log.csv")
    path.write_text(edit(path.read_text()))
    return read_log(path, **kw)


def _nc(tmp_path, edit):
    """A .nc log edited after writing (as a foreign writer might leave it), read back."""
    path = write_log(_log(steps=8), tmp_path / "log.nc")
    with xr.open_dataset(path) as f:
        ds = f.load()
    ds = edit(ds)
    path.unlink()
    ds.to_netcdf(path, engine="scipy")
    return read_log(path)


def _nan_logit(ds):
    ds["logits"].values[0, 3, 1] = np.nan
    return ds


def _truncated_nc(tmp_path):
    (tmp_path / "log.nc").write_bytes(b"CDF\x01 cut")
    return read_log(tmp_path / "log.nc")


def _row_drop(header, rows, itr, trial):
    return header, [r for r in rows if not (r[0] == str(trial) and r[1] == str(itr))]


def _row_set(header, rows, line, col, value):
    rows[line - 2][header.index(col)] = value
    return header, rows


def _all_eval_only(header, rows):
    return header, [r for r in rows if r[2] == ""]


def _eval_only_for_extra_trial(header, rows):
    extra = [*rows[-1]]
    extra[0] = "7"
    return header, rows + [extra]


# (id, call, error type, regex on the message)
CASES = [
    # --- fit data (lesde.fit) --------------------------------------------------------
    ("class means constant", lambda tmp: F.ClassMeanLoss(_means(np.ones((6, K, K)))),
     F.FitDataError, r"the class means do not vary over the fit window \(times 0 \.\. 5\): no "
     r"entry changes by more than .*; the closest changes by 0, not above 1\.19e-07"),
    ("class means change below float32 resolution",
     lambda tmp: F.ClassMeanLoss(_means(_ramp(1e-6, 1e3))),
     F.FitDataError, r"the closest changes by 5e-06, not above 0\.000119 \(its largest \|value\| "
     r"is 1e\+03\)"),
    ("class means of 1e-25", lambda tmp: F.ClassMeanLoss(_means(_ramp(1e-25, 1e-25))),
     F.FitDataError, r"the closest changes by 5e-25, not above 1\.08e-19 \(its largest \|value\| "
     r"is 6e-25\)"),
    ("class means of 1e30", lambda tmp: _means(_ramp(1.0, 1e30)),
     F.FitDataError, r"xbar is too large for a float32 fit: \|value\| = 1e\+30 at time 0\.0 "
     r"\(index 0\), class 0, coordinate 0 exceeds 1\.84e\+19"),
    ("class moments constant",
     lambda tmp: F.MomentLoss(F.ClassMoments(TS, np.ones((6, K, K)), np.ones((6, K, K, K)))),
     F.FitDataError, r"the class means do not vary .*; and the class covariances do not vary"),
    ("class moment means of 1e30",
     lambda tmp: F.ClassMoments(TS, _ramp(1.0, 1e30), np.ones((6, K, K, K))),
     F.FitDataError, r"mean is too large for a float32 fit: \|value\| = 1e\+30 at time 0\.0 "
     r"\(index 0\), class 0"),
    ("snapshots constant", lambda tmp: F.TransitionLoss(_snapshots(np.ones((6, 2 * K, K)))),
     F.FitDataError, r"the snapshot features do not vary over the fit window \(times 0 \.\. 5\)"),
    ("snapshots of 1e30", lambda tmp: _snapshots(np.full((6, 2 * K, K), 1e30)),
     F.FitDataError, r"features is too large for a float32 fit: \|value\| = 1e\+30 at replica 0, "
     r"time 0\.0 \(index 0\), sample 0, coordinate 0"),
    ("fit_until at the last time", lambda tmp: F.ClassMeanLoss(_means(_ramp()), fit_until=5.0),
     ValueError, r"fit_until = 5\.0 leaves no time points in the held-out window: the last time "
     r"is 5; pass fit_until=None"),
    ("fit_until after the last time", lambda tmp: F.ClassMeanLoss(_means(_ramp()), fit_until=1e9),
     ValueError, r"fit_until = 1000000000\.0 leaves no time points in the held-out window"),
    ("fit_until leaving one fit point", lambda tmp: F.ClassMeanLoss(_means(_ramp()), fit_until=0.5),
     ValueError, r"fit_until = 0\.5 leaves 1 time points in the fit window .*at least 2"),
    ("fit_until NaN", lambda tmp: F.ClassMeanLoss(_means(_ramp()), fit_until=math.nan),
     ValueError, r"fit_until must be a finite time, got nan"),
    ("transition fit_until at the last time",
     lambda tmp: F.TransitionLoss(_snapshots(_ramp()[:, :2].repeat(K, axis=1)), fit_until=5.0),
     ValueError, r"fit_until = 5\.0 leaves no transitions in the held-out window"),
    ("two knots after the data", lambda tmp: F.check_knots([0, 100, 5000, 6000], np.arange(301.0)),
     ValueError, r"knots 5000, 6000 lie after the last data time \(data times 0 \.\. 300\)"),
    ("knot after the data, one data time to fix it",
     lambda tmp: F.check_knots([0, 100, 299.5, 5000], np.arange(301.0)),
     ValueError, r"knot 5000 lies after the last data time \(data times 0 \.\. 300\) and the "
     r"piece from knot 299\.5 to it holds 1 data time\(s\) inside"),
    ("two knots before the data", lambda tmp: F.check_knots([0, 1, 50, 300], np.arange(2.0, 301.0)),
     ValueError, r"knots 0, 1 lie before the first data time \(data times 2 \.\. 300\)"),
    # --- fit configs on a log (build_fit) -------------------------------------------
    ("data.fit_until without two windows", lambda tmp: _build({"data": {"fit_until": 0.005}}),
     ValueError, r"^data\.fit_until: fit_until = 0\.005 keeps the first 2 of the log's 400 "
     r"steps, 0 whole window\(s\) of 4 steps"),
    ("data.fit_until with an empty held-out window",
     lambda tmp: _build({"data": {"fit_until": 0.999}}, _log(steps=402)),
     ValueError, r"^data\.fit_until: fit_until = 0\.999 asks for a held-out window after step "
     r"399, but no whole window of 4 steps lies after it"),
    ("model.impact.knots after the data",
     lambda tmp: _build({"model": {"impact": {"time": "piecewise_linear", "knots": [0, 100, 5000, 6000]}}}),
     ValueError, r"^model\.impact\.knots: knots 5000, 6000 lie after the last data time "
     r"\(data times 1\.5 \.\. 297\.5\)"),
    ("model.impact.knots beyond the held-out start",
     lambda tmp: _build({"model": {"impact": {"time": "piecewise_linear", "knots": [0, 100, 296, 350]}}}),
     ValueError, r"^model\.impact\.knots: knot 350 lies after the last data time \(data times "
     r"1\.5 \.\. 297\.5\) and the piece from knot 296 to it holds 1 data time"),
    ("log with constant logits", lambda tmp: _build(log=_log(lambda t: np.ones((t.size, K)))),
     F.FitDataError, r"^run/log\.nc \(class-mean logits of 4-step windows\): the class means do "
     r"not vary over the fit window \(times 1\.5 \.\. 297\.5\)"),
    ("log with logits of 1e30",
     lambda tmp: _build(log=_log(lambda t: 1e30 * (1 + t[:, None] / STEPS) * np.ones(K))),
     F.FitDataError, r"^run/log\.nc \(class-mean logits of 4-step windows\): xbar is too large "
     r"for a float32 fit: \|value\| = 1e\+30"),
    ("log with logits of 1e-25",
     lambda tmp: _build(log=_log(lambda t: 1e-25 * (1 + t[:, None] / STEPS) * np.ones(K))),
     F.FitDataError, r"^run/log\.nc \(class-mean logits of 4-step windows\): the class means do "
     r"not vary .*the closest changes by .*, not above 1\.08e-19"),
    ("log with logits lost to float32 rounding",
     lambda tmp: _build(log=_log(lambda t: 1e3 + 1e-6 * t[:, None] / STEPS * np.ones(K))),
     F.FitDataError, r"^run/log\.nc \(class-mean logits of 4-step windows\): the class means do "
     r"not vary .*the closest changes by 0, not above 0\.000119"),
    ("log with constant logits, moment loss",
     lambda tmp: _build({"model": {"kind": "le_sde"}, "loss": {"kind": "moments"}},
                        _log(lambda t: np.ones((t.size, K)))),
     F.FitDataError, r"^run/log\.nc \(class moments of the logits in 4-step windows\): the class "
     r"means do not vary .*; and the class covariances do not vary"),
    ("data.trials beyond the log", lambda tmp: _build({"data": {"trials": 10}}),
     ValueError, r"^data\.trials: 10 trials asked for, the log has 3"),
    ("data.window beyond the log", lambda tmp: _build({"data": {"window": 1000}}),
     ValueError, r"^data\.window: window = 1000 is longer than the log's 400 steps"),
    # --- logs ------------------------------------------------------------------------
    ("csv: validation-only rows at another itr in one trial",
     lambda tmp: _csv(tmp, lambda h, r: _row_set(h, r, 11, "itr", "5")),
     LogError, r"log\.csv: line 6, column 'itr': trial 0 has validation-only rows at itr \[4\], "
     r"but other trials at \[4, 5\] \(it lacks \[5\]\)"),
    ("csv: a trial without the validation-only row of the others",
     lambda tmp: _csv(tmp, lambda h, r: _row_drop(h, r, 4, 1)),
     LogError, r"log\.csv: line 7, column 'itr': trial 1 has no validation-only row, but other "
     r"trials have them at itr \[4\]"),
    ("csv: a trial with only a validation-only row",
     lambda tmp: _csv(tmp, _eval_only_for_extra_trial),
     LogError, r"log\.csv: line 12, column 'trial': trial 7 has only validation-only rows"),
    ("csv: a training cell empty on a validation row",
     lambda tmp: _csv(tmp, lambda h, r: _row_set(h, r, 2, "smp", "")),
     LogError, r"log\.csv: line 2, column 'smp': empty cell"),
    ("csv: a validation-only row with a label",
     lambda tmp: _csv(tmp, lambda h, r: _row_set(h, r, 6, "y", "1")),
     LogError, r"log\.csv: line 6, column 'smp': empty cell"),
    ("csv: only validation-only rows", lambda tmp: _csv(tmp, _all_eval_only),
     LogError, r"log\.csv: line 2, column 'smp': every row is a validation-only row"),
    ("csv: a short last row that ends its line (not cut short)",
     lambda tmp: _csv_text(tmp, lambda t: t + "1,4,0\n"),
     LogError, r"log\.csv: line 10, column 'y': empty cell"),
    ("csv: a row cut short that is not the last line",
     lambda tmp: _csv_text(tmp, lambda t: t.replace("0,3,", "0,2,0\n0,3,")),
     LogError, r"log\.csv: line 5, column 'y': empty cell"),
    ("csv: ragged='common_steps' and no itr value every trial has",
     lambda tmp: _csv_text(tmp, lambda t: t.replace("\n1,", "\n1,1"), ragged="common_steps"),
     LogError, r"log\.csv: ragged='common_steps': no itr value is shared by every trial \(trials \[0, 1\]\)"),
    ("csv: ragged='complete_trials' and no trial with every itr value",
     lambda tmp: _csv_text(tmp, lambda t: t.replace("\n0,3,", "\n0,5,"), ragged="complete_trials"),
     LogError, r"log\.csv: ragged='complete_trials': no trial has all 5 itr values that the trials "
     r"have together"),
    ("read_log: an unknown ragged", lambda tmp: _csv_text(tmp, lambda t: t, ragged="drop"),
     LogError, r"ragged must be one of 'error', 'common_steps', 'complete_trials', got 'drop'"),
    ("csv: a logit beyond float32", lambda tmp: _csv(tmp, lambda h, r: _row_set(h, r, 3, "y_logit1", "1e39")),
     LogError, r"log\.csv: line 3, column 'y_logit1': value '1e\+39' is not a finite float32"),
    ("nc: a NaN logit", lambda tmp: _nc(tmp, _nan_logit),
     LogError, r"log\.nc: logits must be finite, got at trial 0, step 3, class 1: nan"),
    ("nc: another format marker", lambda tmp: _nc(tmp, lambda ds: ds.assign_attrs(lesde_log="sweep")),
     LogError, r"log\.nc: attribute 'lesde_log' must be 'trajectory', got 'sweep'"),
    ("nc: not netCDF", _truncated_nc,
     LogError, r"log\.nc: not a readable netCDF file"),
    ("make_log: an infinite train loss",
     lambda tmp: make_log(np.zeros((1, 2), int), np.zeros((1, 2), int), np.zeros((1, 2, 2)),
                          np.array([[0.0, np.inf]])),
     LogError, r"train_loss must be finite, got at trial 0, step 1: inf"),
]


@pytest.mark.parametrize("case, call, error, match", CASES, ids=[c[0] for c in CASES])
def test_refused_with_a_named_error(tmp_path, case, call, error, match):
    with pytest.raises(error, match=match) as info:
        call(tmp_path)
    assert type(info.value) is error


def test_the_catalogue_is_complete():
    assert len(CASES) >= 20 and all(len(c) == 4 for c in CASES)
    assert len({c[0] for c in CASES}) == len(CASES)


def test_lesde_fit_refuses_a_constant_log_naming_it(tmp_path, capsys):
    path = write_log(_log(lambda t: np.ones((t.size, K))), tmp_path / "flat.nc")
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(json.dumps(CONFIG))
    out = tmp_path / "out"
    assert main(["fit", str(path), "--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lesde fit: {path} (class-mean logits of 4-step windows): the class "
                          "means do not vary over the fit window")
    assert not out.exists()


def test_lesde_fit_refuses_an_out_that_is_a_file_before_fitting(tmp_path, capsys):
    path = write_log(_log(), tmp_path / "log.nc")
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(json.dumps(CONFIG))
    out = tmp_path / "out"
    out.write_text("a file")
    assert main(["fit", str(path), "--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"lesde fit: --out {out} is a file, not a folder\n"


# ---------------------------------------------------------------------------------
# Flagged, not refused


def test_fit_until_one_means_no_heldout_window():
    setup = _build({"data": {"fit_until": 1.0}})
    assert setup.heldout is False and setup.fit_until == 399.0
    assert bool(np.asarray(setup.loss.mask).all())
    assert _build().heldout is True


def test_an_end_knot_beyond_the_data_is_an_extrapolation_flagged():
    setup = _build({"model": {"impact": {"time": "piecewise_linear", "knots": [0, 100, 200, 5000]}}})
    assert setup.knots_beyond_data == (0.0, 5000.0)
    assert F.check_knots([0, 100, 200, 5000], np.arange(1.0, 301.0)) == [0.0, 5000.0]
    assert F.check_knots([1, 100, 300], np.arange(1.0, 301.0)) == []


def test_automatic_knots_lie_on_the_data():
    setup = _build({"model": {"impact": {"time": "piecewise_linear", "knots": 6}}})
    assert setup.knots[0] == 1.5 and setup.knots[-1] == 297.5 and setup.knots_beyond_data == ()


# ---------------------------------------------------------------------------------
# JSON


def _strict(text):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_dump_json_writes_nonfinite_numbers_as_null():
    obj = {"a": math.nan, "b": [np.float32(np.inf), -math.inf, np.float64(1.5)],
           "c": np.array([[1, 2], [3, 4]]), "d": np.bool_(True), 3: (np.int32(7), None)}
    back = _strict(dump_json(obj))
    assert back == {"a": None, "b": [None, None, 1.5], "c": [[1, 2], [3, 4]], "d": True,
                    "3": [7, None]}
    assert dump_json({"x": 1}).endswith("}\n")
    with pytest.raises(TypeError, match="set"):
        dump_json({"x": {1, 2}})


def test_the_sweep_store_marker_is_strict_json(tmp_path):
    """Every JSON file lesde writes goes through dump_json, the sweep's chunk store too."""
    from lesde.solve import ChunkStore

    ChunkStore(tmp_path / "chunks", "abc", 4)
    assert _strict((tmp_path / "chunks" / "sweep.json").read_text()) == {
        "fingerprint": "abc", "num_members": 4}
    assert Path(tmp_path / "chunks" / "sweep.json").read_text().endswith("\n")
