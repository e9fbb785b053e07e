"""`lesde.io.TrajectoryLogger`: a NumPy training loop logged step by step reads back as
the log of the same arrays, in any order of the trials; a run killed mid-write leaves
the flushed steps; bad calls are refused by name; the logged run can be fitted; the
PyTorch example."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

import lesde
from lesde.cli import main
from lesde.io import LogError, LogWarning, make_log, read_csv, read_log, TrajectoryLogger

ROOT = Path(__file__).resolve().parent.parent
K, D, LR = 3, 6, 0.2


def _problem(seed=0, n=90, n_val=30):
    """A K-class Gaussian mixture in D dimensions: training and validation sets."""
    rng = np.random.default_rng(seed)
    means = 1.5 * rng.normal(size=(K, D))
    y, y_val = np.arange(n) % K, np.arange(n_val) % K
    return means[y] + rng.normal(size=(n, D)), y, means[y_val] + rng.normal(size=(n_val, D)), y_val


def _forward(w, x, y):
    """Logits and cross-entropy losses of the linear softmax model w (K, D)."""
    z = x @ w.T
    m = z.max(-1, keepdims=True)
    lse = (np.log(np.exp(z - m).sum(-1, keepdims=True)) + m)[..., 0]
    return z, lse - np.take_along_axis(z, np.asarray(y)[..., None], -1)[..., 0]


class _Trial:
    """One trial of SGD, batch size 1, on the linear softmax model; its own random
    stream, so its numbers do not depend on how the trials are interleaved."""

    def __init__(self, trial, problem):
        self.rng = np.random.default_rng(100 + trial)
        self.w = 0.1 * self.rng.normal(size=(K, D))
        self.x, self.y, self.x_val, self.y_val = problem
        self.rows, self.val = [], []

    def validate(self):
        z, loss = _forward(self.w, self.x_val, self.y_val)
        self.val.append((loss.mean(), (z.argmax(-1) == self.y_val).mean()))
        return self.val[-1]

    def step(self):
        i = int(self.rng.integers(len(self.y)))
        z, loss = _forward(self.w, self.x[i], self.y[i])
        self.rows.append((i, self.y[i], z, loss))
        p = np.exp(z - z.max())
        self.w -= LR * np.outer(p / p.sum() - np.eye(K)[self.y[i]], self.x[i])
        return self.rows[-1]


def _train(log, trials=3, steps=50, eval_every=10, order="one_after_another", problem=None):
    """Train `trials` trials for `steps` steps, validating every `eval_every` steps and
    after the last update, logging through `log`; returns the arrays that were logged
    and the eval steps."""
    problem = problem or _problem()
    runs = [_Trial(r, problem) for r in range(trials)]

    def one(r, t):
        if t == steps:
            log.validation(r, t, *runs[r].validate())
            return
        if t % eval_every == 0:
            log.validation(r, t, *runs[r].validate())
        log.step(r, t, *runs[r].step())

    if order == "one_after_another":
        for r in range(trials):
            for t in range(steps + 1):
                one(r, t)
    else:  # "step_by_step": every trial at each step
        for t in range(steps + 1):
            for r in range(trials):
                one(r, t)
    arrays = {
        "sample": [[row[0] for row in run.rows] for run in runs],
        "label": [[row[1] for row in run.rows] for run in runs],
        "logits": [[row[2] for row in run.rows] for run in runs],
        "train_loss": [[row[3] for row in run.rows] for run in runs],
        "val_loss": [[v[0] for v in run.val] for run in runs],
        "val_acc": [[v[1] for v in run.val] for run in runs],
    }
    return {k: np.asarray(v) for k, v in arrays.items()}, [*range(0, steps, eval_every), steps]


# ---------------------------------------------------------------------------------
# Reading back


@pytest.mark.parametrize("order", ["one_after_another", "step_by_step"])
def test_a_training_loop_reads_back_exactly(tmp_path, order):
    with TrajectoryLogger(tmp_path / "run.csv", num_classes=K, flush_every=7) as log:
        arrays, evals = _train(log, order=order)
    assert log.closed and log.path == tmp_path / "run.csv"
    back = read_log(tmp_path / "run.csv")
    assert dict(back.sizes) == {"trial": 3, "step": 50, "class": K, "eval_step": 6}
    assert back["logits"].dims == ("trial", "step", "class")
    assert back["val_acc"].dims == ("trial", "eval_step")
    np.testing.assert_array_equal(back["trial"].values, [0, 1, 2])
    np.testing.assert_array_equal(back["step"].values, np.arange(50))
    np.testing.assert_array_equal(back["class"].values, np.arange(K))
    np.testing.assert_array_equal(back["eval_step"].values, [0, 10, 20, 30, 40, 50])
    for name, a in arrays.items():  # exactly the values passed, in the format's dtypes
        dtype = np.int32 if name in ("sample", "label") else np.float32
        assert back[name].dtype == dtype
        np.testing.assert_array_equal(back[name].values, a.astype(dtype))
    xr.testing.assert_identical(back, make_log(**arrays, eval_steps=evals))


def test_the_order_of_the_trials_does_not_matter(tmp_path):
    logs = []
    for order in ("one_after_another", "step_by_step"):
        with TrajectoryLogger(tmp_path / f"{order}.csv", num_classes=K) as log:
            _train(log, order=order)
        logs.append(read_log(tmp_path / f"{order}.csv"))
    text = [(tmp_path / f"{o}.csv").read_text() for o in ("one_after_another", "step_by_step")]
    assert text[0] != text[1]  # the rows come in other orders
    xr.testing.assert_identical(logs[0], logs[1])


def test_threads_may_share_a_logger(tmp_path):
    problem = _problem()
    with TrajectoryLogger(tmp_path / "threads.csv", num_classes=K, flush_every=5) as log:
        threads = [threading.Thread(target=_train, args=(_Only(log, r), 3, 50, 10, "one_after_another",
                                                         problem)) for r in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    with TrajectoryLogger(tmp_path / "serial.csv", num_classes=K) as log:
        _train(log, problem=problem)
    xr.testing.assert_identical(read_log(tmp_path / "threads.csv"), read_log(tmp_path / "serial.csv"))


class _Only:
    """The calls of one trial of `_train`, passed on to the logger (the others dropped):
    each thread trains every trial but logs one."""

    def __init__(self, log, trial):
        self.log, self.trial = log, trial

    def step(self, r, *args):
        if r == self.trial:
            self.log.step(r, *args)

    def validation(self, r, *args):
        if r == self.trial:
            self.log.validation(r, *args)


def test_netcdf_at_close_with_attrs(tmp_path):
    attrs = {"lr": LR, "model": "linear softmax", "seed": 7}
    log = TrajectoryLogger(tmp_path / "run.nc", num_classes=K, attrs=attrs, flush_every=10)
    assert log.csv_path == tmp_path / "run.csv" and log.path == tmp_path / "run.nc"
    arrays, evals = _train(log, trials=2, steps=30)
    assert not (tmp_path / "run.nc").exists()  # a .nc file only for a finished run
    assert log.close() == tmp_path / "run.nc"
    assert log.close() == tmp_path / "run.nc"  # closing again does nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.csv", "run.nc"]
    xr.testing.assert_identical(read_log(tmp_path / "run.nc"),
                                make_log(**arrays, eval_steps=evals, attrs=attrs))
    xr.testing.assert_identical(read_log(tmp_path / "run.csv"), make_log(**arrays, eval_steps=evals))
    # a .csv path converts too when asked
    with TrajectoryLogger(tmp_path / "b.csv", num_classes=K, netcdf=True) as log:
        _train(log, trials=2, steps=30)
    assert log.path == tmp_path / "b.nc" and read_log(tmp_path / "b.nc").sizes["step"] == 30


def test_frameworks_scalars_and_batches_of_one(tmp_path):
    """Numbers, 0-d arrays, arrays of one element (a batch of one) and logits of shape
    (1, K) are the same values; float labels must be whole numbers."""
    with TrajectoryLogger(tmp_path / "a.csv", num_classes=K) as log:
        log.validation(0, 0, np.float64(0.5), np.array([0.25]))
        log.step(0, 0, np.int64(4), np.array([2]), np.array([[0.1, -2.0, 3.5]]),
                 np.array(1.25, np.float32))
        log.step(np.array(0), 1.0, 5, 1.0, [1, 2, 3], 2)
        log.validation(0, 2, 0.75, 1)  # after the last update: a validation-only row
    back = read_log(tmp_path / "a.csv")
    assert back["sample"].values.tolist() == [[4, 5]] and back["label"].values.tolist() == [[2, 1]]
    np.testing.assert_array_equal(back["logits"].values[0], np.float32([[0.1, -2.0, 3.5], [1, 2, 3]]))
    assert back["train_loss"].values.tolist() == [[1.25, 2.0]]
    assert back["eval_step"].values.tolist() == [0, 2]
    assert back["val_loss"].values.tolist() == [[0.5, 0.75]]
    assert back["val_acc"].values.tolist() == [[0.25, 1.0]]
    assert (tmp_path / "a.csv").read_text().splitlines()[-1] == "0,2,,,,,,,0.75,1.0"


# ---------------------------------------------------------------------------------
# A killed run

_KILLED = """
import os, signal, sys
import numpy as np
from lesde.io import TrajectoryLogger
a = np.load(sys.argv[1])
log = TrajectoryLogger(sys.argv[2], num_classes=a["logits"].shape[-1], flush_every=10)
T, S = a["sample"].shape
for t in range(S):  # every trial at each step
    for r in range(T):
        if t == 0:
            log.validation(r, 0, a["val_loss"][r, 0], a["val_acc"][r, 0])
        log.step(r, t, a["sample"][r, t], a["label"][r, t], a["logits"][r, t], a["train_loss"][r, t])
