"""Parameters by path: the same name for a number of a model in sweeps, fits and
results; derived sweep parameters."""

import copy
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

import lesde
from lesde import fit as F
from lesde.metrics import metrics_fn, SPRING_METRICS
from lesde.models import get_at, leaf_paths, parse_path, set_at
from lesde.runs import ConfigError, load_config, parse_config, run_sweep, SweepConfig
from lesde.solve import Grid, member_key

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
E = [[0.1, -0.05, -0.05], [-0.05, 0.1, -0.05], [-0.05, -0.05, 0.1]]


def _general(noise=0.1):
    return lesde.LESDE(lesde.General(np.asarray(E)), "identity", lesde.Classes.balanced(3, 4),
                       noise=lesde.Noise(noise))


def test_parse_path():
    assert parse_path("impact.schedule.value[0, 1]") == (("impact", "schedule", "value"), (0, 1))
    assert parse_path("friction.mu_fwd") == (("friction", "mu_fwd"), None)
    for bad in ("impact..value", "value[0,]", "[0]", "impact.value[-1]", 3):
        with pytest.raises(ValueError, match="is not a parameter path"):
            parse_path(bad)


def test_set_at_replaces_one_entry_and_nothing_else():
    model = _general()
    new = set_at(model, "impact.schedule.value[0,1]", 0.25)
    want = np.asarray(E, dtype=np.float32)
    want[0, 1] = 0.25
    np.testing.assert_array_equal(np.asarray(new.impact.schedule.value), want)
    assert float(get_at(new, "impact.schedule.value[0,1]")) == 0.25
    assert float(get_at(new, "impact.schedule.value[1,0]")) == pytest.approx(-0.05)
    flat_old, flat_new = jax.tree_util.tree_leaves(model), jax.tree_util.tree_leaves(new)
    changed = [i for i, (a, b) in enumerate(zip(flat_old, flat_new)) if not np.array_equal(a, b)]
    assert len(changed) == 1  # only the impact matrix leaf
    assert "impact.schedule.value[0,1]" in leaf_paths(model)
    assert leaf_paths(model, entries=False)[0] == "impact.schedule.value"


@pytest.mark.parametrize("path, match", [
    ("impact.matrix", r"impact \(General\) has no field 'matrix'; its fields are \['schedule'\]"),
    ("impact.schedule.value[3,0]", r"index \[3, 0\] is outside the shape \(3, 3\)"),
    ("impact.schedule.value[0]", r"index \[0\] is outside the shape \(3, 3\)"),
    ("noise.independent", r"noise \(Noise\) has no field 'independent'; its fields are "
                          r"\['terms'\]"),
    ("noise.terms.first.sigma", r"noise.terms \(dict\) has no key 'first'; its keys are "
                                r"\['independent'\]"),
    ("noise.terms.independent.sigma", r"is a Constant, not an array of floats; the numbers under 'noise' "
                          r"are \['noise.terms.independent.sigma.value'\]"),
    ("classes.labels", r"is an array of int32, not an array of floats"),
])
def test_bad_paths_are_named(path, match):
    with pytest.raises(ValueError, match=match):
        get_at(_general(), path)


def test_set_at_checks_the_model_again():
    with pytest.raises(ValueError, match=r"noise.independent sigma must be >= 0, got -0.1"):
        set_at(_general(), "noise.terms.independent.sigma.value", -0.1)
    with pytest.raises(ValueError, match=r"init_std must be >= 0, got -1.0"):
        set_at(_general(), "init_std", -1.0)
    spring = lesde.SpringBlockMap()
    with pytest.raises(ValueError, match=r"mu_fwd must be >= 0, got -0.5"):
        set_at(spring, "friction.mu_fwd", -0.5)
    with pytest.raises(ValueError, match=r"eta must be > 0, got 0.0"):
        set_at(spring, "eta", 0.0)
    with pytest.raises(ValueError, match=r"takes an array of shape \(\)"):
        set_at(spring, "eta", [0.1, 0.2])
    # an SDE built without noise is solved as an ODE: its noise cannot be set afterwards
    with pytest.raises(ValueError, match="built without noise"):
        set_at(lesde.SpringBlockSDE(noise=0.0), "noise", 0.1)
    assert float(set_at(lesde.SpringBlockSDE(), "noise", 0.01).noise) == pytest.approx(0.01)


