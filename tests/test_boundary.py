"""Boundary search: synthetic order parameters with known crossings, the identity model's
exact boundary at alpha = beta, per-cell reports of bad requests, one compilation, the
width and its finite-size scaling, and the `lesde boundary` command."""

import json

import jax
import numpy as np
import pytest
import xarray as xr
import yaml
from scipy import stats

import lesde
from lesde._checks import recording_checks
from lesde.boundary import (
    bracket_search, CELL_STATUS, finite_size_scaling, grid_points, locate_boundary,
    OrderParameter, power_law_fit, search_rounds, transition_width,
)
from lesde.metrics import metrics_fn
from lesde.runs import BoundaryConfig, ConfigError, parse_config

from cf_check import assert_cf

LOCATED, NOT_BRACKETED, NON_MONOTONE, FLAGGED = CELL_STATUS.values()


def logistic_evaluate(center, width, seeds, rng, flagged=()):
    """Bernoulli seeds (metric 1 or 0) with P(1) = logistic((x - center[c]) / width[c])."""

    def evaluate(cell, x, ids):
        p = 1 / (1 + np.exp(-(x - center[cell]) / width[cell]))
        v = (rng.random((len(x), seeds)) < p[:, None]).astype(float)
        bad = np.isin(cell, flagged)
        v[bad, 0] = np.nan
        return v, np.where(np.isnan(v), 1, 0)

    return evaluate


def test_order_parameter_intervals_are_scipys():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 0.5, (3, 10))
    m, lo, hi, se, n = OrderParameter("m", 1.0).estimate(x, 0.9)
    for i in range(3):
        ci = stats.t.interval(0.9, 9, loc=x[i].mean(), scale=stats.sem(x[i]))
        np.testing.assert_allclose([lo[i], hi[i]], ci, rtol=1e-12)
        assert se[i] == pytest.approx(stats.sem(x[i]))
    hits = np.array([[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]], float)
    f = OrderParameter("m", 0.5, reduce="fraction", below=0.5)  # counts the zeros
    m, lo, hi, se, n = f.estimate(hits, 0.95)
    np.testing.assert_allclose(m, [1.0, 0.5, 0.0])
    for i, k in enumerate([4, 2, 0]):
        ci = stats.binomtest(k, 4).proportion_ci(0.95, method="exact")
        np.testing.assert_allclose([lo[i], hi[i]], [ci.low, ci.high], atol=1e-12)
    hits[1, 2] = np.nan  # a flagged member: the probe is no measurement
    assert np.isnan(f.estimate(hits, 0.95)[0][1]) and np.isfinite(f.estimate(hits, 0.95)[0][[0, 2]]).all()
    with pytest.raises(ValueError, match="exactly one of below and above"):
        OrderParameter("m", 0.5, reduce="fraction")
    with pytest.raises(ValueError, match="threshold of a fraction must lie in"):
        OrderParameter("m", 1.5, reduce="fraction", above=0.0)
    with pytest.raises(ValueError, match="reduce must be one of"):
        OrderParameter("m", 0.5, reduce="median")


def test_synthetic_crossing_within_tol_and_covered_at_the_stated_rate():
    """400 cells, each a logistic of width 0.01 crossing one half at a known centre,
    64 Bernoulli seeds per probe: the located value lies within tol of the centre and
    the 95% interval covers the centre, at the stated rate over the cells (independent
    searches advancing together)."""
    rng = np.random.default_rng(7)
    C, tol, level = 400, 0.01, 0.95
    center = rng.uniform(0.1, 0.9, C)
    width = np.full(C, 0.01)
    out = bracket_search(logistic_evaluate(center, width, 64, rng), np.zeros(C), 1.0,
                         order=OrderParameter("hit", 0.5), tol=tol, level=level)
    assert (out["cell_status"] == LOCATED).all()
    assert out["max_rounds"] == search_rounds(1.0, tol) == 5  # 0.25 / 2^5 <= 0.01
    assert (out["bracket_high"] - out["bracket_low"] <= tol + 1e-12).all()
    within = np.abs(out["critical"] - center) <= tol
    covered = (out["critical_low"] <= center) & (center <= out["critical_high"])
    assert within.mean() >= level, within.mean()
    assert covered.mean() >= level, covered.mean()
    # the interval is informative: a few tolerances wide, not the whole range
    assert np.median(out["critical_high"] - out["critical_low"]) < 6 * tol
    # members: 10 probes x 64 seeds per cell, against 101 grid points
    assert out["members_solved"] == C * (5 + 5) * 64
    assert grid_points(1.0, tol) == 101
    # a wider transition and 16 seeds: the seeds, not the tolerance, limit the located
    # value, and the interval (Clopper-Pearson on the fraction of hits) says so
    width = np.full(C, 0.03)
    fraction = OrderParameter("hit", 0.5, reduce="fraction", above=0.5)
    out = bracket_search(logistic_evaluate(center, width, 16, rng), np.zeros(C), 1.0,
                         order=fraction, tol=tol, level=level)
    within = np.abs(out["critical"] - center) <= tol
    covered = (out["critical_low"] <= center) & (center <= out["critical_high"])
    assert within.mean() < 0.8 and covered.mean() >= level, (within.mean(), covered.mean())