with open(sys.argv[2], "a") as f:  # a row cut short by the kill
    f.write("1,23,5,2,0.25,-0.")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_leaves_the_flushed_steps(tmp_path):
    """3 trials logged step by step, 23 steps, flush_every=10: the validations at step
    0 flush each row of step 0; then a flush falls due every 10 rows and happens at the
    end of that round of trials: after steps 4, 8, ..., 20 (12 rows each). Steps 21 and
    22 were still buffered when the run was killed, and a torn row ends the file."""
    rng = np.random.default_rng(3)
    T, S = 3, 23
    arrays = {
        "sample": rng.integers(0, 90, (T, S)), "label": rng.integers(0, K, (T, S)),
        "logits": rng.normal(size=(T, S, K)) * 10.0 ** rng.integers(-3, 3, (T, S, K)),
        "train_loss": rng.exponential(size=(T, S)),
        "val_loss": rng.exponential(size=(T, 1)), "val_acc": rng.uniform(size=(T, 1)),
    }
    np.savez(tmp_path / "arrays.npz", **arrays)
    path = tmp_path / "run.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(tmp_path / "arrays.npz"), str(path)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not path.read_text().endswith("\n")
    with pytest.warns(LogWarning, match=rf"line {1 + 21 * T + 1}: left out the last line, which "
                      r"has 6 of the header's 10 fields and no line end"):
        back = read_log(path)
    kept = {k: v if k.startswith("val") else v[:, :21] for k, v in arrays.items()}
    xr.testing.assert_identical(back, make_log(**kept, eval_steps=[0]))


