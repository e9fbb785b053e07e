"""A catalogue of bad inputs to the Python API, to result and chunk files, and to output
locations: each is refused before any compute with an error naming the field (or file),
the member and the value. Configs are in test_bad_configs.py, fits and logs in
test_bad_fits_and_logs.py."""

import json
import os
import re
import signal
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from cf_check import assert_cf

import lesde
from lesde.cli import main
from lesde.io import OutputError, read_sweep, ResultError

CLASSES = lesde.Classes.balanced(3, 4)
FN = lesde.metrics.metrics_fn(["loss"])


def le_build(p):
    return lesde.LESDE(
        lesde.LocallyElastic(p.get("alpha", 1.0), p.get("beta", 0.2)), "ce", CLASSES,
        noise=lesde.Noise(independent=p.get("sigma", 0.1)),
        init_std=p.get("std", 0.05), init_mean=p.get("mean", 0.0),
    )


def power_build(p):
    return lesde.LESDE(
        lesde.LocallyElastic(lesde.PowerLaw(1.0, p.get("r", 0.5), p.get("t0", 1.0)), 0.0),
        "ce", CLASSES, noise=lesde.Noise(independent=lesde.PowerLaw(0.1, 0.5, p.get("st0", 1.0))),
    )


def knot_build(p):
    return lesde.LESDE(
        lesde.LocallyElastic(lesde.PiecewiseLinear(jnp.stack([0.0, p["knot"], 2.0]), [1.0, 1.0, 1.0]), 0.0),
        "ce", CLASSES,
    )


def spring_build(p):
    return lesde.SpringBlockMap(4, stiffness=p.get("k", 1.0), mu_fwd=p.get("mu", 0.1),
                                noise=p.get("s", 0.1), eta=p.get("eta", 0.01))


def sde_build(p):
    return lesde.SpringBlockSDE(4, mass=p.get("m", 1.0), damping=p.get("g", 1.0),
                                decay=p.get("lam", 0.001), smoothing=p.get("vs", 0.01))


def fn_noise_build(p):
    return lesde.LESDE(lesde.LocallyElastic(1.0, 0.2), "ce", CLASSES,
                       noise=lesde.Noise(independent=lambda t: p["s"] - 0.1 * t))


# Every cell of a sweep is checked before anything is compiled: (build, grid, error).
CELLS = [
    (le_build, [{"sigma": [0.1, 0.2, -0.3, -0.1]}],
     r"^cell 2 \(sigma = -0.3\): noise.independent sigma must be >= 0, got -0.3 \(2 of 4 fail"),
    (le_build, [{"alpha": [0.5, 1.0]}, {"sigma": [0.1, np.inf]}],
     r"axis values of 'sigma' must be finite"),
    (le_build, [{"std": [0.05, -0.01]}],
     r"^cell 1 \(std = -0.01\): init_std must be >= 0, got -0.01 \(1 of 2 fail"),
    (le_build, [{"alpha": [1.0, 2.0, 3.0]}, {"std": [0.1, -1.0]}],
     r"^cell 1 \(alpha = 1, std = -1\): init_std must be >= 0, got -1.0 \(3 of 6 fail"),
    (power_build, [{"t0": [1.0, 0.0, 2.0]}],
     r"^cell 1 \(t0 = 0\): PowerLaw t0 must be > 0, got 0.0 \(1 of 3 fail"),
    (power_build, [{"st0": [-1.0, 1.0]}],
     r"^cell 0 \(st0 = -1\): PowerLaw t0 must be > 0, got -1.0"),
    (power_build, [{"r": [0.5, -500.0]}],
     r"^cell 1 \(r = -500\): noise"),  # placeholder replaced below
    (knot_build, [{"knot": [1.0, 2.5]}],
     r"^cell 1 \(knot = 2.5\): PiecewiseLinear times must be strictly increasing, got 2.0 at index \(2,\)"),
    (spring_build, [{"k": [1.0, 0.0]}],
     r"^cell 1 \(k = 0\): stiffness must be > 0, got 0.0"),
    (spring_build, [{"mu": [0.1, -0.1]}],
     r"^cell 1 \(mu = -0.1\): mu_fwd must be >= 0, got -0.1"),
    (spring_build, [{"eta": [0.01]}, {"s": [0.1, -0.5]}],
     r"^cell 1 \(eta = 0.01, s = -0.5\): noise must be >= 0, got -0.5"),
    (sde_build, [{"m": [1.0, -2.0]}], r"^cell 1 \(m = -2\): mass must be > 0, got -2.0"),
    (sde_build, [{"vs": [0.01, 0.0]}], r"^cell 1 \(vs = 0\): smoothing must be > 0, got 0.0"),
    (sde_build, [{"lam": [-0.1]}], r"^cell 0 \(lam = -0.1\): decay must be >= 0, got -0.1"),
    (fn_noise_build, [{"s": [1.0, 0.05]}],
     r"^cell 1 \(s = 0.05\): noise.independent sigma\(t\) on the time grid must be finite and >= 0"),
]
# a power law noise of exponent -500 overflows on the grid: the check at the grid's ends
CELLS[6] = (
    lambda p: lesde.LESDE(lesde.LocallyElastic(1.0, 0.2), "ce", CLASSES,
                          noise=lesde.Noise(independent=lesde.PowerLaw(0.1, p["r"], 1.0))),
    [{"r": [0.5, -500.0]}],
    r"^cell 1 \(r = -500\): noise.independent sigma\(t\) on the time grid must be finite and >= 0, "
    r"got inf at index \(1,\)",
)