def test_a_fit_names_its_parameters_by_the_same_paths():
    params = F.Parameters(lesde.LEODE(lesde.General(np.asarray(E)), "identity", 3))
    names = F.parameter_names(params, F.free_parameters(params))
    assert len(names) == 9 and "impact.schedule.value[0,1]" in names
    paths = leaf_paths(params.model)
    for name in names:  # the model's own paths, as sweeps name them
        assert name in paths
        assert get_at(params.model, name) == get_at(params, f"model.{name}")


def test_result_names_are_identifiers():
    assert lesde.solve.dim_name("impact.schedule.value[0, 1]") == "impact_schedule_value_0_1"
    assert lesde.solve.dim_name("impact.alpha") == "impact_alpha"
    assert Grid([{"impact.alpha": [1.0], "impact.beta": [0.0]}, {"mu": [1.0]}]).dims == [
        "impact_alpha", "mu"]
    with pytest.raises(ValueError, match="'a.b' and 'a_b' would both be named 'a_b'"):
        Grid([{"a.b": [1.0]}, {"a_b": [1.0]}])


def test_grid_derived_parameters():
    grid = Grid([{"mu": [0.1, 0.2]}, {"r": [0.5, 1.0, 2.0]}],
                derived={"noise": lambda p: p["r"] * p["mu"]})
    assert grid.names == ["mu", "r", "noise"]
    p = grid.params(np.arange(grid.num_cells))
    np.testing.assert_allclose(p["noise"], np.repeat([0.1, 0.2], 3) * np.tile([0.5, 1, 2], 2))
    assert grid.describe(5) == "cell 5 (mu = 0.2, r = 2, noise = 0.4)"
    with pytest.raises(ValueError, match=r"derived parameter 'noise' is inf in cell 1 \(mu = 0.1, r = 0"):
        Grid([{"mu": [0.1]}, {"r": [1.0, 0.0]}], derived={"noise": lambda p: p["mu"] / p["r"]})
    with pytest.raises(ValueError, match="'mu' is both on an axis and derived"):
        Grid([{"mu": [0.1]}], derived={"mu": lambda p: p["mu"]})


PAIR = {
    "model": {"gradient": "identity", "num_classes": 3, "per_class": 4,
              "impact": {"matrix": E}, "noise": {"independent": 0.1}},
    "sweep": {"axes": [{"impact.schedule.value[0,1]": [-0.05, 0.2],
                        "impact.schedule.value[1,0]": [-0.05, 0.2]}],
              "metrics": ["within_class_trace", "between_class_trace"]},
    "solve": {"t1": 2.0, "dt": 0.5},
}


