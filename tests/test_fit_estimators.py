"""Closed-form impact estimators (lesde.fit) against exact results.

The inversions are checked on exact LE-ODE trajectories: `closed_form` of the identity
model, an exact construction of the projected model's class means from the closed form
of its coordinates y, and Tsit5 solves of both (double precision, fine dyadic grid with
every schedule knot on it). The rates, tail index and power-law fit are checked on
functions whose derivative or parameters are known exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import xarray as xr

import lesde
from lesde.fit._estimators import (
    identity_inversion,
    power_law_fit,
    PowerLawFit,
    projected_inversion,
    savgol_rates,
    tail_index,
)
from lesde.fit import class_mean_logits
from lesde.io import make_log

KS = [2, 3, 5, 10]
TS = np.linspace(0.25, 2.0, 15)  # starts after 0: the estimates are A(t) - A(t_0)
EXACT = dict(rtol=1e-10, atol=1e-10)
SOLVED = dict(rtol=1e-6, atol=1e-6)
IMPACTS = ["constant", "negative-beta", "beta-larger", "time-varying"]


def _impact(kind):
    if kind == "constant":
        return lesde.LocallyElastic(1.6, 0.4)
    if kind == "negative-beta":
        return lesde.LocallyElastic(1.0, -0.5)
    if kind == "beta-larger":
        return lesde.LocallyElastic(0.5, 1.5)
    if kind == "time-varying":
        # alpha a power law; beta piecewise linear, changing sign and exceeding alpha;
        # the knots lie on the solver grid below
        return lesde.LocallyElastic(
            lesde.PowerLaw(2.0, 0.7, t0=0.5),
            lesde.PiecewiseLinear([0.25, 0.75, 1.5], [0.5, -0.3, 2.5]),
        )
    raise ValueError(kind)


def _truth(model, ts):
    """A(t) - A(t_0), B(t) - B(t_0) at the sample times."""
    a = np.asarray(model.impact.alpha.integral(jnp.asarray(ts)))
    b = np.asarray(model.impact.beta.integral(jnp.asarray(ts)))
    return a - a[0], b - b[0]


def _xbar0(K, p, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(K, p)))


def _closed_form(model, x0, ts):
    """`closed_form` at each of the times `ts`."""
    return np.asarray(jax.vmap(lambda t: lesde.closed_form(model, x0, t))(jnp.asarray(ts)))


def _projected_xbar(model, x0, ts):
    """Exact class means of the projected model: Xbar_k moves only along d_k, and
    <d_k, d_k>/|d_k|^2 = 1, so Xbar_k(t) = Xbar_k(0) + (y_k(t) - y_k(0)) d_k."""
    K = model.num_classes
    y = _closed_form(model, x0, ts)  # (T, K)
    y0 = np.asarray(lesde.projected_coordinates(x0))
    d = np.eye(K) - 1.0 / K
    return np.asarray(x0)[None] + (y - y0)[:, :, None] * d[None]


def _solve(model, x0, ts):
    tr = lesde.simulate(model, t1=2.0, dt=2.0**-6, y0=x0, ts=jnp.asarray(ts), solver="tsit5")
    assert int(tr.status) == 0
    return np.asarray(tr.ys)


def _check(est, model, ts, tol, estimator):
    a, b = _truth(model, ts)
    assert isinstance(est, xr.Dataset)
    assert est.attrs == {"estimator": estimator}
    assert est["A_hat"].dims == ("step",) and est["A_hat"].dtype == np.float64
    assert est["B_hat"].dtype == np.float64
    np.testing.assert_array_equal(est["step"].values, ts)
    np.testing.assert_allclose(est["A_hat"].values, a, **tol)
    np.testing.assert_allclose(est["B_hat"].values, b, **tol)
    # not trivially: the impacts do move
    assert np.abs(a[-1]) > 0.1 and np.abs(b[-1]) > 0.1


# ---------------------------------------------------------------------------------
# identity_inversion


@pytest.mark.parametrize("impact", IMPACTS)
@pytest.mark.parametrize("K", KS)
def test_identity_inversion_exact(x64, K, impact):
    model = lesde.LEODE(_impact(impact), "identity", K)
    x0 = _xbar0(K, K, K)
    _check(identity_inversion(_closed_form(model, x0, TS), TS), model, TS, EXACT, "identity")


def test_identity_inversion_any_dim(x64):
    """The identity model acts on any p, not only p = K logits."""
    K, p = 3, 7
    model = lesde.LEODE(_impact("time-varying"), "identity", K)
    x0 = _xbar0(K, p, 1)
    xs = _closed_form(model, x0, TS)
    assert xs.shape == (TS.size, K, p)
    _check(identity_inversion(xs, TS), model, TS, EXACT, "identity")


def test_identity_inversion_float32(x64):
    """Float32 input (a JAX array) is inverted in float64; the error is float32 rounding."""
    K = 3
    model = lesde.LEODE(_impact("time-varying"), "identity", K)
    xs = jnp.asarray(_closed_form(model, _xbar0(K, K, 3), TS), dtype=jnp.float32)
    assert xs.dtype == jnp.float32
    est = identity_inversion(xs, jnp.asarray(TS, dtype=jnp.float32))
    _check(est, model, TS.astype(np.float32).astype(np.float64),
           dict(rtol=0, atol=1e-5), "identity")


def test_identity_inversion_tsit5(x64):
    K = 3
    model = lesde.LEODE(_impact("time-varying"), "identity", K)
    x0 = _xbar0(K, K, 4)
    _check(identity_inversion(_solve(model, x0, TS), TS), model, TS, SOLVED, "identity")


def test_identity_inversion_formula(x64):
    """The authors' product form, evaluated directly, equals the log-sum evaluation."""
    K = 3
    model = lesde.LEODE(_impact("constant"), "identity", K)
    xs = _closed_form(model, _xbar0(K, K, 5), TS)
    mu = xs.mean(axis=1)
    dev = xs - mu[:, None]
    c0, c = mu[0], dev[0]
    b = np.mean(-np.log(np.abs(c0 / c * dev / mu[:, None])), axis=(1, 2))
    a = np.mean(np.log(np.abs(mu[:, None] * dev ** (K - 1) / (c0 * c ** (K - 1)))), axis=(1, 2))
    est = identity_inversion(xs, TS)
    np.testing.assert_allclose(est["A_hat"].values, a, **EXACT)
    np.testing.assert_allclose(est["B_hat"].values, b, **EXACT)


