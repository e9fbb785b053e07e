"""Spring-block configs, sweeps and `lesde spring`."""

import json

import numpy as np
import pytest
import xarray as xr
import yaml
from cf_check import assert_cf

import lesde
from lesde.cli import main
from lesde.runs import ConfigError, parse_config, run_sweep, SpringRunConfig, SweepConfig

SWEEP = {
    "model": {"kind": "spring_map", "num_blocks": 4, "eta": 0.05, "mu_ratio": 1.0},
    "sweep": {
        "axes": [{"noise": [0.0, 1.0]}, {"mu_fwd": [0.0, 0.2]}],
        "seeds": 3,
        "metrics": ["curvature", "shape", "gains", "elongations"],
    },
    "solve": {"t1": 1500, "dt": 1},
}


def test_spring_sweep_has_vector_gains_and_matches_the_closed_forms(tmp_path):
    config = parse_config(SWEEP, schema=SweepConfig)
    ds = run_sweep(config, tmp_path / "out", progress=False)
    assert ds["gains"].dims == ("noise", "mu_fwd", "seed", "block")
    assert ds["elongations"].dims == ("noise", "mu_fwd", "seed", "spring")
    np.testing.assert_array_equal(ds["block"], [1, 2, 3, 4])
    quiet = ds.sel(noise=0.0)
    for mu in (0.0, 0.2):  # noiseless cells: the exact equilibria, every seed alike
        expected = lesde.spring_equilibrium(4, mu=mu)
        np.testing.assert_allclose(
            quiet["elongations"].sel(mu_fwd=mu), np.broadcast_to(expected, (3, 5)), atol=1e-4
        )
    assert (quiet["shape"].sel(mu_fwd=0.2) == -1).all()  # friction alone: concave
    assert (quiet["shape"].sel(mu_fwd=0.0) == 0).all()  # no friction: linear
    assert (tmp_path / "out" / "sweep.nc").is_file()


def test_lesde_sweep_draws_the_load_curve_grid(tmp_path, capsys):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(SWEEP))
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "spring-block map (variant A)" in printed and "curvature (mean over seeds; NaN where a seed is flagged)" in printed
    assert (out / "load_curves.png").stat().st_size > 0
    assert (out / "phase_diagram.png").stat().st_size > 0
    with xr.open_dataset(out / "sweep.nc") as ds:
        assert ds["gains"].shape == (2, 2, 3, 4)


def test_langevin_sweep_over_noise_and_friction(tmp_path):
    config = parse_config(
        {
            "model": {"kind": "spring_sde", "num_blocks": 3, "mu_ratio": 1.5},
            "sweep": {"axes": [{"noise": [0.0, 0.01]}, {"mu_fwd": [0.0, 0.003]}], "seeds": 2},
            "solve": {"t1": 20.0, "dt": 0.05, "solver": "heun"},
        },
        schema=SweepConfig,
    )
    assert config.metrics == ["curvature", "nonuniformity", "shape", "gains"]
    ds = run_sweep(config, tmp_path, progress=False)
    assert (ds["status"] == 0).all()
    assert np.isfinite(ds["gains"]).all() and ds["gains"].dims[-1] == "block"


