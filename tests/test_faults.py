"""Fault injection: runs killed (SIGKILL) or interrupted (SIGINT, SIGTERM) in the middle, then run
again, give the results of an uninterrupted run; an interrupted run never looks
complete; two runs on one folder do not race. Each command runs as its own process."""

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

ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")

SWEEP = {
    "model": {"gradient": "ce", "num_classes": 3, "per_class": 20,
              "impact": {"alpha": 1.0, "beta": 0.2}, "noise": {"independent": 0.1}},
    "sweep": {"axes": [{"impact.alpha": {"linspace": [0.0, 2.0, 12]}}], "seeds": 2,
              "metrics": ["loss", "ncm_error"], "chunk_size": 2, "save_times": [5.0, 20.0]},
    "solve": {"t1": 20.0, "dt": 0.01},
}

TRAIN = {
    "experiment": "trajectories",
    "data": {"name": "geomnist", "n_per_class": 8, "val_fraction": 0.25, "seed": 1},
    "network": {"name": "mlp", "width": 12, "depth": 2},
    "corruption": [0.0, 0.3, 0.6],
    "train": {"trials": 3, "steps": 600, "learning_rate": 0.05, "eval_every": 20, "seed": 0},
}


class Run:
    """`lesde ARGS` in its own process, with its output collected as it comes."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lesde.cli", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV,
        )
        self.out = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):
            self.out.extend(chunk)

    def wait_for(self, ready, what: str, timeout: float = 240.0):
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"ended before {what}: {self.text()[-2000:]}"
            assert time.monotonic() < deadline, f"no {what} in {timeout} s: {self.text()[-2000:]}"
            time.sleep(0.02)

    def finish(self, timeout: float = 300.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.proc.kill()
        self.reader.join(timeout=10)
        return code

    def text(self) -> str:
        return bytes(self.out).decode(errors="replace")


def _config(tmp_path, config, name):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _complete(*args) -> Run:
    run = Run(*args)
    assert run.finish() == 0, run.text()[-3000:]
    return run


def _assert_same_dataset(a: Path, b: Path, skip=()):
    with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
        assert set(x.data_vars) == set(y.data_vars)
        for name in x.data_vars:
            if name not in skip:
                np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted_sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("whole")
    _complete("sweep", _config(d, SWEEP, "s.yaml"), "--out", d / "out", "--quiet")
    return d / "out" / "sweep.nc"


@pytest.mark.parametrize(
    "sig", [pytest.param(signal.SIGKILL, marks=pytest.mark.slow), signal.SIGINT],  # alike but for the signal
    ids=["SIGKILL", "SIGINT"],
)
def test_sweep_stopped_mid_run_resumes_to_the_uninterrupted_result(tmp_path, sig, uninterrupted_sweep):
    cfg = _config(tmp_path, SWEEP, "s.yaml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "phase_diagram.png").write_bytes(b"an old picture")
    run = Run("sweep", cfg, "--out", out)
    chunks = out / "chunks"
    run.wait_for(lambda: len(list(chunks.glob("members_*.npz"))) >= 2, "two finished chunks")
    run.proc.send_signal(sig)
    code = run.finish()
    if sig == signal.SIGINT:
        assert code == 130, run.text()[-2000:]
        assert "lesde sweep: interrupted; the finished chunks are kept in" in run.text()
    else:
        assert code == -signal.SIGKILL
    assert not (out / "sweep.nc").exists()  # nothing looks complete
    assert not (out / "phase_diagram.png").exists()  # no old picture beside the partial store
    kept = len(list(chunks.glob("members_*.npz")))
    assert 2 <= kept < 12 and not list(chunks.glob(".*partial"))
    _complete("sweep", cfg, "--out", out, "--quiet")
    _assert_same_dataset(out / "sweep.nc", uninterrupted_sweep)
    with xr.open_dataset(out / "sweep.nc") as ds:
        assert ds.attrs["members_solved_this_run"] == 24 - 2 * kept
    assert (out / "phase_diagram.png").stat().st_size > 10_000


@pytest.mark.slow  # the refusal itself is tested in-process in test_bad_inputs.py
def test_two_sweeps_on_one_folder_do_not_race(tmp_path, uninterrupted_sweep):
    cfg = _config(tmp_path, SWEEP, "s.yaml")
    out = tmp_path / "out"
    first = Run("sweep", cfg, "--out", out, "--quiet")
    first.wait_for(lambda: (out / "chunks").is_dir(), "the chunk store")
    second = Run("sweep", cfg, "--out", out, "--quiet")
    assert second.finish() == 2
    assert f"lesde sweep: another lesde command is writing to {out}" in second.text()
    assert first.finish() == 0, first.text()[-2000:]
    _assert_same_dataset(out / "sweep.nc", uninterrupted_sweep)


@pytest.mark.slow
def test_a_killed_simulate_leaves_no_complete_run_and_reruns(tmp_path):
    out = tmp_path / "out"
    cfg = _config(tmp_path, {
        "model": {"gradient": "ce", "num_classes": 3, "per_class": 50,
                  "impact": {"alpha": 1.0, "beta": 0.2}, "noise": {"independent": 0.1}},
        "solve": {"t1": 400.0, "dt": 0.001, "num_saves": 5},
    }, "r.yaml")
    _complete("simulate", cfg, "--out", out, "--quiet")
    first = lesde.open_result(out / "trajectory.nc")
    run = Run("simulate", cfg, "--out", out)
    run.wait_for(lambda: not (out / "summary.json").exists(), "the old summary removed")
    run.wait_for(lambda: "%" in run.text(), "the progress bar")
    run.proc.send_signal(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    _complete("simulate", cfg, "--out", out, "--quiet")
    again = lesde.open_result(out / "trajectory.nc")
    assert set(again.variables) == set(first.variables)
    for k in first.variables:
        np.testing.assert_array_equal(again[k].values, first[k].values, err_msg=k)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_train_stopped_mid_run_resumes_to_the_uninterrupted_logs(tmp_path, sig):
    whole = tmp_path / "whole"
    cfg = _config(tmp_path, TRAIN, "t.yaml")
    _complete("train", cfg, "--out", whole, "--quiet")
    out = tmp_path / "out"
    run = Run("train", cfg, "--out", out, "--quiet")
    run.wait_for(lambda: (out / "log_p0.3000.nc").exists(), "the second fraction's log")
    run.proc.send_signal(sig)
    code = run.finish()
    if sig != signal.SIGKILL:  # Ctrl-C, or a batch scheduler's stop
        assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], run.text()[-2000:]
        assert "lesde train: interrupted; kept the logs of 2 of 3 fractions" in run.text()
    assert not (out / "summary.json").exists() and not (out / "log_p0.6000.nc").exists()
    again = _complete("train", cfg, "--out", out, "--quiet")
    assert "kept log_p0.0000.nc" in again.text() and "kept log_p0.3000.nc" in again.text()
    for p in ("0.0000", "0.3000", "0.6000"):
        _assert_same_dataset(out / f"log_p{p}.nc", whole / f"log_p{p}.nc")
    # fewer fractions in the same folder: the others' logs are removed, not left undescribed
    fewer = _config(tmp_path, {**TRAIN, "corruption": [0.0]}, "t1.yaml")
    last = _complete("train", fewer, "--out", out, "--quiet")
    assert "removed log_p0.3000.nc, log_p0.6000.nc" in last.text()
    assert sorted(p.name for p in out.glob("log_p*.nc")) == ["log_p0.0000.nc"]


@pytest.mark.slow
def test_fit_killed_mid_run_reruns_to_the_uninterrupted_fit(tmp_path):
    import lesde

    data = lesde.nets.geomnist(8, val_fraction=0.25, seed=1)
    log = lesde.nets.train_sgd(data, network="mlp", network_options={"width": 8, "depth": 1},
                               trials=4, steps=400, eval_every=100, learning_rate=0.05)
    lesde.io.write_log(log, tmp_path / "log.nc")
    cfg = _config(tmp_path, {"data": {"window": 20}, "optimizer": {"method": "adam", "steps": 400}},
                  "f.yaml")
    whole = tmp_path / "whole"
    _complete("fit", tmp_path / "log.nc", "--config", cfg, "--out", whole, "--quiet")
    out = tmp_path / "out"
    run = Run("fit", tmp_path / "log.nc", "--config", cfg, "--out", out)
    run.wait_for(lambda: b"fit: " in run.out and b"/400" in run.out, "the fit loop")
    run.proc.send_signal(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    _complete("fit", tmp_path / "log.nc", "--config", cfg, "--out", out, "--quiet")
    import json

    a = json.loads((out / "report.json").read_text())["fit"]["parameters"]
    b = json.loads((whole / "report.json").read_text())["fit"]["parameters"]
    assert a == b