# ---------------------------------------------------------------------------------
# projected_inversion


@pytest.mark.parametrize("impact", IMPACTS)
@pytest.mark.parametrize("K", [2, 3, 5])
def test_projected_inversion_exact(x64, K, impact):
    model = lesde.LEODE(_impact(impact), "projected", K)
    x0 = _xbar0(K, K, 50 + K)
    xs = _projected_xbar(model, x0, TS)
    # the construction has the closed-form coordinates
    np.testing.assert_allclose(
        np.asarray(lesde.projected_coordinates(jnp.asarray(xs))),
        _closed_form(model, x0, TS), **EXACT,
    )
    _check(projected_inversion(xs, TS), model, TS, EXACT, "projected")


@pytest.mark.parametrize("K", [2, 3, 5])
def test_projected_inversion_tsit5(x64, K):
    model = lesde.LEODE(_impact("time-varying"), "projected", K)
    x0 = _xbar0(K, K, 60 + K)
    _check(projected_inversion(_solve(model, x0, TS), TS), model, TS, SOLVED, "projected")


def test_projected_inversion_is_not_identity(x64):
    """The two inversions differ: each is exact only on its own model."""
    K = 3
    model = lesde.LEODE(_impact("constant"), "projected", K)
    xs = _projected_xbar(model, _xbar0(K, K, 7), TS)
    a, _ = _truth(model, TS)
    wrong = identity_inversion(xs, TS)["A_hat"].values
    assert np.max(np.abs(wrong - a)) > 1e-2


# ---------------------------------------------------------------------------------
# DataArray input


def _as_class_means(xs, ts):
    """A DataArray laid out like `class_mean_logits` output."""
    T, K, p = xs.shape
    return xr.DataArray(
        xs,
        dims=("step", "class", "logit"),
        coords={
            "step": ts,
            "class": np.arange(K),
            "logit": np.arange(p),
            "count": (("step", "class"), np.ones((T, K), np.int64)),
        },
        name="class_mean_logits",
        attrs={"window": 1},
    )