@pytest.mark.parametrize(
    "path", ["configs/spring_map_authors.yaml", "configs/spring_sde_authors.yaml", None]
)
def test_lesde_spring_writes_a_complete_run(tmp_path, capsys, path):
    from pathlib import Path

    root = Path(__file__).parent.parent
    data = yaml.safe_load((root / (path or "lesde/runs/default_spring.yaml")).read_text())
    steps = round(data["solve"]["t1"] / data["solve"]["dt"])
    data["solve"].update(seeds=2, num_saves=11, t1=data["solve"]["dt"] * (steps // 10))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    assert main(["spring", str(cfg), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    arrays = assert_cf(out / "trajectory.nc")
    assert arrays["positions"].shape == (2, 11, data["model"].get("num_blocks", 7))
    assert summary["load_curve"]["shape"] in ("concave", "linear", "convex")
    assert (out / "spring.png").stat().st_size > 0
    if data["model"]["kind"] == "spring_map":
        assert summary["theory"]["kind"] == "mean-field stationary state"
    assert "load curve:" in capsys.readouterr().out


def test_lesde_spring_default_config_is_the_authors_map():
    config = parse_config(
        yaml.safe_load(open(lesde.runs.DEFAULT_SPRING_CONFIG)), schema=SpringRunConfig
    )
    model = config.model.build()
    assert isinstance(model, lesde.SpringBlockMap)
    assert model.num_blocks == 7
    assert (float(model.eta), float(model.noise)) == pytest.approx((0.01, 0.1))
    assert float(model.friction.mu_back) == float(model.friction.mu_fwd) == pytest.approx(0.1)
    assert round(config.solve.t1) == 10_000


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["model"].update(friction=0.1), r"model.spring_map.friction: unknown key"),
        (lambda c: c["model"].update(mu_fwd=-0.1), r"model.spring_map.mu_fwd: mu_fwd must be >= 0, got -0.1"),
        (lambda c: c["model"].update(stiffness=0), r"model.spring_map.stiffness: stiffness must be > 0, got 0"),
        (lambda c: c["model"].update(num_blocks=0), r"model.spring_map.num_blocks: Input should be greater than or equal to 1"),
        (lambda c: c["model"].update(kind="spring"), r"model: Input tag 'spring' found using model_kind\(\) does not match"),
        (lambda c: c["model"].update(mu_back=0.2), r"give mu_back or mu_ratio, not both"),
        (lambda c: c["solve"].update(dt=0.5), r"solve.dt must be 1 for the spring-block map"),
        (lambda c: c["sweep"].update(metrics=["loss"]), r"unknown \['loss'\] for a spring_map model"),
        (lambda c: c["sweep"]["axes"].append({"num_blocks": [3, 4]}), r"'num_blocks' is not a sweepable parameter"),
        (lambda c: c["sweep"]["axes"].append({"eta": [0.1, -0.1]}), r"eta = -0.1\): eta must be > 0, got -0.1"),
    ],
)
def test_bad_spring_configs_are_refused_by_key(edit, match):
    cfg = yaml.safe_load(yaml.safe_dump(SWEEP))
    edit(cfg)
    with pytest.raises(ConfigError if "model" in match or "key" in match else ValueError, match=match):
        parse_config(cfg, schema=SweepConfig)


def test_bad_spring_run_is_refused_before_computing(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"kind": "spring_sde", "noise": -1}, "solve": {"t1": 1, "dt": 0.1}}))
    assert main(["spring", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "model.spring_sde.noise: noise must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_chain_positions_of_a_network_give_the_same_load_curve():
    D = np.array([[5.0, 3.0, 2.0, 1.5, 1.2], [4.0, 3.9, 3.0, 1.0, 0.2]])
    from_network = lesde.metrics.load_curve(lesde.metrics.separation_gains(D))
    x = lesde.metrics.chain_positions(D, load=2.0)
    np.testing.assert_allclose(x[:, -1], 2.0 * (1 - D[:, -1] / D[:, 0]), rtol=1e-6)
    from_chain = lesde.metrics.load_curve(lesde.metrics.position_gains(x))
    np.testing.assert_allclose(from_chain.gains, from_network.gains, rtol=1e-5)
    np.testing.assert_array_equal(from_chain.shape_code, from_network.shape_code)
    assert list(from_network.shape_label) == ["convex", "concave"]
    with pytest.raises(ValueError, match=r"D_0 must be > 0"):
        lesde.metrics.chain_positions([0.0, 1.0])


def test_lesde_plot_draws_both_pictures_of_a_spring_sweep(tmp_path):
    config = parse_config(SWEEP, schema=SweepConfig)
    run_sweep(config, tmp_path, progress=False)
    assert main(["plot", str(tmp_path / "sweep.nc"), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0
    assert (tmp_path / "p_load_curves.png").stat().st_size > 0


def test_spring_map_sweep_saves_at_several_steps(tmp_path):
    cfg = yaml.safe_load(yaml.safe_dump(SWEEP))
    cfg["sweep"]["save_times"] = [500, 1500]
    ds = run_sweep(parse_config(cfg, schema=SweepConfig), tmp_path, progress=False)
    assert ds["gains"].dims == ("noise", "mu_fwd", "seed", "time", "block")
    np.testing.assert_array_equal(ds["time"], [500, 1500])
    final = parse_config(SWEEP, schema=SweepConfig)
    last = run_sweep(final, tmp_path / "last", progress=False)  # same keys, t1 only
    np.testing.assert_allclose(ds["gains"].isel(time=-1), last["gains"], rtol=1e-5, atol=1e-6)
