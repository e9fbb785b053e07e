"""Batched sweeps: chunking, devices, resuming, divergence, configs, the transition."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import yaml

import lesde
from lesde._checks import recording_checks
from lesde.runs import ConfigError, parse_config, run_sweep, SweepConfig
from lesde.metrics import metrics_fn
from lesde.plot import plot_phase_diagram, theory_lines
from lesde.solve import _sweep, ChunkStore

CLASSES = lesde.Classes.balanced(2, 5)
AXES = [{"alpha": [0.2, 0.6, 1.0]}, {"sigma": [0.01, 0.1]}]
FN = metrics_fn(["loss", "ncm_error", "within_class_trace"])


def build(p):
    return lesde.LESDE(
        lesde.LocallyElastic(p["alpha"], 0.3), "ce", CLASSES,
        noise=lesde.Noise(independent=p["sigma"]),
    )


def run(**kw):
    args = dict(t1=2.0, dt=0.1, fn=FN, seeds=2, progress=False)
    args.update(kw)
    return lesde.sweep(build, AXES, **args)


def assert_same(a, b):
    for v in ("loss", "ncm_error", "within_class_trace"):
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(a["status"].values, b["status"].values)


def test_results_do_not_depend_on_chunk_size():
    # Members get the same keys whatever the chunking; XLA may round differently for
    # different batch shapes, so values agree to float32 rounding, not bit for bit.
    whole = run()
    assert whole["loss"].dims == ("alpha", "sigma", "seed")
    assert whole["loss"].shape == (3, 2, 2)
    for size in (1, 7):
        assert_same(run(chunk_size=size), whole)
    large = run(chunk_size=8192)  # never padded beyond the 12 members
    assert large.attrs["chunk_size"] == 12
    assert_same(large, whole)
    assert not np.allclose(whole["loss"].values[..., 0], whole["loss"].values[..., 1])


def test_one_member_equals_its_own_simulate():
    ds = run()
    cell, s = 4, 1  # alpha = 1.0, sigma = 0.01 (row-major, last axis fastest)
    traj = lesde.simulate(
        build({"alpha": jnp.asarray(1.0), "sigma": jnp.asarray(0.01)}), t1=2.0, dt=0.1,
        key=lesde.member_key(0, cell, s), fn=FN,
    )
    np.testing.assert_allclose(ds["loss"].values[2, 0, 1], traj.ys["loss"][-1], rtol=1e-5)


def test_one_compilation_for_the_whole_sweep():
    traces = []

    def counting_build(p):
        # not the concrete probe of cell 0, nor the vmapped check of every cell
        if isinstance(p["alpha"], jax.core.Tracer) and not recording_checks():
            traces.append(1)
        return build(p)

    for _ in range(2):  # the second, identical sweep reuses the compiled function
        lesde.sweep(counting_build, AXES, t1=1.0, dt=0.1, fn=FN, seeds=2, chunk_size=5,
                    progress=False)  # 12 members in 3 chunks, the last one padded
    assert len(traces) == 1


# the sweep of `run()` as a script, for runs in other processes
SWEEP_SCRIPT = textwrap.dedent(
    """
    import lesde
    from lesde.metrics import metrics_fn
    classes = lesde.Classes.balanced(2, 5)
    def build(p):
        return lesde.LESDE(lesde.LocallyElastic(p["alpha"], 0.3), "ce", classes,
                           noise=lesde.Noise(independent=p["sigma"]))
    def run(**kw):
        return lesde.sweep(build, [{"alpha": [0.2, 0.6, 1.0]}, {"sigma": [0.01, 0.1]}],
                           t1=2.0, dt=0.1, seeds=2, progress=False,
                           fn=metrics_fn(["loss", "ncm_error", "within_class_trace"]), **kw)
    """
)

SCRIPT = SWEEP_SCRIPT + textwrap.dedent(
    """
    import sys, jax
    assert len(jax.devices()) == 4, jax.devices()
    ds = run(chunk_size=6)
    assert ds.attrs["num_devices"] == 4 and ds.attrs["chunk_size"] == 8
    ds.to_netcdf(sys.argv[1], engine="scipy")
    """
)


def test_four_host_devices_give_the_same_results(tmp_path):
    script = tmp_path / "four.py"
    script.write_text(SCRIPT)
    out = tmp_path / "four.nc"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, str(script), str(out)], check=True, env=env, timeout=300)
    with xr.open_dataset(out, engine="scipy") as four:
        assert_same(four.load(), run())


MULTI = textwrap.dedent(
    """
    import sys, jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, pid, store, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    assert jax.process_count() == 2 and len(jax.devices()) == 4
    """
) + SWEEP_SCRIPT + textwrap.dedent(
    """
    ds = run(chunk_size=4, store=store, fingerprint="m")
    ds.to_netcdf(out, engine="scipy")
    """
)


def test_two_processes_with_jax_distributed(tmp_path):
    """jax.distributed on localhost: 2 processes x 2 CPU devices; every process gets the
    whole result, only process 0 writes the chunk store."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = tmp_path / "multi.py"
    script.write_text(MULTI)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    store = tmp_path / "chunks"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(port), str(i), str(store), str(tmp_path / f"{i}.nc")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    try:
        for p in procs:
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0, out.decode()[-3000:]
    finally:
        for p in procs:
            p.kill()
    reference = run()
    for i in range(2):
        with xr.open_dataset(tmp_path / f"{i}.nc", engine="scipy") as ds:
            assert ds.attrs["num_devices"] == 4
            assert_same(ds.load(), reference)
    assert len(list(store.glob("members_*.npz"))) == 3  # 12 members in chunks of 4