@pytest.mark.parametrize("inversion", [identity_inversion, projected_inversion])
def test_dataarray_input(x64, inversion):
    K = 3
    grad = "identity" if inversion is identity_inversion else "projected"
    model = lesde.LEODE(_impact("time-varying"), grad, K)
    x0 = _xbar0(K, K, 8)
    xs = _closed_form(model, x0, TS) if grad == "identity" else _projected_xbar(model, x0, TS)
    da = _as_class_means(xs, TS)
    est = inversion(da)
    _check(est, model, TS, EXACT, grad)
    # dims are matched by name, not position
    est2 = inversion(da.transpose("logit", "step", "class"))
    xr.testing.assert_identical(est, est2)
    # an explicit ts overrides the coordinate
    np.testing.assert_array_equal(inversion(da, 2 * TS)["step"].values, 2 * TS)


def test_class_mean_logits_round_trip(x64):
    """A log whose trial k always has label k and logits Xbar_k(t): `class_mean_logits`
    gives back Xbar (in the log's float32), and the inversion A, B at the integer steps."""
    K, S = 3, 12
    scale = 0.1  # step s is time t = 0.1 s
    steps = np.arange(S)
    model = lesde.LEODE(_impact("constant"), "identity", K)
    xs = _closed_form(model, _xbar0(K, K, 9), scale * steps)  # (S, K, K)
    log = make_log(
        np.zeros((K, S), int),
        np.repeat(np.arange(K)[:, None], S, axis=1),
        xs.transpose(1, 0, 2),
        np.ones((K, S)),
        steps=steps,
    )
    da = class_mean_logits(log)
    np.testing.assert_allclose(da.values, xs, rtol=1e-6)
    est = identity_inversion(da)
    np.testing.assert_array_equal(est["step"].values, steps)
    a, b = _truth(model, scale * steps)
    np.testing.assert_allclose(est["A_hat"].values, a, rtol=0, atol=1e-4)
    np.testing.assert_allclose(est["B_hat"].values, b, rtol=0, atol=1e-4)
    # rates per step, times the step length, are the impacts per unit time
    rates = savgol_rates(est, 5)
    np.testing.assert_allclose(rates["alpha_hat"].values / scale, 1.6, atol=1e-3)
    np.testing.assert_allclose(rates["beta_hat"].values / scale, 0.4, atol=1e-3)

    # a step at which class 1 has no row is NaN in class_mean_logits: the error says so
    labels = np.repeat(np.arange(K)[:, None], S, axis=1)
    labels[1, 5] = 0
    log = make_log(np.zeros((K, S), int), labels, xs.transpose(1, 0, 2), np.ones((K, S)),
                   steps=steps)
    with pytest.raises(ValueError, match=r"xbar must be finite.*step index 5 \(t = 5\.0\), "
                                         r"class 1.*class_mean_logits"):
        identity_inversion(class_mean_logits(log))


# ---------------------------------------------------------------------------------
# savgol_rates


def _estimate(ts, a, b):
    return xr.Dataset({"A_hat": ("step", a), "B_hat": ("step", b)}, coords={"step": ts},
                      attrs={"estimator": "identity"})


@pytest.mark.parametrize(("window", "polyorder"), [(5, 2), (7, 2), (9, 3)])
def test_savgol_rates_polynomial_exact(window, polyorder):
    ts = 0.5 + 0.1 * np.arange(30)
    if polyorder == 2:
        a, da = 1.0 - 2.0 * ts + 3.0 * ts**2, -2.0 + 6.0 * ts
    else:
        a, da = 0.5 * ts**3 - ts, 1.5 * ts**2 - 1.0
    b, db = 0.7 - 0.25 * ts**2, -0.5 * ts
    est = _estimate(ts, a, b)
    out = savgol_rates(est, window, polyorder)
    np.testing.assert_allclose(out["alpha_hat"].values, da, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["beta_hat"].values, db, rtol=0, atol=1e-9)
    assert out["alpha_hat"].attrs == {"window": window, "polyorder": polyorder}
    assert out["beta_hat"].dtype == np.float64
    # a copy: the input is unchanged; the rest is kept
    assert set(est.data_vars) == {"A_hat", "B_hat"}
    assert out.attrs == est.attrs
    xr.testing.assert_identical(out[["A_hat", "B_hat"]], est)