def test_a_run_stopped_inside_a_trial_reads_with_ragged(tmp_path):
    """Trials one after another; the second diverges (a NaN loss) at step 30: the
    `with` block keeps every row logged, without converting to netCDF, and the file
    reads with the part asked for."""
    problem = _problem()
    runs = [_Trial(r, problem) for r in range(2)]
    with pytest.raises(LogError, match=r"loss at trial 1, step 30 must be a finite float32 number, got nan"):
        with TrajectoryLogger(tmp_path / "run.nc", num_classes=K) as log:
            for r, run in enumerate(runs):
                for t in range(50):
                    i, y, z, loss = run.step()
                    log.step(r, t, i, y, z, np.nan if (r, t) == (1, 30) else loss)
    assert not (tmp_path / "run.nc").exists() and log.closed
    path = tmp_path / "run.csv"
    with pytest.raises(LogError, match=r"trial 1 has no row with itr 30, .*ragged='common_steps'"):
        read_log(path)
    with pytest.warns(LogWarning, match=r"kept trials \[0\], .* left out trials \[1\]; left out 30 rows"):
        first = read_log(path, ragged="complete_trials")
    a = [np.asarray([row[j] for row in runs[0].rows]) for j in range(4)]
    xr.testing.assert_identical(first, make_log(*(x[None] for x in a)))
    with pytest.warns(LogWarning, match=r"kept the 30 itr values every trial has \(0\.\.29\); left out 20 rows"):
        both = read_log(path, ragged="common_steps")
    assert dict(both.sizes) == {"trial": 2, "step": 30, "class": K, "eval_step": 0}
    np.testing.assert_array_equal(both["logits"].values[1],
                                  np.float32([row[2] for row in runs[1].rows[:30]]))