def test_interrupted_sweep_resumes_to_the_same_result(tmp_path, monkeypatch):
    full = run(chunk_size=4)
    store = tmp_path / "chunks"
    calls = {"n": 0}
    original = ChunkStore.save

    def save_then_interrupt(self, members, results):
        original(self, members, results)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ChunkStore, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(chunk_size=4, store=store, fingerprint="f")
    monkeypatch.setattr(ChunkStore, "save", original)
    assert len(list(store.glob("members_*.npz"))) == 2
    assert not list(store.glob(".*partial"))
    resumed = run(chunk_size=4, store=store, fingerprint="f")
    assert resumed.attrs["members_solved_this_run"] == 4  # 12 members, 8 were on disk
    for v in ("loss", "ncm_error", "within_class_trace", "status"):
        np.testing.assert_array_equal(resumed[v].values, full[v].values)
    with pytest.raises(ValueError, match="holds a different computation"):
        run(chunk_size=4, store=store, fingerprint="another")


def test_diverging_members_are_flagged_exactly():
    def build_identity(p):
        return lesde.LESDE(
            lesde.LocallyElastic(p["alpha"], 0.0), "identity", CLASSES,
            noise=lesde.Noise(independent=0.05),
        )

    alphas = [0.5, 5000.0, 1.0, 9000.0]  # exp(alpha t / 2) overflows for the big ones
    ds = lesde.sweep(build_identity, [{"alpha": alphas}], t1=1.0, dt=0.01, fn=FN, seeds=3,
                     chunk_size=5, progress=False)
    expected = np.array([0, 1, 0, 1])[:, None] * np.ones(3, int)
    np.testing.assert_array_equal(ds["status"].values, expected)
    assert np.isfinite(ds["loss"].values[[0, 2]]).all()


def test_grid_errors():
    with pytest.raises(ValueError, match="equal lengths"):
        lesde.Grid([{"a": [1, 2], "b": [1, 2, 3]}])
    with pytest.raises(ValueError, match="more than one axis"):
        lesde.Grid([{"a": [1]}, {"a": [2]}])
    with pytest.raises(ValueError, match="must be finite"):
        lesde.Grid([{"a": [1, float("nan")]}])
    with pytest.raises(ValueError, match="seeds must be a positive integer, got 0"):
        run(seeds=0)


CONFIG = {
    "model": {
        "gradient": "identity", "num_classes": 3, "per_class": 30,
        "impact": {"alpha": 0.0, "beta": 0.0}, "noise": {"independent": 0.1},
    },
    "sweep": {
        "axes": [{"impact.alpha": {"linspace": [-0.1, 0.1, 5]},
                  "impact.beta": {"linspace": [0.05, -0.05, 5]}}],
        "seeds": 3,
        "metrics": ["ncm_error", "loss"],
        "save_times": [100.0, 300.0],
    },
    "solve": {"t1": 300.0, "dt": 1.0},
}