def test_multi_point_rounds_and_decreasing_order_parameters():
    """Three interior points per round (quadrisection), and an order parameter that
    decreases along the axis; the mean reduction of a continuous metric."""
    rng = np.random.default_rng(3)
    C = 50
    center = rng.uniform(-1.5, 1.5, C)

    def evaluate(cell, x, ids):
        f = np.tanh(-(x - center[cell]) / 0.05)
        v = f[:, None] + rng.normal(0, 0.2, (len(x), 16))
        return v, np.zeros(v.shape, int)

    out = bracket_search(evaluate, np.full(C, -2.0), 2.0, order=OrderParameter("m", 0.0),
                         tol=0.005, points=3, initial=5)
    assert (out["cell_status"] == LOCATED).all() and (out["direction"] == -1).all()
    assert out["max_rounds"] == search_rounds(4.0, 0.005, points=3) == 4  # 1 / 4^4 <= 0.005
    assert np.mean(np.abs(out["critical"] - center) <= 0.005) >= 0.95
    assert np.mean((out["critical_low"] <= center) & (center <= out["critical_high"])) >= 0.95


def test_bad_requests_are_reported_per_cell():
    """A threshold never crossed, an order parameter crossing three times, one crossing
    twice between ends on the same side and a probe with a flagged member: each is its
    cell's status, the other cells are located."""
    rng = np.random.default_rng(0)

    def f(c, x):
        return np.select(
            [c == 0, c == 1, c == 2, c == 3],
            [x > 0.3,                                   # located
             np.zeros_like(x, bool),                    # never crosses
             ((x > 0.15) & (x < 0.6)) | (x > 0.85),     # crosses three times
             (x > 0.4) & (x < 0.6)],                    # crosses twice
            x > 0.7,                                    # cell 4: flagged
        )

    def evaluate(cell, x, ids):
        p = np.where(f(cell, x), 0.95, 0.05)
        v = (rng.random((len(x), 32)) < p[:, None]).astype(float)
        v[cell == 4, 3] = np.nan
        return v, np.where(np.isnan(v), 1, 0)

    out = bracket_search(evaluate, np.zeros(5), 1.0, order=OrderParameter("hit", 0.5), tol=0.01)
    assert out["cell_status"].tolist() == [LOCATED, NOT_BRACKETED, NON_MONOTONE, NON_MONOTONE, FLAGGED]
    assert abs(out["critical"][0] - 0.3) <= 0.01
    assert np.isnan(out["critical"][1:]).all() and np.isnan(out["critical_low"][1:]).all()
    assert (out["num_probes"][1:] == 5).all()  # stopped after the first round
    assert out["probe_status"][4].max() == 1 and out["probe_status"][0].max() == 0