# ---------------------------------------------------------------------------------
# Bad calls


Z = [0.0, 1.0, 2.0]  # K logits


def _log(tmp_path, **kw):
    log = TrajectoryLogger(tmp_path / "bad.csv", num_classes=K, **kw)
    log.validation(0, 0, 0.5, 0.5)
    log.step(0, 0, 1, 1, Z, 0.5)
    return log


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g: g.step(0, 1, 1, 1, [0.0, 1.0], 0.5),
         r"logits at trial 0, step 1 must be K = 3 numbers .* got shape \(2,\)"),
        (lambda g: g.step(0, 1, 1, 1, np.zeros((2, 3)), 0.5), r"logits at trial 0, step 1 .* got shape \(2, 3\)"),
        (lambda g: g.step(0, 1, 1, 3, Z, 0.5),
         r"label at trial 0, step 1 must lie in 0\.\.2 \(num_classes = 3\), got 3"),
        (lambda g: g.step(0, 1, 1, -1, Z, 0.5), r"label at trial 0, step 1 must lie in 0\.\.2 .*got -1"),
        (lambda g: g.step(0, 1, 1, 1.5, Z, 0.5), r"label at trial 0, step 1 must be an integer, got 1\.5"),
        (lambda g: g.step(0, 1, 1, True, Z, 0.5), r"label at trial 0, step 1 must be numeric, got True"),
        (lambda g: g.step(0, 1, [1, 2], 1, Z, 0.5), r"sample at trial 0, step 1 must be one number, got shape \(2,\)"),
        (lambda g: g.step(0, 1, -4, 1, Z, 0.5), r"sample at trial 0, step 1 must lie in 0\.\..*got -4"),
        (lambda g: g.step(0, 0, 1, 1, Z, 0.5),
         r"step at trial 0, step 0: trial 0 has a row at step 0 already \(the steps of a trial must increase\)"),
        (lambda g: g.step(0, -1, 1, 1, Z, 0.5), r"step at trial 0 must lie in 0\.\.2147483647, got -1"),
        (lambda g: g.step(0, 2**31, 1, 1, Z, 0.5), r"step at trial 0 must lie in 0\.\.2147483647, got 2147483648"),
        (lambda g: g.step(0, 1, 1, 1, [0.0, np.inf, 2.0], 0.5),
         r"logits at trial 0, step 1, class 1 must be a finite float32 number, got inf"),
        (lambda g: g.step(0, 1, 1, 1, [0.0, 1e39, 2.0], 0.5), r"class 1 must be a finite float32 number, got 1e\+39"),
        (lambda g: g.step(0, 1, 1, 1, Z, float("nan")),
         r"loss at trial 0, step 1 must be a finite float32 number, got nan"),
        (lambda g: g.step(0, 1, 1, 1, ["a", "b", "c"], 0.5), r"logits at trial 0, step 1 must be numeric"),
        (lambda g: g.validation(0, 0, 0.5, 0.5),
         r"validation at trial 0, step 0: trial 0 has a row at step 0 already .* log it before "
         r"step\(trial, t, \.\.\.\), and the validation after update t as step t \+ 1 = 1"),
        (lambda g: (g.validation(0, 5, 0.5, 0.5), g.validation(0, 5, 0.5, 0.5)),
         r"validation at trial 0, step 5: trial 0 has a validation at step 5 already"),
        (lambda g: (g.validation(0, 5, 0.5, 0.5), g.step(0, 3, 1, 1, Z, 0.5)),
         r"step at trial 0, step 3: trial 0 has a validation at step 5; .* the next step must be >= 5"),
        (lambda g: g.validation(0, 4, 0.5, float("inf")), r"val_acc at trial 0, step 4 must be a finite float32 number, got inf"),
        (lambda g: g.validation(0, 4, None, 0.5), r"val_loss at trial 0, step 4 must be numeric, got None"),
        (lambda g: (g.close(), g.step(0, 1, 1, 1, Z, 0.5)), r"step: the logger of .*bad\.csv is closed"),
        (lambda g: (g.close(), g.validation(0, 1, 0.5, 0.5)), r"validation: the logger of .*bad\.csv is closed"),
        (lambda g: (g.close(), g.flush()), r"flush: the logger of .*bad\.csv is closed"),
    ],
    ids=[
        "too few logits", "a batch of two logits", "label = K", "label < 0", "label 1.5",
        "label True", "two samples", "sample < 0", "step repeated", "step < 0",
        "step beyond int32", "logit inf", "logit beyond float32", "loss nan", "logits not numbers",
        "validation after its step", "validation repeated", "step before a validation",
        "val_acc inf", "val_loss None", "step after close", "validation after close",
        "flush after close",
    ],
)
def test_a_bad_call_is_refused_naming_the_value(tmp_path, call, match):
    log = _log(tmp_path)
    before = log._rows
    with pytest.raises(LogError, match=match):
        call(log)
    assert log._rows == before  # nothing written
    log.close()
    back = read_log(tmp_path / "bad.csv")  # the rows before stay a log
    assert back["step"].values.tolist() == [0] and back["eval_step"].values[0] == 0


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"num_classes": 0}, LogError, r"num_classes must be an integer >= 1, got 0"),
        ({"num_classes": True}, LogError, r"num_classes must be an integer >= 1, got True"),
        ({"flush_every": 0}, LogError, r"flush_every must be an integer >= 1, got 0"),
        ({"attrs": {"num_classes": 3}}, LogError, r"attribute 'num_classes' is reserved"),
        ({"attrs": {"cfg": [1]}}, LogError, r"attribute 'cfg' must be a str, int or float"),
        ({"path": "run.nc", "netcdf": False}, LogError, r"netcdf=False, but the path .*run\.nc' is a \.nc file"),
        ({"path": "run.txt"}, LogError, r"suffix '\.txt'"),
        ({"path": "old.csv"}, FileExistsError, r"old\.csv exists: give another path, or overwrite=True"),
        ({"path": "old.csv", "netcdf": True}, FileExistsError, r"old\.csv exists"),
        ({"path": "old2.nc"}, FileExistsError, r"old2\.nc exists"),
    ],
)
def test_a_bad_logger_is_refused(tmp_path, kw, error, match):
    (tmp_path / "old.csv").write_text("x")
    (tmp_path / "old2.nc").write_text("x")
    kw = {"path": "run.csv", "num_classes": K, **kw}
    with pytest.raises(error, match=match):
        TrajectoryLogger(tmp_path / kw.pop("path"), **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv", "old2.nc"]


def test_overwrite_replaces_the_old_files(tmp_path):
    (tmp_path / "run.csv").write_text("old")
    (tmp_path / "run.nc").write_text("old")
    log = TrajectoryLogger(tmp_path / "run.nc", num_classes=K, overwrite=True)
    assert not (tmp_path / "run.nc").exists()  # the old log cannot pass for this run's
    _train(log, trials=1, steps=20)
    log.close()
    assert read_log(tmp_path / "run.nc").sizes["step"] == 20


def test_close_checks_that_the_trials_agree(tmp_path):
    log = TrajectoryLogger(tmp_path / "run.nc", num_classes=K)
    for t in range(5):
        log.step(0, t, 0, 0, [0.0, 1.0, 2.0], 0.5)
    for t in range(3):
        log.step(1, t, 0, 0, [0.0, 1.0, 2.0], 0.5)
    with pytest.raises(LogError, match=r"trial 1 has 3 steps \(0\.\.2\) and 0 eval steps, trial 0 has 5 "
                       r"steps \(0\.\.4\) and 0 eval steps: every trial of a log must have the same"):
        log.close()
    assert not (tmp_path / "run.nc").exists()
    with pytest.warns(LogWarning, match="kept the 3 itr values every trial has"):
        assert read_csv(tmp_path / "run.csv", ragged="common_steps").sizes["step"] == 3
    log = TrajectoryLogger(tmp_path / "b.csv", num_classes=K)
    for r, steps in ((0, [0, 1, 2]), (1, [0, 1, 3])):
        for t in steps:
            log.step(r, t, 0, 0, [0.0, 1.0, 2.0], 0.5)
    with pytest.raises(LogError, match=r"trial 1 has 3 steps \(0\.\.3\) .* \(as many, at other steps\)"):
        log.close()
    with pytest.raises(LogError, match=r"no step was logged \(the file holds the header only\)"):
        TrajectoryLogger(tmp_path / "c.csv", num_classes=K).close()


# ---------------------------------------------------------------------------------
# Fitting a logged run

FIT = {
    "data": {"window": 10, "fit_until": 0.75},
    "model": {"kind": "le_ode", "gradient": "identity",
              "impact": {"form": "alpha_beta", "time": "constant", "alpha": 1e-2, "beta": 0.0},
              "fit_initial": True},
    "loss": {"kind": "class_mean", "num_steps": 40},
    "optimizer": {"steps": 30, "learning_rate": 0.05, "patience": None},
    "closed_form": {"estimator": "identity", "savgol_window": 5},
}


def test_lesde_fit_fits_a_logged_run(tmp_path, capsys):
    with TrajectoryLogger(tmp_path / "run.nc", num_classes=K, attrs={"model": "linear softmax"}) as log:
        _train(log, trials=4, steps=200, eval_every=50)
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump(FIT))
    start = time.perf_counter()
    code = main(["fit", str(tmp_path / "run.nc"), "--config", str(config), "--out", str(tmp_path / "fit"),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert time.perf_counter() - start < 60
    assert {"fit.nc", "report.json", "summary.json"} <= {p.name for p in (tmp_path / "fit").iterdir()}
    summary = json.loads((tmp_path / "fit" / "summary.json").read_text())
    assert summary["steps_run"] == 30 and np.isfinite(summary["best_loss"])
    fit = lesde.open_result(tmp_path / "fit" / "fit.nc")
    assert fit.sizes["class"] == K and fit.attrs["complete"] == 1
    fit.close()


# ---------------------------------------------------------------------------------
# The PyTorch example

EXAMPLE = ROOT / "examples" / "log_pytorch_training.py"


def test_the_pytorch_example_without_pytorch_says_so(tmp_path):
    blocked = """
import runpy, sys
class NoTorch:  # as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
sys.argv = [sys.argv[1], "--out", sys.argv[2]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", blocked, str(EXAMPLE), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "this example needs PyTorch: pip install 'lesde[torch]'" in proc.stderr
    assert not (tmp_path / "out").exists()


def _run_example(tmp_path, *args):
    pytest.importorskip("torch", reason="the PyTorch example needs torch (pip install 'lesde[torch]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(out), "--trials", "2", "--steps", "120",
         "--eval-every", "40", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = read_log(out / "log.nc")
    assert dict(log.sizes) == {"trial": 2, "step": 120, "class": 4, "eval_step": 4}
    np.testing.assert_array_equal(log["eval_step"].values, [0, 40, 80, 120])
    assert log.attrs["model"] == "SmallCNN" and (out / "log.csv").is_file()
    assert (log["val_acc"].values >= 0).all() and (log["val_acc"].values <= 1).all()
    rows = read_log(out / "log.csv")  # the same log, without the attrs
    assert rows.attrs == {"lesde_log": "trajectory", "num_classes": 4}
    xr.testing.assert_identical(rows.assign_attrs(log.attrs), log)
    return out


def test_the_pytorch_example_logs(tmp_path):
    out = _run_example(tmp_path, "--no-fit")
    assert yaml.safe_load((out / "fit.yaml").read_text())["data"]["window"] == 20
    assert not (out / "fit").exists()


@pytest.mark.slow
def test_the_pytorch_example_logs_and_fits(tmp_path):
    out = _run_example(tmp_path, "--fit-steps", "20")
    summary = json.loads((out / "fit" / "summary.json").read_text())
    assert summary["steps_run"] <= 20 and np.isfinite(summary["best_loss"])