@pytest.mark.parametrize("build, axes, match", CELLS)
def test_every_sweep_cell_is_checked_before_compute(build, axes, match):
    t1, dt = (2.0, 1.0) if build is spring_build else (2.0, 0.5)
    with pytest.raises(ValueError, match=match):
        lesde.sweep(build, axes, t1=t1, dt=dt, fn=lambda t, x, m: {"x": jnp.sum(x)},
                    progress=False)


GRIDS = [
    ([{"alpha": ["a", 1.0]}], r"axis values of 'alpha' must be numbers, got 'a'"),
    ([{"alpha": [True, 1.0]}], r"axis values of 'alpha' must be numbers, got True"),
    ([{"alpha": [None]}], r"axis values of 'alpha' must be numbers, got None"),
    ([{"alpha": [[1.0, 2.0], [3.0]]}], r"axis values of 'alpha' must be a 1-D list of numbers"),
    ([{"alpha": []}], r"axis values of 'alpha' must be a non-empty 1-D list"),
    ([{"alpha": [0.1, 0.2], "beta": [0.1]}], r"zipped parameters \['alpha', 'beta'\] must have equal lengths, got \[2, 1\]"),
    ([{"alpha": [0.1]}, {"alpha": [0.2]}], r"parameter 'alpha' is swept on more than one axis"),
    ([{"alpha": [0.1, np.nan]}], r"axis values of 'alpha' must be finite"),
    ([{}], r"axes\[0\] must be a non-empty mapping"),
]


@pytest.mark.parametrize("axes, match", GRIDS)
def test_bad_grids(axes, match):
    with pytest.raises(ValueError, match=match):
        lesde.Grid(axes)


def test_a_parameter_the_grid_does_not_have_is_named():
    with pytest.raises(ValueError, match=r"build reads the parameter 'sigmaa', which is not on the grid; "
                       r"the grid's parameters are \['alpha'\]"):
        lesde.sweep(lambda p: le_build({"alpha": p["alpha"], "sigma": p["sigmaa"]}),
                    [{"alpha": [0.5]}], t1=1.0, dt=0.5, fn=FN, progress=False)


def test_a_large_axis_is_checked_as_one_batch():
    """10^5 values of one axis times 4 cells of another: one vmapped check (its time is
    measured in benchmarks, not here), naming the first bad cell and the count."""
    axes = [{"alpha": np.linspace(0.0, 1.0, 100_000)}, {"sigma": [0.1, 0.2, 0.3, -0.4]}]
    with pytest.raises(ValueError, match=r"^cell 3 \(alpha = 0, sigma = -0.4\): .* got -0.4 \(100000 of 400000 fail"):
        lesde.solve.check_cells(le_build, lesde.Grid(axes))