def test_identity_model_boundary_is_alpha_equals_beta_with_one_compilation():
    """The identity model on the line alpha + (K-1) beta = 0: at alpha = beta = 0 the drift
    vanishes, X_i(T) are iid N(0, (s0^2 + sigma^2 T) I), so the mean between-class trace
    is exactly (K-1) p (s0^2 + sigma^2 T) / N (Euler steps included: each is an exact
    Brownian increment), and it grows strictly with alpha - beta: its crossing of that
    value is exactly alpha = beta. The search finds it within tol, inside its interval,
    tracing the member function once for all its rounds."""
    K, n, T, s0 = 3, 20, 200.0, 0.05
    N, p = K * n, K
    classes = lesde.Classes.balanced(K, n)
    traces = []

    def build(q):
        if isinstance(q["impact.alpha"], jax.core.Tracer) and not recording_checks():
            traces.append(1)
        return lesde.LESDE(lesde.LocallyElastic(q["impact.alpha"], q["impact.beta"]), "identity",
                           classes, noise=lesde.Noise(independent=q["noise.independent"]),
                           init_std=s0)

    tol, sigma = 0.005, 0.2
    threshold = (K - 1) * p * (s0**2 + sigma**2 * T) / N
    ds = locate_boundary(
        build, {"impact.alpha": (-0.1, 0.1), "impact.beta": (0.05, -0.05)},
        outer=[{"noise.independent": [sigma]}],
        order=OrderParameter("between_class_trace", threshold),
        fn=metrics_fn(["between_class_trace"]), t1=T, dt=10.0, tol=tol, seeds=64, progress=False,
    )
    assert len(traces) == 1  # one compilation for all rounds
    assert ds.attrs["solver_calls"] > 4 and ds.attrs["max_rounds"] == 4
    assert ds.attrs["inner"] == "alpha_minus_beta"
    ds = ds.squeeze("noise_independent")
    assert int(ds["cell_status"]) == LOCATED and int(ds["num_probes"]) == 5 + 4
    crit = float(ds["critical"])
    assert abs(crit) <= tol, crit
    assert float(ds["critical_low"]) <= 0.0 <= float(ds["critical_high"])
    assert float(ds["critical_high"]) - float(ds["critical_low"]) < 0.1
    # the parameters at the critical point lie on the segment
    a, b = float(ds["critical_impact_alpha"]), float(ds["critical_impact_beta"])
    assert a - b == pytest.approx(crit, abs=1e-6) and a + 2 * b == pytest.approx(0, abs=1e-6)
    assert ds.attrs["members_solved"] == (5 + 4) * 64
    assert ds.attrs["grid_members"] == 61 * 64


def test_width_and_finite_size_scaling_recover_a_known_power_law():
    """Logistic transitions of width w(T) = 2 / T at four horizons (deterministic order
    parameter plus small noise): the logistic fit recovers the widths and the power
    law's exponent -1 within its standard error."""
    rng = np.random.default_rng(5)
    T = np.array([50.0, 100.0, 200.0, 400.0])
    w = 2.0 / T
    center = np.array([0.31, 0.27, 0.33, 0.29])

    def evaluate(cell, x, ids):
        f = 1 / (1 + np.exp(-(x - center[cell]) / w[cell]))
        v = f[:, None] + rng.normal(0, 0.01, (len(x), 8))
        return v, np.zeros(v.shape, int)

    out = bracket_search(evaluate, np.zeros(4), 1.0, order=OrderParameter("m", 0.5),
                         tol=0.0005, initial=9)
    ds = xr.Dataset({k: (("time", "probe")[: np.ndim(v)], v) for k, v in out.items() if np.ndim(v)},
                    coords={"time": T}, attrs={"inner_lo": 0.0, "inner_hi": 1.0})
    widths = transition_width(ds)
    np.testing.assert_allclose(widths["width"], w, rtol=0.1)
    np.testing.assert_allclose(widths["center"], center, atol=0.002)
    fss = finite_size_scaling(widths, "time")
    nu, se = float(fss["exponent"]), float(fss["exponent_se"])
    assert abs(nu + 1) <= max(3 * se, 0.05), (nu, se)
    assert 0 < se < 0.1 and int(fss["points"]) == 4
    # the interval between two thresholds: for a logistic, 2 w ln 3 between 1/4 and 3/4;
    # the piecewise-linear curve through the probes (crowded at the centre, sparse at
    # 1/4 and 3/4) resolves it to about 20%
    between = transition_width(ds, method="thresholds", thresholds=[0.25, 0.75])
    np.testing.assert_allclose(between["width"], 2 * np.log(3) * w, rtol=0.25)
    with pytest.raises(ValueError, match="two different finite thresholds"):
        transition_width(ds, method="thresholds", thresholds=[0.5])


def test_power_law_fit_is_least_squares_in_logs():
    rng = np.random.default_rng(2)
    size = np.array([10.0, 20, 40, 80, 160])
    width = 3.0 * size**-0.7 * np.exp(rng.normal(0, 0.05, 5))
    fit = power_law_fit(size, width)
    ref = stats.linregress(np.log(size), np.log(width))
    assert fit["exponent"] == pytest.approx(ref.slope) and fit["exponent_se"] == pytest.approx(ref.stderr)
    assert fit["prefactor"] == pytest.approx(np.exp(ref.intercept)) and fit["points"] == 5
    two = power_law_fit([10, 20], [1.0, 0.5])
    assert two["exponent"] == pytest.approx(-1) and np.isnan(two["exponent_se"])
    assert power_law_fit([10, 20, 40], [1.0, np.nan, -1.0])["points"] == 1