def test_savgol_rates_power_law(x64):
    """Through the whole pipeline: identity inversion, then rates close to the true
    alpha(t), beta(t) away from the ends."""
    K = 3
    alpha = lesde.PowerLaw(2.0, 0.7, t0=0.5)
    model = lesde.LEODE(lesde.LocallyElastic(alpha, -0.3), "identity", K)
    ts = np.linspace(0.0, 4.0, 201)
    est = identity_inversion(_closed_form(model, _xbar0(K, K, 11), ts), ts)
    want = np.asarray(alpha(jnp.asarray(ts)))
    inner = slice(10, -10)
    # local quadratics (the default) err by O((window dt)^2) times the third derivative
    # of A, largest near t = 0 where alpha bends most
    out = savgol_rates(est, 9)
    np.testing.assert_allclose(out["alpha_hat"].values[inner], want[inner], rtol=3e-3)
    np.testing.assert_allclose(out["beta_hat"].values, -0.3, rtol=1e-8)
    # local cubics: much closer
    out = savgol_rates(est, 9, polyorder=3)
    np.testing.assert_allclose(out["alpha_hat"].values[inner], want[inner], rtol=2e-5)
    np.testing.assert_allclose(out["alpha_hat"].values, want, rtol=2e-3)


# ---------------------------------------------------------------------------------
# tail_index


def test_tail_index_exact():
    r = 0.6
    ts = np.linspace(2.0, 100.0, 15)
    a = ts ** (1 - r)
    assert tail_index(a, ts) == pytest.approx(r, abs=1e-12)
    # the window is the last ceil(0.2 * 15) = 3 points (not 4: float noise in 0.2 * 15)
    a_bad = a.copy()
    a_bad[:-3] = 1e6
    assert tail_index(a_bad, ts) == pytest.approx(r, abs=1e-12)
    a_bad[-4] = 1e6
    assert tail_index(a_bad, ts, last=4 / 15) != pytest.approx(r, abs=1e-3)
    # sign of A does not matter (log|A|); a DataArray brings its times
    da = xr.DataArray(-a, dims="step", coords={"step": ts})
    assert tail_index(da, last=1.0) == pytest.approx(r, abs=1e-12)


def test_tail_index_level_bias():
    """alpha = c t^(-r): A = c t^(1-r)/(1-r), and r_hat = r - mean ln(c/(1-r))/ln t."""
    r, c = 0.4, 3.0
    ts = np.linspace(5.0, 1000.0, 50)
    a = c * ts ** (1 - r) / (1 - r)
    window = ts[-10:]
    want = r - np.mean(np.log(c / (1 - r)) / np.log(window))
    got = tail_index(a, ts, last=0.2)
    assert got == pytest.approx(want, abs=1e-12)
    assert abs(got - r) > 0.1  # a large bias at these times
    # unbiased when c/(1-r) = 1
    assert tail_index((1 - r) * a / c, ts) == pytest.approx(r, abs=1e-12)


# ---------------------------------------------------------------------------------
# power_law_fit


def test_power_law_fit_exact():
    c, r, t0 = 2.0, 0.7, 1.5
    ts = np.linspace(0.0, 50.0, 60)
    fit = power_law_fit(ts, c * (1 + ts / t0) ** (-r), t0=t0)
    assert isinstance(fit, PowerLawFit)
    assert fit.c == pytest.approx(c, rel=1e-6)
    assert fit.r == pytest.approx(r, rel=1e-6)
    assert fit.t0 == t0
    assert fit.rms < 1e-8
    sched = fit.schedule()
    assert isinstance(sched, lesde.PowerLaw)
    np.testing.assert_allclose(float(sched(10.0)), c * (1 + 10.0 / t0) ** (-r), rtol=1e-6)


def test_power_law_fit_negative_values():
    """The fit runs in linear space: a negative rate (no positive values for the
    log-log initial guess) is fitted too."""
    c, r = -1.5, 0.5
    ts = np.linspace(0.0, 20.0, 40)
    fit = power_law_fit(ts, xr.DataArray(c * (1 + ts) ** (-r), dims="step"))
    assert fit.c == pytest.approx(c, rel=1e-6)
    assert fit.r == pytest.approx(r, rel=1e-6)


def test_power_law_fit_noisy():
    c, r, t0 = 2.0, 0.7, 1.0
    ts = np.linspace(0.0, 100.0, 200)
    noise = np.random.default_rng(0).normal(scale=0.02, size=ts.size)
    rate = c * (1 + ts / t0) ** (-r) + noise
    fit = power_law_fit(ts, rate, t0=t0)
    assert 0 < fit.c_stderr < 0.1 and 0 < fit.r_stderr < 0.1
    assert abs(fit.c - c) < 4 * fit.c_stderr
    assert abs(fit.r - r) < 4 * fit.r_stderr
    assert fit.rms == pytest.approx(0.02, rel=0.2)