SIMULATE = [
    (dict(t1=1.0, dt=0.0), r"dt must be > 0, got 0.0"),
    (dict(t1=1.0, dt=0.3), r"\(t1 - t0\) / dt must be a whole number of steps"),
    (dict(t1=float("inf"), dt=0.1), r"t1 must be finite, got inf"),
    (dict(t1=1.0, dt=0.1, t0=2.0), r"t1 must be > t0, got t0 = 2.0, t1 = 1.0"),
    (dict(t1=1.0, dt=0.1, ts=[0.5, 0.2]), r"ts must be non-decreasing"),
    (dict(t1=1.0, dt=0.1, ts=[0.5, 2.0]), r"ts must lie in \[t0, t1\] = \[0.0, 1.0\]"),
    (dict(t1=1.0, dt=0.1, solver="rk99"), r"unknown solver 'rk99'"),
    (dict(t1=1.0, dt=0.1, max_steps=0), r"max_steps must be a positive integer, got 0"),
    (dict(t1=1.0, dt=0.1, y0=np.ones((2, 2))), r"y0 must have shape \(12, 3\), got shape \(2, 2\)"),
    (dict(t1=1.0, dt=0.1, y0=np.full((12, 3), np.nan)), r"y0 must be finite, got nan at index \(0, 0\)"),
    (dict(t1=1.0, dt=0.1, layout="diagonal"), r"layout"),
]


@pytest.mark.parametrize("kwargs, match", SIMULATE)
def test_bad_simulate_arguments(kwargs, match):
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        lesde.simulate(le_build({}), **kwargs)


# --- result and chunk files --------------------------------------------------------
SWEEP_CONFIG = {
    "model": {"gradient": "ce", "num_classes": 3, "per_class": 4,
              "impact": {"alpha": 1.0, "beta": 0.2}, "noise": {"independent": 0.1}},
    "sweep": {"axes": [{"impact.alpha": [0.5, 1.0, 1.5]}], "seeds": 2, "metrics": ["loss"],
              "chunk_size": 2},
    "solve": {"t1": 1.0, "dt": 0.5},
}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    cfg = d / "c.yaml"
    cfg.write_text(yaml.safe_dump(SWEEP_CONFIG))
    assert main(["sweep", str(cfg), "--out", str(d / "out"), "--quiet"]) == 0
    return d