TINY = {
    "model": {"gradient": "identity", "num_classes": 3, "per_class": 10,
              "impact": {"alpha": 0.0, "beta": 0.0}, "noise": {"independent": 0.1}},
    "boundary": {
        "outer": [{"noise.independent": [0.05, 0.2]}],
        "inner": {"impact.alpha": [-0.2, 0.4], "impact.beta": [0.1, -0.2]},
        "order": {"metric": "ncm_error", "threshold": 0.3333},
        "tol": 0.05, "seeds": 4, "horizons": [25.0, 50.0],
    },
    "solve": {"t1": 50.0, "dt": 5.0},
}


@pytest.mark.slow
def test_cli_boundary_identity_over_horizons(tmp_path, capsys):
    """The LE-SDE through the command: a gap axis over two noise levels and two horizons,
    with the theory's alpha = beta, the width's scaling and the critical value's."""
    from lesde.cli import main

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    assert main(["boundary", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "critical impact.alpha - impact.beta" in printed and "members in" in printed
    ds = assert_cf(out / "boundary.nc")
    assert ds["critical"].dims == ("noise_independent", "time")
    assert (ds["cell_status"] == 0).all() and np.isfinite(ds["critical"]).all()
    assert (ds["critical_theory"] == 0).all() and "exponent" in ds and "critical_exponent" in ds
    assert (out / "boundary.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "success" and summary["cell_status_counts"] == {"located": 4}
    assert summary["members_solved"] == ds.attrs["members_solved"] < summary["grid_members"]
    # a bad config: refused before anything runs, nothing written
    path.write_text(yaml.safe_dump({**TINY, "extra": 1}))
    assert main(["boundary", str(path), "--out", str(tmp_path / "x")]) == 2
    assert "extra: unknown key" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["boundary"].update(tol=0.0), "boundary.tol: Input should be greater than 0"),
        (lambda c: c["boundary"].update(tol=1.0), "boundary.tol = 1 is not below the width"),
        (lambda c: c["boundary"]["order"].update(metric="nc9"), r"boundary.order.metric: unknown \['nc9'\]"),
        (lambda c: c["boundary"]["order"].update(reduce="fraction"), "boundary.order: reduce 'fraction' needs"),
        (lambda c: c["boundary"]["inner"].update({"impact.gamma": [0.0, 1.0]}),
         "boundary.inner: 'impact.gamma' is not a sweepable parameter"),
        (lambda c: c["boundary"]["inner"].update({"impact.alpha": [0.1]}), r"boundary.inner.impact.alpha"),
        (lambda c: c["boundary"]["inner"].update({"impact.alpha": [0.1, 0.1], "impact.beta": [0.0, 0.0]}),
         "is 0.1 at both ends of the segment"),
        (lambda c: c["boundary"]["outer"][0].update({"noise.independent": [0.1, -0.2]}),
         "noise.independent sigma must be >= 0, got -0.2"),
        (lambda c: c["boundary"].update(horizons=[50.0, 25.0]), "boundary.horizons must be increasing"),
        (lambda c: c["boundary"].update(horizons=[100.0]), r"boundary.horizons must be increasing and within \(0, t1"),
        (lambda c: c["boundary"].update(level=1.0), "boundary.level: Input should be less than 1"),
        (lambda c: c["boundary"].update(initial=1), "boundary.initial: Input should be greater than or equal to 2"),
    ],
)
def test_bad_boundary_configs(edit, match):
    cfg = json.loads(json.dumps(TINY))
    edit(cfg)
    with pytest.raises(ConfigError, match=match):
        parse_config(cfg, schema=BoundaryConfig)


def test_bad_arguments_are_named():
    rng = np.random.default_rng(0)
    ev = logistic_evaluate(np.array([0.5]), np.array([0.1]), 4, rng)
    order = OrderParameter("hit", 0.5)
    with pytest.raises(ValueError, match="tol must be a finite number > 0, got -1"):
        bracket_search(ev, [0.0], 1.0, order=order, tol=-1)
    with pytest.raises(ValueError, match="cell 0: the range must have lo < hi, got lo = 1, hi = 0"):
        bracket_search(ev, [1.0], 0.0, order=order, tol=0.1)
    with pytest.raises(ValueError, match="level must be a number in"):
        bracket_search(ev, [0.0], 1.0, order=order, tol=0.1, level=1.5)