# ---------------------------------------------------------------------------------
# Errors


def _good(K=3, T=5):
    ts = np.arange(T, dtype=float)
    xs = np.random.default_rng(0).normal(size=(T, K, K))
    return xs, ts


@pytest.mark.parametrize("inversion", [identity_inversion, projected_inversion])
def test_inversion_errors(inversion):
    xs, ts = _good()
    with pytest.raises(ValueError, match=r"xbar must have shape \(T, K, p\).*\(5, 3\)"):
        inversion(xs[:, 0], ts)
    with pytest.raises(ValueError, match=r"xbar must have at least 2 times T.*T = 1"):
        inversion(xs[:1], ts[:1])
    with pytest.raises(ValueError, match=r"xbar must have at least 2 classes K.*K = 1"):
        inversion(xs[:, :1], ts)
    with pytest.raises(ValueError, match=r"xbar must be real numbers.*complex"):
        inversion(xs + 0j, ts)
    with pytest.raises(ValueError, match="xbar must be real numbers"):
        inversion(np.full(xs.shape, "a"), ts)
    with pytest.raises(ValueError, match="ts is required"):
        inversion(xs)
    with pytest.raises(ValueError, match=r"ts must have shape \(5,\).*got shape \(4,\)"):
        inversion(xs, ts[:4])
    with pytest.raises(ValueError, match=r"ts must be strictly increasing.*ts\[2\] = 2\.0 "
                                         r"followed by ts\[3\] = 2\.0"):
        inversion(xs, np.array([0.0, 1.0, 2.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="ts must be finite"):
        inversion(xs, np.array([0.0, 1.0, np.nan, 3.0, 4.0]))
    bad = xs.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"xbar must be finite.*xbar\[3, 2, 1\] = nan at step "
                                         r"index 3 \(t = 3\.0\), class 2.*class_mean_logits"):
        inversion(bad, ts)
    bad[3, 2, 1] = np.inf
    with pytest.raises(ValueError, match=r"xbar must be finite.*inf"):
        inversion(bad, ts)
    da = _as_class_means(xs, ts)
    with pytest.raises(ValueError, match=r"xbar as a DataArray must have dims.*'time'"):
        inversion(da.rename(step="time"))
    with pytest.raises(ValueError, match="ts is required: the DataArray xbar has no `step`"):
        inversion(da.drop_vars(["step", "count"]))


def test_identity_inversion_zero_errors():
    xs, ts = _good()
    bad = xs.copy()
    bad[0, :, 2] = [-1.0, 3.0, -2.0]  # mu_2(t_0) = 0
    with pytest.raises(ValueError, match=r"zero initial class-average mu_j.* at step index 0, "
                                         r"j = 2: the inversion divides"):
        identity_inversion(bad, ts)
    bad = xs.copy()
    bad[0, :, 0] = [1.0, 2.0, 3.0]  # Xbar_10(t_0) = mu_0(t_0)
    with pytest.raises(ValueError, match=r"zero initial deviation Xbar_kj - mu_j at step index "
                                         r"0, k = 1, j = 0"):
        identity_inversion(bad, ts)
    bad = xs.copy()
    bad[2, :, 0] = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"zero deviation Xbar_kj - mu_j at step index 2, "
                                         r"k = 1, j = 0.*log"):
        identity_inversion(bad, ts)


def test_projected_inversion_errors():
    xs, ts = _good()
    with pytest.raises(ValueError, match=r"needs p = K.*\(5, 3, 4\)"):
        projected_inversion(np.concatenate([xs, xs[..., :1]], axis=-1), ts)
    bad = xs.copy()
    bad[0] = np.eye(3)[[1, 2, 0]]  # y_k(t_0) = -1/2 for all k: ybar != 0, deviations 0
    with pytest.raises(ValueError, match=r"zero initial projected deviation y_k - ybar at "
                                         r"step index 0, k = 0"):
        projected_inversion(bad, ts)
    bad[0] = 0.0
    with pytest.raises(ValueError, match=r"zero initial mean projected coordinate ybar = mean_k "
                                         r"y_k at step index 0: the inversion"):
        projected_inversion(bad, ts)