def _netcdf_cases(sweep_dir, tmp):
    good = (sweep_dir / "out" / "sweep.nc").read_bytes()
    (tmp / "truncated.nc").write_bytes(good[: len(good) // 2])
    (tmp / "text.nc").write_text("not a netCDF file\n")
    (tmp / "empty.nc").write_bytes(b"")
    log = lesde.io.make_log(
        np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int32), np.zeros((1, 2, 3), np.float32),
        np.zeros((1, 2), np.float32), np.zeros((1, 0), np.float32), np.zeros((1, 0), np.float32),
        eval_steps=np.zeros(0, int),
    )
    lesde.io.write_log(log, tmp / "log.nc")
    return [
        ("truncated.nc", r"truncated.nc is not a readable netCDF file"),
        ("text.nc", r"text.nc is not a readable netCDF file"),
        ("empty.nc", r"empty.nc is not a readable netCDF file"),
        ("log.nc", r"log.nc is a training log: a sweep result has a per-member 'status'"),
        ("missing.nc", r"no such file: .*missing.nc"),
    ]


def test_sweep_result_follows_cf(sweep_dir):
    ds = assert_cf(sweep_dir / "out" / "sweep.nc")
    assert ds["seed"].dtype == np.int64
    for name in ds.coords:
        if "path" in ds[name].attrs:  # a parameter: named by the parameter registry
            assert ds[name].attrs["long_name"] == lesde.models.parameter_name(ds[name].attrs["path"])
    for name in ds.data_vars:
        if name != "status":
            assert ds[name].attrs["long_name"] == lesde.metrics.metric_attrs(name)["long_name"]


def test_bad_result_files_are_named(sweep_dir, tmp_path, capsys):
    for name, match in _netcdf_cases(sweep_dir, tmp_path):
        with pytest.raises(ResultError, match=match):
            read_sweep(tmp_path / name)
        assert main(["plot", str(tmp_path / name), "--out", str(tmp_path / "x.png")]) == 2
        assert "lesde plot: " in capsys.readouterr().err
        assert not (tmp_path / "x.png").exists()


def test_plot_output_locations(sweep_dir, tmp_path, capsys):
    result = str(sweep_dir / "out" / "sweep.nc")
    cases = [
        (tmp_path, [], r"is a folder; give a file name"),
        (tmp_path / "pd.jpg", [], r"pd.jpg: a figure is written as .png, .pdf, .svg \(chosen by "
                                  r"the extension\), got .jpg"),
        (tmp_path / "pd", [], r"got no extension"),
    ]
    for out, extra, match in cases:
        assert main(["plot", result, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert re.search(match, err), err
    with pytest.raises(SystemExit) as e:  # argparse refuses a resolution <= 0
        main(["plot", result, "--out", str(tmp_path / "x.png"), "--dpi", "0"])
    assert e.value.code == 2 and "--dpi: must be a finite number > 0, got 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _png_size(path) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plot_writes_the_format_of_the_extension(sweep_dir, tmp_path):
    import matplotlib.pyplot as plt

    result = str(sweep_dir / "out" / "sweep.nc")
    out = tmp_path / "new" / "folder"  # created
    open_figures = len(plt.get_fignums())
    for name, magic in (("pd.pdf", b"%PDF-"), ("pd.svg", b"<?xml"), ("pd.PNG", b"\x89PNG")):
        assert main(["plot", result, "--out", str(out / name)]) == 0
        assert (out / name).read_bytes().startswith(magic)
    assert main(["plot", result, "--out", str(out / "hi.png"), "--dpi", "220"]) == 0
    assert main(["plot", result, "--out", str(out / "lo.png")]) == 0  # default 110 dpi
    (w_hi, h_hi), (w_lo, h_lo) = _png_size(out / "hi.png"), _png_size(out / "lo.png")
    assert abs(w_hi - 2 * w_lo) <= 2 and abs(h_hi - 2 * h_lo) <= 2
    assert sorted(p.name for p in out.iterdir()) == ["hi.png", "lo.png", "pd.PNG", "pd.pdf", "pd.svg"]
    assert len(plt.get_fignums()) == open_figures  # each figure is released once written


@pytest.fixture(scope="module")
def interrupted_store(tmp_path_factory):
    """A sweep interrupted after its first chunk: its config and output folder."""
    cfg = lesde.runs.parse_config(SWEEP_CONFIG, schema=lesde.runs.SweepConfig)
    out = tmp_path_factory.mktemp("store") / "out"
    calls = {"n": 0}
    original = lesde.solve.ChunkStore.save

    def save_then_stop(self, members, results):
        original(self, members, results)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    lesde.solve.ChunkStore.save = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            lesde.runs.run_sweep(cfg, out, progress=False)
    finally:
        lesde.solve.ChunkStore.save = original
    return cfg, out


@pytest.mark.parametrize("damage, match, recover", [
    (lambda f: f.write_bytes(f.read_bytes()[:40]), r"the chunk file .*members_000000000_000000001.npz is damaged", True),
    (lambda f: f.write_text("garbage"), r"the chunk file .*members_000000000_000000001.npz is damaged", False),
    (lambda f: np.savez(open(f, "wb"), member=np.arange(2)), r"is damaged \(ValueError: it lacks status\)", False),
    (lambda f: (f.parent / "sweep.json").write_text("{"), r"the chunk store's description .*sweep.json cannot be read", False),
])
def test_a_damaged_chunk_store_is_named_with_how_to_recover(tmp_path, interrupted_store, damage, match, recover):
    import shutil

    cfg, store = interrupted_store
    out = tmp_path / "out"
    shutil.copytree(store, out)
    files = sorted((out / "chunks").glob("members_*.npz"))
    assert len(files) == 1
    damage(files[0])
    with pytest.raises(ValueError, match=match) as e:
        lesde.runs.run_sweep(cfg, out, progress=False)
    assert "remove" in str(e.value)
    if recover:  # what the message says: remove the file, and its members are solved again
        files[0].unlink()
        ds = lesde.runs.run_sweep(cfg, out, progress=False)
        assert (ds["status"] == 0).all() and ds.attrs["members_solved_this_run"] == 6


# --- output locations ----------------------------------------------------------------
def _read_only_dir(tmp_path) -> Path:
    """A folder files cannot be created in: a read-only mode for an ordinary user; for
    root, who may write there anyway, a folder under /proc (a read-only file system)."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    return Path("/proc/self")


@pytest.mark.parametrize("command", ["simulate", "sweep", "spring", "train"])
def test_output_locations_are_checked_before_compute(tmp_path, capsys, command):
    configs = Path(__file__).parent.parent / "configs"
    cfg = {
        "simulate": [], "spring": [], "sweep": [str(configs / "phase_transition.yaml")],
        "train": [str(configs / "train_separation_noise.yaml")],
    }[command]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (a_file, "is a file, not a folder"),
        (_read_only_dir(tmp_path) / "out", "cannot be created|cannot be written"),
    ]
    for out, match in cases:
        assert main([command, *cfg, "--out", str(out), "--quiet"] if command != "spring"
                    else [command, *cfg, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"lesde {command}: --out {out}" in err and re.search(match, err), err


def test_a_second_run_on_a_locked_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with lesde.io.output_lock(out, "test"):
        assert main(["simulate", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "another lesde command is writing to" in err and str(out) in err
        with pytest.raises(OutputError, match="another lesde command is writing"):
            with lesde.io.output_lock(out, "lesde sweep"):
                pass
    assert not (out / "summary.json").exists()


def test_json_outputs_are_valid_json(tmp_path):
    out = tmp_path / "run"
    cfg = {
        "model": {"gradient": "identity", "num_classes": 3, "per_class": 4,
                  "impact": {"alpha": 1.0, "beta": 0.45}, "init": {"std": 0.0}},
        "solve": {"t1": 150.0, "dt": 0.5, "num_saves": 4},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["simulate", str(path), "--out", str(out), "--quiet"]) in (0, 1)
    text = (out / "summary.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in summary.json"))


def test_sigterm_stops_a_command_as_ctrl_c_does_with_exit_status_143(tmp_path, monkeypatch, capsys):
    """A batch scheduler's SIGTERM: the sweep keeps its finished chunk, writes no result,
    says what it kept, and exits 143; the process's own SIGTERM handler is back after."""
    from lesde.cli import main

    before = signal.getsignal(signal.SIGTERM)
    original = lesde.solve.ChunkStore.save

    def save_then_terminated(self, members, results):
        original(self, members, results)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(lesde.solve.ChunkStore, "save", save_then_terminated)
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(SWEEP_CONFIG))
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out), "--quiet"]) == 143
    assert "lesde sweep: interrupted; the finished chunks are kept in" in capsys.readouterr().err
    assert len(list((out / "chunks").glob("members_*.npz"))) == 1
    assert not (out / "sweep.nc").exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_sigterm_while_a_command_winds_down_is_only_recorded():
    from lesde.cli import _sigterm_as_interrupt

    received = []
    with pytest.raises(KeyboardInterrupt):
        with _sigterm_as_interrupt(received):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here
            except KeyboardInterrupt:
                os.kill(os.getpid(), signal.SIGTERM)  # saving what was kept: not stopped again
                time.sleep(0.05)
                raise
    assert received == [signal.SIGTERM, signal.SIGTERM]
