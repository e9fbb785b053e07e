"""The scaled schedule (`lesde.Scaled`) and the tangent-kernel impact of a log as a
schedule (`lesde.fit.kernel_impact_schedule`): closed forms, a planted-factor recovery
through a fit, and clear errors."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import xarray as xr

import lesde
from lesde import fit as F
from lesde.runs import build_fit
from lesde.runs._fit_config import FitConfig

KNOTS = np.array([0.0, 100.0, 400.0, 1000.0])


def _kernel_log(K=3, trials=4, seed=0):
    """A small log (random logits) with a tangent-kernel impact that grows in time."""
    rng = np.random.default_rng(seed)
    S = 1000
    label = rng.integers(0, K, (trials, S))
    log = lesde.io.make_log(np.zeros((trials, S), int), label,
                            rng.standard_normal((trials, S, K)), np.zeros((trials, S)))
    base = 1e-3 * (2.0 * np.eye(K) + 0.5)
    growth = np.array([1.0, 1.5, 3.0, 4.0])
    impact = growth[None, :, None, None] * base * (1 + 0.1 * rng.standard_normal((trials, 4, K, K)))
    log["impact"] = (("trial", "impact_step", "class_row", "class_col"), impact.astype(np.float32))
    return log.assign_coords(impact_step=KNOTS.astype(int))


# ------------------------------------------------------------------------------
# Scaled


@pytest.mark.parametrize("inner", ["piecewise", "power_law"])
def test_scaled_value_integral_and_time_scaled_match_closed_forms(inner):
    if inner == "piecewise":
        g = lesde.PiecewiseLinear([0.0, 2.0, 5.0], [1.0, 3.0, 2.0])

        def G(t):  # f = 1 + t on [0, 2], 3 - (t - 2)/3 on [2, 5], 2 beyond
            if t <= 2:
                return t + t * t / 2
            if t <= 5:
                return 4 + 3 * (t - 2) - (t - 2) ** 2 / 6
            return 11.5 + 2 * (t - 5)
    else:
        g = lesde.PowerLaw(2.0, 0.5, 3.0)
        G = lambda t: 2.0 * 3.0 * ((1 + t / 3.0) ** 0.5 - 1) / 0.5  # noqa: E731
    f = lesde.Scaled(g, 0.7)
    for t in (0.0, 1.0, 3.5, 7.0):
        assert float(f(t)) == pytest.approx(0.7 * float(g(t)), rel=1e-6)
        assert float(f.integral(t)) == pytest.approx(0.7 * G(t), rel=1e-5, abs=1e-6)
    s = 4.0
    h = f.time_scaled(s, s)  # the rate per unit tau = t / s
    assert isinstance(h, lesde.Scaled) and h.factor is f.factor  # the factor stays
    for tau in (0.0, 0.3, 1.2):
        assert float(h(tau)) == pytest.approx(s * float(f(s * tau)), rel=1e-6)
        assert float(h.integral(tau)) == pytest.approx(float(f.integral(s * tau)), rel=1e-5, abs=1e-6)


def test_scaled_matrix_factor_times_scalar_growth():
    g = lesde.PiecewiseLinear([0.0, 10.0], [1.0, 3.0])
    E0 = jnp.array([[1.0, 0.2], [0.3, 0.8]])
    f = lesde.Scaled(g, E0)
    assert f.shape == (2, 2)
    np.testing.assert_allclose(f(5.0), 2.0 * E0, rtol=1e-6)
    np.testing.assert_allclose(f.integral(10.0), 20.0 * E0, rtol=1e-6)
    assert lesde.General(f).num_classes == 2
    assert lesde.schedule_kind("scaled") is lesde.Scaled


def test_scaled_refuses_what_it_cannot_scale():
    with pytest.raises(ValueError, match="does not broadcast"):
        lesde.Scaled(lesde.Constant(jnp.ones((3, 3))), jnp.ones(2))
    with pytest.raises(ValueError, match="Function"):
        lesde.Scaled(lambda t: t, 1.0)
    with pytest.raises(ValueError, match="not finite|finite"):
        lesde.Scaled(1.0, float("nan"))
    with pytest.raises(ValueError, match="scaled factor"):
        lesde.Scaled(1.0, -1.0).check_nonnegative("sigma")


def test_only_the_factor_of_a_scaled_impact_is_free():
    E = lesde.PiecewiseLinear(KNOTS, np.ones((4, 3, 3)))
    params = F.Parameters(lesde.LEODE(lesde.General(lesde.Scaled(E, 0.5)), "identity", 3))
    spec = F.free_parameters(params)
    assert F.parameter_names(params, spec) == ["impact.schedule.factor"]


# ------------------------------------------------------------------------------
# kernel_impact_schedule


def test_kernel_impact_schedule_averages_trials_and_interpolates():
    log = _kernel_log()
    mean = log["impact"].values.astype(float).mean(0)
    E = F.kernel_impact_schedule(log)
    assert isinstance(E, lesde.PiecewiseLinear) and E.shape == (3, 3)
    np.testing.assert_allclose(E.times, KNOTS)
    np.testing.assert_allclose(E(250.0), 0.5 * (mean[1] + mean[2]), rtol=1e-5)
    g = F.kernel_impact_schedule(log, "growth")
    tr = np.trace(mean, axis1=1, axis2=2)
    np.testing.assert_allclose(g.values, tr / tr[0], rtol=1e-5)
    a, b = F.kernel_impact_schedule(log, "alpha_beta")
    np.testing.assert_allclose(a.values, tr / 3, rtol=1e-5)
    np.testing.assert_allclose(b.values, mean[:, ~np.eye(3, dtype=bool)].mean(-1), rtol=1e-5)
    # a trial whose measurement failed (NaN) at a step is left out of that step's mean
    bad = log.copy(deep=True)
    bad["impact"][0, 2] = np.nan
    E2 = F.kernel_impact_schedule(bad)
    np.testing.assert_allclose(E2.values[2], log["impact"].values[1:, 2].astype(float).mean(0), rtol=1e-5)
    np.testing.assert_allclose(F.kernel_impact_schedule(log, trials=[1]).values,
                               log["impact"].values[1], rtol=1e-6)


def test_a_log_without_kernel_measurements_is_refused():
    log = _kernel_log().drop_vars(["impact", "impact_step"])
    with pytest.raises(F.FitDataError, match="no tangent-kernel impact.*impact_checkpoints"):
        F.kernel_impact_schedule(log)
    nan = _kernel_log()
    nan["impact"][:, 3] = np.nan
    with pytest.raises(F.FitDataError, match="no finite measurement at step 1000"):
        F.kernel_impact_schedule(nan)
    with pytest.raises(ValueError, match="unknown form"):
        F.kernel_impact_schedule(_kernel_log(), "trace")
    with pytest.raises(F.FitDataError):
        F.kernel_impact_schedule(xr.Dataset())


def test_planted_factor_of_the_kernel_impact_is_recovered():
    K = 3
    E = F.kernel_impact_schedule(_kernel_log(K))
    truth = lesde.LEODE(lesde.General(lesde.Scaled(E, 0.37)), "identity", K)
    ts = np.linspace(0.0, 1000.0, 21)
    x0 = jr.normal(jr.key(5), (K, K))
    xbar = lesde.simulate(truth, t0=0.0, t1=1000.0, dt=10.0, y0=x0, ts=ts).ys
    loss = F.ClassMeanLoss(F.ClassMeans(ts, xbar), fit_until=750.0, num_steps=50)
    start = F.Parameters(lesde.LEODE(lesde.General(lesde.Scaled(E, 1.0)), "identity", K))
    res = F.fit(start, loss, steps=150, learning_rate=0.05, patience=None, progress=False)
    assert F.parameter_names(start, res.free) == ["impact.schedule.factor"]
    assert float(res.params.model.impact.schedule.factor) == pytest.approx(0.37, rel=0.02)
    np.testing.assert_allclose(res.params.model.impact.schedule.schedule.values, E.values, rtol=1e-5)
    assert loss.goodness(res.params)["heldout"]["r2"] > 0.98  # the later window, predicted


# ------------------------------------------------------------------------------
# Fit configurations: model.impact.time 'kernel' and 'kernel_growth'


def _config(**impact):
    return FitConfig.model_validate({
        "data": {"window": 50}, "model": {"impact": impact, "fit_initial": True},
    })


def test_fit_config_builds_the_scaled_kernel_impact():
    log = _kernel_log()
    E = F.kernel_impact_schedule(log)
    setup = build_fit(_config(form="general", time="kernel", factor=0.5), log)
    sched = setup.params.model.impact.schedule
    assert isinstance(sched, lesde.Scaled) and float(sched.factor) == 0.5
    np.testing.assert_allclose(sched(300.0), 0.5 * E(300.0), rtol=1e-6)
    names = F.parameter_names(setup.params, setup.free)
    assert names[0] == "impact.schedule.factor" and all(n.startswith("y0") for n in names[1:])
    ab = build_fit(_config(time="kernel"), log).params.model.impact
    a, b = F.kernel_impact_schedule(log, "alpha_beta")
    np.testing.assert_allclose([ab.alpha(0.0), ab.beta(0.0)], [a(0.0), b(0.0)], rtol=1e-6)
    grow = build_fit(_config(form="general", time="kernel_growth", alpha=0.02, beta=0.01), log)
    g = F.kernel_impact_schedule(log, "growth")
    want = (0.01 * np.eye(3) + 0.01) * float(g(700.0))
    np.testing.assert_allclose(grow.params.model.impact.schedule(700.0), want, rtol=1e-5)


def test_fit_config_kernel_needs_kernel_measurements_and_its_own_keys():
    log = _kernel_log().drop_vars(["impact", "impact_step"])
    with pytest.raises(F.FitDataError, match="my.nc \\(the tangent-kernel impact\\).*impact_checkpoints"):
        build_fit(_config(time="kernel"), log, source="my.nc")
    for bad, key in (({"time": "kernel", "alpha": 0.1}, "alpha and beta"),
                     ({"time": "piecewise_linear", "factor": 2.0}, "factor applies")):
        with pytest.raises(ValueError, match=key):
            _config(**bad)


@pytest.mark.slow  # compiles a fit and its curvature (~30 s); the fast tests above build the same setup
def test_lesde_fit_of_the_scaled_kernel_impact_from_a_log_file(tmp_path, capsys):
    import json

    import yaml

    from lesde.cli import main

    log = _kernel_log()
    path = lesde.io.write_log(log, tmp_path / "log.nc")
    assert "impact" in lesde.io.read_log(path)  # the measured kernel impact is kept
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"window": 50},
        "model": {"impact": {"form": "alpha_beta", "time": "kernel", "factor": 0.5}},
        "loss": {"num_steps": 10},
        "optimizer": {"method": "adam", "steps": 3, "learning_rate": 0.01, "patience": None},
        "closed_form": {"estimator": "none"},
    }))
    out = tmp_path / "fit"
    assert main(["fit", str(path), "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["fit"]["parameters"]) == {"impact.alpha.factor", "impact.beta.factor"}
    assert "kernel in time" in capsys.readouterr().out
    ds = lesde.open_result(out / "fit.nc")
    a, b = F.kernel_impact_schedule(log, "alpha_beta")
    fa = report["fit"]["parameters"]["impact.alpha.factor"]["value"]
    t = float(ds["step"][3])
    assert float(ds["impact"][3, 0, 0]) == pytest.approx(fa * float(a(t)), rel=1e-4)
    ds.close()