def test_savgol_rates_errors():
    ts = np.arange(10, dtype=float)
    est = _estimate(ts, ts**2, ts)
    with pytest.raises(ValueError, match="estimate must be an xr.Dataset"):
        savgol_rates(est["A_hat"], 5)
    with pytest.raises(ValueError, match="estimate must have a variable 'B_hat'"):
        savgol_rates(est.drop_vars("B_hat"), 5)
    with pytest.raises(ValueError, match="window must be a positive integer, got 0"):
        savgol_rates(est, 0)
    with pytest.raises(ValueError, match="window must be a positive integer, got 5.0"):
        savgol_rates(est, 5.0)
    with pytest.raises(ValueError, match="window must be odd, got window = 6"):
        savgol_rates(est, 6)
    with pytest.raises(ValueError, match="window must be > polyorder = 3, got window = 3"):
        savgol_rates(est, 3, 3)
    with pytest.raises(ValueError, match="window must be <= the number of steps T = 10, got "
                                         "window = 11"):
        savgol_rates(est, 11)
    with pytest.raises(ValueError, match="polyorder must be an integer >= 1, got 0"):
        savgol_rates(est, 5, 0)
    uneven = ts.copy()
    uneven[6:] += 0.01
    with pytest.raises(ValueError, match=r"estimate.step must be uniformly spaced.*step\[5\]"):
        savgol_rates(_estimate(uneven, ts**2, ts), 5)
    with pytest.raises(ValueError, match="estimate.step must be strictly increasing"):
        savgol_rates(_estimate(ts[::-1], ts**2, ts), 5)
    bad = (ts**2).copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match=r"estimate\['A_hat'\] must be finite"):
        savgol_rates(_estimate(ts, bad, ts), 5)
    # uniform to 1e-6 relative is accepted
    jitter = ts + 1e-8 * np.sin(ts)
    savgol_rates(_estimate(jitter, ts**2, ts), 5)


def test_tail_index_errors():
    ts = np.linspace(0.5, 10.0, 10)
    a = ts**0.5
    with pytest.raises(ValueError, match=r"ts must be > 1 in the window.*ts\[0\] = 0\.5"):
        tail_index(a, ts, last=1.0)
    bad = a.copy()
    bad[-1] = 0.0
    with pytest.raises(ValueError, match=r"A_hat must be nonzero in the window.*A_hat\[9\]"):
        tail_index(bad, ts)
    for last in (0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="last must be in \\(0, 1\\]"):
            tail_index(a, ts, last=last)
    with pytest.raises(ValueError, match="last must be a number"):
        tail_index(a, ts, last="all")
    with pytest.raises(ValueError, match="ts is required"):
        tail_index(a)
    with pytest.raises(ValueError, match=r"ts must have shape \(10,\)"):
        tail_index(a, ts[:-1])
    with pytest.raises(ValueError, match=r"A_hat must be 1-D, got shape \(10, 1\)"):
        tail_index(a[:, None], ts)
    bad = a.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="A_hat must be finite"):
        tail_index(bad, ts)


def test_power_law_fit_errors(monkeypatch):
    ts = np.linspace(0.0, 10.0, 8)
    rate = (1 + ts) ** -0.5
    with pytest.raises(ValueError, match="rate must have at least 3 points"):
        power_law_fit(ts[:2], rate[:2])
    with pytest.raises(ValueError, match=r"ts and rate must have the same length.*\(7,\)"):
        power_law_fit(ts[:7], rate)
    bad = rate.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"rate must be finite, got nan at index \(3,\)"):
        power_law_fit(ts, bad)
    with pytest.raises(ValueError, match="ts must be finite"):
        power_law_fit(np.where(ts == ts[2], np.inf, ts), rate)
    for t0 in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="t0 must be a finite number > 0"):
            power_law_fit(ts, rate, t0=t0)
    with pytest.raises(ValueError, match="t0 must be a number"):
        power_law_fit(ts, rate, t0=None)
    with pytest.raises(ValueError, match=r"ts must satisfy 1 \+ t/t0 > 0.*ts\[0\] = -3\.0"):
        power_law_fit(ts - 3.0, rate, t0=2.0)
    with pytest.raises(ValueError, match="ts must be strictly increasing"):
        power_law_fit(ts[::-1], rate)
    with pytest.raises(ValueError, match=r"rate must be 1-D"):
        power_law_fit(ts, rate[:, None])

    def fail(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev exceeded")

    monkeypatch.setattr(scipy.optimize, "curve_fit", fail)
    with pytest.raises(ValueError, match="power_law_fit failed.*maxfev exceeded"):
        power_law_fit(ts, rate)