def test_a_sweep_over_an_entry_of_a_general_impact_matrix(tmp_path):
    cfg = parse_config(PAIR, schema=SweepConfig)
    ds = run_sweep(cfg, tmp_path, progress=False)
    # dimensions and coordinates are named by identifiers, with their paths as attributes
    assert ds["within_class_trace"].dims[0] == "impact_schedule_value_0_1"
    assert ds["impact_schedule_value_1_0"].dims == ("impact_schedule_value_0_1",)
    assert ds["impact_schedule_value_1_0"].attrs["path"] == "impact.schedule.value[1,0]"
    np.testing.assert_array_equal(ds.sel(impact_schedule_value_0_1=0.2)["impact_schedule_value_1_0"], 0.2)
    fn = metrics_fn(cfg.metrics)
    for cell, v in enumerate([-0.05, 0.2]):  # the same computation as the model built directly
        e = np.asarray(E)
        e[0, 1] = e[1, 0] = v
        model = lesde.LESDE(lesde.General(e), "identity", lesde.Classes.balanced(3, 4),
                            noise=lesde.Noise(0.1))
        traj = lesde.simulate(model, t1=2.0, dt=0.5, key=member_key(0, cell, 0), fn=fn)
        for m in cfg.metrics:  # up to rounding: XLA may round a batch differently
            np.testing.assert_allclose(ds[m].values[cell, 0], np.asarray(traj.ys[m])[-1], rtol=1e-5)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["sweep"]["axes"].append({"impact.matrix": [1.0]}),
     r"sweep.axes\[1\]: 'impact.matrix' is not a sweepable parameter of this model; sweepable: "
     r"\['noise.independent', 'init.mean', 'init.std'\], or the path of a number of the model "
     r"\('impact.matrix': impact \(General\) has no field 'matrix'"),
    (lambda c: c["sweep"]["axes"].append({"impact.schedule.value": [1.0]}),
     r"'impact.schedule.value' is an array of shape \(3, 3\); sweep one entry of it, e.g. "
     r"impact.schedule.value\[0,0\]"),
    (lambda c: c["sweep"]["axes"].append({"noise.terms.independent.sigma.value": [0.1, -0.2]}),
     r"cell 1 \(.*noise.terms.independent.sigma.value = -0.2\): noise.independent sigma must be >= 0, "
     r"got -0.2 \(2 of 4 fail this check\)"),
    (lambda c: c["sweep"]["axes"].append({"ratio": [1.0]}),
     r"'ratio' is not a sweepable parameter.*a name that is neither is a variable only if "
     r"sweep.derived reads it"),
    (lambda c: c["sweep"].update(derived={"init_std": {"difference": ["impact.schedule.value[0,1]", "q"]}}),
     r"sweep.derived.init_std: difference\(impact.schedule.value\[0,1\], q\) reads \['q'\], "
     r"which are not on the axes"),
    (lambda c: c["sweep"].update(derived={"impact.schedule.value[0,1]": {"sum": ["impact.schedule.value[1,0]", "impact.schedule.value[1,0]"]}}),
     r"'impact.schedule.value\[0,1\]' is swept on sweep.axes\[0\]"),
    (lambda c: c["sweep"].update(derived={"init_std": {"ratio": ["impact.schedule.value[0,1]"]}}),
     r"sweep.derived.init_std.ratio: List should have at least 2 items"),
    (lambda c: c["sweep"].update(derived={"init_std": {"ratio": ["a", "b"], "sum": ["a", "b"]}}),
     r"a derived parameter is one of product, sum, ratio, difference; got \['sum', 'ratio'\]"),
    (lambda c: c["sweep"].update(derived={"init_std": {"difference": ["impact.schedule.value[0,1]", "impact.schedule.value[0,1]"]}}) or c["sweep"]["axes"].append({"q": [1.0]}),
     r"'q' is not a sweepable parameter"),
    (lambda c: c["sweep"].update(derived={"init_std": {"difference": ["impact.schedule.value[0,1]", "q"]}})
     or c["sweep"]["axes"].append({"q": [0.5]}),
     r"sweep.axes: cell 0 \(.*, q = 0.5, init_std = -0.55\): init_std must be >= 0, got -0.55"),
])
def test_bad_path_sweeps_are_refused_by_name(edit, match):
    cfg = copy.deepcopy(PAIR)
    edit(cfg)
    with pytest.raises(ConfigError, match=match):
        parse_config(cfg, schema=SweepConfig)


def test_a_derived_axis_noise_relative_to_friction(tmp_path):
    data = yaml.safe_load((CONFIGS / "spring_noise_friction.yaml").read_text())
    data["sweep"].update(axes=[{"noise_per_friction": [0.5, 2.0]}, {"mu_fwd": [0.1, 0.2]}],
                         seeds=1)
    data["solve"]["t1"] = 20
    cfg = parse_config(data, schema=SweepConfig)
    ds = run_sweep(cfg, tmp_path, progress=False)
    assert ds["noise"].dims == ("noise_per_friction", "mu_fwd")
    assert ds["noise"].attrs["path"] == "noise" and ds.attrs["parameters"] == (
        '["noise_per_friction", "mu_fwd", "noise"]')
    np.testing.assert_allclose(ds["noise"].values, [[0.05, 0.1], [0.2, 0.4]])
    fn = metrics_fn(cfg.metrics, SPRING_METRICS)
    for cell, (r, mu) in enumerate([(0.5, 0.1), (0.5, 0.2), (2.0, 0.1), (2.0, 0.2)]):
        model = lesde.SpringBlockMap(7, stiffness=1.0, load=1.0, eta=0.01, mu_fwd=mu, noise=r * mu)
        traj = lesde.simulate(model, t1=20, dt=1, key=member_key(0, cell, 0), fn=fn)
        i, j = divmod(cell, 2)
        np.testing.assert_allclose(ds["gains"].values[i, j, 0], np.asarray(traj.ys["gains"])[-1],
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["impact_pairs.yaml", "spring_noise_friction.yaml"])
def test_shipped_path_configs_validate(name):
    cfg = load_config(CONFIGS / name, schema=SweepConfig)
    grid = cfg.sweep.grid()
    assert grid.num_cells > 1
    cfg.build(grid.params(np.asarray(grid.num_cells - 1)))