def test_phase_transition_at_alpha_equals_beta(tmp_path):
    """Identity model: separable (NCM error 0) iff alpha > beta, within the grid's
    resolution (alpha - beta in steps of 0.075 across 0)."""
    cfg = parse_config(CONFIG, schema=SweepConfig)
    ds = run_sweep(cfg, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "sweep.nc").exists()
    assert not (tmp_path / "out" / "chunks").exists()
    err = ds["ncm_error"].sel(time=300.0).mean("seed").values
    gap = ds["impact_alpha"].values - ds["impact_beta"].values
    assert ds["impact_beta"].attrs["path"] == "impact.beta"  # the name's path
    # float32 cannot hold the largest gap to t = 300 (the class means grow as exp(15)
    # against a within-class spread of ~1): those members are flagged, their metrics NaN
    status = ds["status"].values
    flagged = (status != 0).any(axis=1)
    if jax.config.jax_enable_x64:
        assert not flagged.any()
    else:
        assert flagged.tolist() == [False, False, False, False, True], status
        assert (status[flagged] == lesde.solve.INACCURATE).all() and np.isnan(err[flagged]).all()
    assert np.all(err[gap <= 0] > 0.3), (gap, err)  # chance level is 2/3
    assert np.all(err[(gap > 0) & ~flagged] < 0.05), (gap, err)
    # the transition is sharper at the longer horizon
    early = ds["ncm_error"].sel(time=100.0).mean("seed").values
    assert early[(gap > 0) & ~flagged].max() >= err[(gap > 0) & ~flagged].max()
    assert theory_lines(ds)["impact_alpha"] == pytest.approx(0.0, abs=1e-12)
    png = tmp_path / "pd.png"
    plot_phase_diagram(ds, path=png)
    assert png.stat().st_size > 10_000
    stored = yaml.safe_load(ds.attrs["config"])
    assert stored["sweep"]["seeds"] == 3 and ds.attrs["version_jax"]


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["sweep"].update(speed=1), "sweep.speed: unknown key"),
        (lambda c: c["sweep"]["axes"].append({"impact.gamma": [1.0]}),
         "'impact.gamma' is not a sweepable parameter"),
        (lambda c: c["sweep"]["axes"].append({"noise.independent": [0.1, -0.2]}),
         r"noise.independent = -0.2\): noise.independent sigma must be >= 0, got -0.2"),
        (lambda c: c["sweep"].update(metrics=["nc9"]), r"unknown \['nc9'\]"),
        (lambda c: c["sweep"].update(save_times=[100.0, 400.0]), "within \\(0, t1 = 300.0\\]"),
        (lambda c: c["sweep"]["axes"][0].update({"impact.alpha": {"linspace": [0, 1]}}),
         "linspace"),
        (lambda c: c["sweep"].update(seeds=0), "sweep.seeds"),
    ],
)
def test_bad_sweep_configs(edit, match):
    cfg = json.loads(json.dumps(CONFIG))
    edit(cfg)
    with pytest.raises(ConfigError, match=match):
        parse_config(cfg, schema=SweepConfig)


def test_cli_sweep_and_plot(tmp_path, capsys):
    from lesde.cli import main

    cfg = json.loads(json.dumps(CONFIG))
    cfg["sweep"]["axes"].append({"noise.independent": [0.01, 0.1]})
    cfg["solve"].update(t1=20.0)
    cfg["sweep"]["save_times"] = [10.0, 20.0]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    assert (out / "phase_diagram.png").stat().st_size > 10_000
    assert main(["plot", str(out / "sweep.nc"), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").exists()
    assert main(["plot", str(tmp_path / "missing.nc")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**cfg, "extra": 1}))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "extra: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_auto_chunk_size_follows_memory():
    import jax

    small = build({"alpha": 1.0, "sigma": 0.1})
    big = lesde.LESDE(lesde.LocallyElastic(1.0, 0.0), "ce", lesde.Classes.balanced(100, 500))
    devices = jax.devices()
    n_small = _sweep.auto_chunk_size(small, devices)
    n_big = _sweep.auto_chunk_size(big, devices)
    assert n_small == 4096 * len(devices)  # the cap
    assert 1 <= n_big < n_small
    # halving the memory fraction halves the chunk (until the floor of one per device)
    half = _sweep.auto_chunk_size(big, devices, fraction=0.125)
    assert abs(half - n_big / 2) <= len(devices)