SPRING = {
    "model": {"kind": "spring_map", "num_blocks": 4, "stiffness": 1.0, "load": 1.0, "eta": 0.05,
              "mu_fwd": 0.1, "mu_ratio": 1.5, "noise": 0.1},
    "boundary": {
        "outer": [{"mu_ratio": [1.5, 3.0], "mu_fwd": [0.1, 0.1]}],
        "inner": {"noise_per_friction": [0.1, 3.0]},
        "derived": {"noise": {"product": ["noise_per_friction", "mu_fwd"]}},
        "order": {"metric": "curvature", "threshold": 0.0}, "tol": 0.05, "seeds": 8,
    },
    "solve": {"t1": 400, "dt": 1},
}


def test_cli_boundary(tmp_path, capsys):
    """`lesde boundary` on a tiny spring-block config: exit status 0, the result file to
    the CF conventions, the figure, the summary; the load-curve curvature crosses 0
    (concave to convex) where the mean-field map of the spec (`mean_field_gains`) puts
    it, to a few tolerances; a bad config is refused before anything runs, exit status
    2 (exit status 1, cells not located: `test_cli_cells_not_located`)."""
    from lesde.cli import main

    path = tmp_path / "spring.yaml"
    path.write_text(yaml.safe_dump(SPRING, sort_keys=False))  # mu_ratio names the dimension
    assert main(["boundary", str(path), "--out", str(tmp_path / "s"), "--quiet"]) == 0
    ds = assert_cf(tmp_path / "s" / "boundary.nc")
    assert ds["critical"].dims == ("mu_ratio",) and ds["mu_ratio"].values.tolist() == [1.5, 3.0]
    assert (ds["cell_status"] == 0).all() and (tmp_path / "s" / "boundary.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["status"] == "success" and summary["cell_status_counts"] == {"located": 2}
    assert summary["members_solved"] == ds.attrs["members_solved"] < summary["grid_members"]
    theory = ds["critical_theory"].values
    assert np.isfinite(theory).all()
    assert np.abs(ds["critical"].values - theory).max() <= 3 * SPRING["boundary"]["tol"], (ds["critical"].values, theory)
    printed = capsys.readouterr().out
    assert "mu_ratio = 1.5, mu_fwd = 0.1" in printed and "theory" in printed
    path.write_text(yaml.safe_dump({**SPRING, "extra": 1}))
    assert main(["boundary", str(path), "--out", str(tmp_path / "x")]) == 2
    assert "extra: unknown key" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_mean_field_map_reaches_the_spec_fixed_points():
    """`mean_field_gains` relaxes to the mean-field stationary gains of the spec (linear
    in depth, `stationary_gains`), and with almost no shaking stops where the noiseless
    map does (`spring_equilibrium`, only the deep springs stretched)."""
    d = lesde.models.mean_field_gains(7, noise=[0.3, 0.5], mu_fwd=0.1, mu_back=0.15, eta=0.2,
                                      steps=3000)
    for i, s in enumerate((0.3, 0.5)):
        np.testing.assert_allclose(d[i], lesde.models.stationary_gains(7, noise=s, mu_fwd=0.1,
                                                                       mu_back=0.15)[:7], atol=1e-6)
    d0 = lesde.models.mean_field_gains(7, noise=1e-6, mu_fwd=0.1, steps=10000)
    np.testing.assert_allclose(d0, lesde.models.spring_equilibrium(7, mu=0.1)[:7], atol=1e-3)
    with pytest.raises(ValueError, match="noise must be finite and > 0"):
        lesde.models.mean_field_gains(7, noise=[0.1, 0.0], mu_fwd=0.1)


@pytest.mark.slow
def test_cli_cells_not_located(tmp_path, capsys):
    """A range below the spring-block map's crossing: every cell is reported not
    bracketed, in the summary and on stderr, exit status 1."""
    from lesde.cli import main

    low = json.loads(json.dumps(SPRING))
    low["boundary"]["inner"] = {"noise_per_friction": [0.1, 0.3]}
    path = tmp_path / "low.yaml"
    path.write_text(yaml.safe_dump(low, sort_keys=False))
    assert main(["boundary", str(path), "--out", str(tmp_path / "low"), "--quiet"]) == 1
    summary = json.loads((tmp_path / "low" / "summary.json").read_text())
    assert summary["status"] == "flagged" and summary["cell_status_counts"] == {"not_bracketed": 2}
    assert all(c["critical"] is None for c in summary["cells"])
    assert "cells not located: 2 not_bracketed" in capsys.readouterr().err
    assert_cf(tmp_path / "low" / "boundary.nc")
