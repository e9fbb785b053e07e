"""The accelerator check (benchmarks/_device_check.py, `bench_performance.py
--device-check`) on the CPU: its quick mode writes every part with finite figures and the
CPU-vs-device agreement passed (the default device is the CPU here, so the agreement is
trivially 0, but the code path runs); with two host devices standing for the CPU and an
accelerator, the agreement runs on each; a part that fails or runs out of time is
recorded and the next part runs. The whole quick check (about a minute) is marked slow;
one part of it runs in the default suite."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def device_check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import _device_check

    return _device_check


def numbers(tree):
    """Every number in a JSON tree."""
    if isinstance(tree, dict):
        for v in tree.values():
            yield from numbers(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def run_quick(tmp_path, *parts):
    out = tmp_path / "device_check.json"
    cmd = [sys.executable, str(BENCH / "_device_check.py"), "--quick", "--out", str(out)]
    if parts:
        cmd += ["--parts", *parts]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), out.with_suffix(".md").read_text(), proc.stdout


def check_part(res, name):
    p = res["parts"][name]
    assert p["status"] == "ok", (name, p["status"], p.get("traceback"))
    values = list(numbers(p))
    assert values and all(math.isfinite(v) for v in values), name
    ag = p["agreement"]
    assert ag["passed"] and ag["max_rel_diff"] <= ag["tolerance"], (name, ag)
    assert ag["same_device"] and ag["max_rel_diff"] == 0.0  # the CPU is the default device
    assert ag["ran_on"] == {"cpu": ["cpu:0"], "default": ["cpu:0"]}


def test_quick_spring_part(tmp_path):
    """One part of the quick check, end to end in a subprocess (seconds)."""
    res, md, stdout = run_quick(tmp_path, "spring")
    assert res["mode"] == "quick" and list(res["parts"]) == ["spring"]
    env = res["environment"]
    assert env["device"]["backend"] == "cpu" and env["device"]["default_is_cpu"]
    assert env["versions"]["jax"] and env["versions"]["jaxlib"]
    check_part(res, "spring")
    p = res["parts"]["spring"]
    assert p["member_steps_per_s"] > 0 and p["members_status_ok"] == p["job"]["members"]
    assert "| spring |" in md and "member-steps/s" in md
    assert "the default device is the CPU" in stdout


@pytest.mark.slow
def test_quick_device_check(tmp_path):
    """The whole quick check (about a minute on 2 CPU cores, most of it compilation)."""
    res, md, _ = run_quick(tmp_path)
    assert list(res["parts"]) == ["reference", "sweep", "spring", "fit"]
    for name in res["parts"]:
        check_part(res, name)
    ref = res["parts"]["reference"]["rows"][0]
    assert ref["sample_steps_per_s"] > 0 and 0 < ref["fraction_of_stream_bandwidth"]
    sweep = res["parts"]["sweep"]
    assert sweep["run"]["members"] == 10_000 and sweep["run"]["member_steps_per_s"] > 0
    assert res["parts"]["fit"]["step_s"]["median_s"] > 0
    assert "passed" in md and "FAILED" not in md


def test_failing_and_skipped_parts_are_recorded(device_check, tmp_path, monkeypatch):
    """An error in a part is recorded with its traceback and what the part measured
    before it, and the next part runs; a part without time left is recorded as
    skipped; the JSON and the table are written."""

    def broken(cfg, budget, clock, res):
        res["measured_before"] = 2.0
        raise RuntimeError("out of device memory")

    def fine(cfg, budget, clock, res):
        res["figure"] = 1.0

    monkeypatch.setattr(device_check, "PARTS", {"reference": broken, "sweep": fine,
                                                "spring": fine, "fit": fine})
    monkeypatch.setattr(device_check.Budget, "for_part",
                        lambda self, name: -1.0 if name == "fit" else 100.0)
    out = tmp_path / "dc.json"
    device_check.run(quick=True, out=out)
    res = json.loads(out.read_text())
    parts = res["parts"]
    assert parts["reference"]["status"] == "error: RuntimeError: out of device memory"
    assert "Traceback" in parts["reference"]["traceback"]
    assert parts["reference"]["measured_before"] == 2.0
    assert parts["sweep"]["status"] == "ok" and parts["sweep"]["figure"] == 1.0
    assert parts["fit"]["status"] == "skipped: time budget"
    md = out.with_suffix(".md").read_text()
    assert "error: RuntimeError" in md and "skipped: time budget" in md
    with pytest.raises(ValueError, match="unknown parts"):
        device_check.run(quick=True, out=out, parts=["nope"])


def test_bench_performance_dispatches(device_check, monkeypatch):
    """`bench_performance.py --device-check [--quick]` runs the check, nothing else."""
    import bench_performance

    calls = []
    monkeypatch.setattr(device_check, "run", lambda quick: calls.append(quick) or {})
    monkeypatch.setattr(bench_performance, "part_reference",
                        lambda a: pytest.fail("the benchmark ran"))
    bench_performance.main(["--device-check", "--quick"])
    bench_performance.main(["--device-check"])
    assert calls == [True, False]


def test_max_rel_diff(device_check):
    import numpy as np

    f = device_check.max_rel_diff
    a = {"x": np.array([1.0, -2.0]), "y": np.array([1e-6, 0.0])}
    assert f(a, a) == 0.0
    b = {"x": np.array([1.0, -2.0 + 2e-4]), "y": np.array([1e-6, 1e-7])}
    assert f(a, b) == pytest.approx(0.1)  # per output: y's scale is 1e-6
    assert f({"x": np.array([np.nan, 1.0])}, {"x": np.array([np.nan, 1.0])}) == 0.0
    assert f({"x": np.array([np.nan, 1.0])}, {"x": np.array([0.0, 1.0])}) == math.inf


def test_agreement_records_errors(device_check):
    """A computation that fails on one device is recorded as not passed, with the error;
    the part's other figures are kept by its caller."""
    import jax.numpy as jnp

    ok = device_check.agreement(lambda dev: {"x": jnp.arange(3.0)}, 1e-4, "a small sum")
    assert ok["passed"] and ok["max_rel_diff"] == 0.0 and ok["same_device"]

    def fails(dev):
        raise RuntimeError("no kernel for this device")

    bad = device_check.agreement(fails, 1e-4, "a failing solve")
    assert not bad["passed"] and bad["status"].startswith("error on cpu device: RuntimeError")


def test_default_device_other_than_the_cpu(tmp_path):
    """The path an accelerator takes: with two host devices, the first standing for the
    CPU and the second for the default device, the spring part's timed sweep shards
    over both and its agreement runs once on each of the two devices."""
    import os

    out = tmp_path / "dc.json"
    script = (
        "import sys, jax; sys.path.insert(0, sys.argv[1]); import _device_check as dc; "
        "d = jax.devices(); assert len(d) == 2, d; dc.devices = lambda: (d[0], d[1]); "
        "dc.run(quick=True, out=sys.argv[2], parts=['spring'])")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "-c", script, str(BENCH), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    p = json.loads(out.read_text())["parts"]["spring"]
    assert p["status"] == "ok", p.get("traceback")
    ag = p["agreement"]
    assert ag["ran_on"] == {"cpu": ["cpu:0"], "default": ["cpu:1"]}
    assert not ag["same_device"] and ag["passed"] and ag["max_rel_diff"] <= ag["tolerance"]
    assert p["chunk_size"] % 2 == 0  # the sweep's chunk is sharded over the two devices
