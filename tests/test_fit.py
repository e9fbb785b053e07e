"""Gradient-based fitting through the solver (`lesde.fit`): planted-parameter recovery
for each loss at K = 3 and K = 10, finite-difference gradients of each loss, the change
of time unit, the closed-form transition density, and clear errors."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.stats
from jax.flatten_util import ravel_pytree

import lesde
from lesde import fit as F
from lesde.io._results import dump_json


def _solve_class_means(model, ts, y0):
    ts = np.asarray(ts, float)
    return lesde.simulate(model, t0=float(ts[0]), t1=float(ts[-1]), dt=float(ts[1] - ts[0]) / 4,
                          y0=y0, ts=ts).ys


def _ensemble(model, y0, ts, keys, dt=1.0):
    """Saved states (R, T, N, p) of LE-SDE paths from y0, one per key."""
    ts = np.asarray(ts, float)

    def one(k):
        return lesde.simulate(model, t0=float(ts[0]), t1=float(ts[-1]), dt=dt, key=k, y0=y0,
                              ts=ts, solver="euler").ys

    return np.asarray(jax.jit(jax.vmap(one))(keys))


def _moments(x, labels, K):
    """Per-class mean (T, K, p) and covariance (T, K, p, p) pooled over paths and samples."""
    R, T, N, p = x.shape
    mean = np.zeros((T, K, p))
    cov = np.zeros((T, K, p, p))
    for k in range(K):
        xk = x[:, :, labels == k].transpose(1, 0, 2, 3).reshape(T, -1, p)
        mean[:, k] = xk.mean(1)
        d = xk - mean[:, k, None]
        cov[:, k] = np.einsum("tni,tnj->tij", d, d) / (xk.shape[1] - 1)
    return mean, cov


def _class_offsets(K, per_class, key, spread=0.05):
    """An initial state with distinct class means (so alpha and beta both show)."""
    labels = np.repeat(np.arange(K), per_class)
    k1, k2 = jr.split(key)
    centres = jr.normal(k1, (K, K))
    return labels, centres[labels] + spread * jr.normal(k2, (K * per_class, K))


# ------------------------------------------------------------------------------
# Planted-parameter recovery


@pytest.mark.slow  # the K = 10 test below and the time-varying transition test check the same
def test_class_mean_recovers_time_varying_general_impact_k3():
    K = 3
    knots = jnp.array([0.0, 1000.0, 2000.0])
    values = jnp.array(
        [[[1.0, 0.2, 0.1], [0.3, 0.8, 0.2], [0.1, 0.1, 1.2]],
         [[0.6, 0.1, 0.3], [0.2, 1.1, 0.0], [0.4, 0.2, 0.7]],
         [[0.3, 0.0, 0.1], [0.1, 0.5, 0.2], [0.2, 0.3, 0.9]]]
    ) * 1e-3
    truth = lesde.LEODE(lesde.General(lesde.PiecewiseLinear(knots, values)), "identity", K)
    ts = np.linspace(0.0, 2000.0, 41)
    x0 = jr.normal(jr.key(1), (K, K))
    data = F.ClassMeans(ts, _solve_class_means(truth, ts, x0))
    loss = F.ClassMeanLoss(data, num_steps=200)
    start = lesde.LEODE(
        lesde.General(lesde.PiecewiseLinear(knots, jnp.broadcast_to(5e-4 * jnp.eye(K), (3, K, K)))),
        "identity", K,
    )
    res = F.fit(F.Parameters(start), loss, steps=300, method="lbfgs", progress=False)
    got = np.asarray(res.params.model.impact.schedule.values)
    assert np.abs(got - np.asarray(values)).max() < 0.005 * np.abs(values).max()
    rep = F.fit_report(res, loss)
    assert rep["goodness"]["fit"]["r2"] > 0.9999
    assert len(rep["parameters"]) == 27


def test_class_mean_recovers_general_impact_k10_and_predicts_heldout():
    K = 10
    E = (0.5 * jnp.eye(K) + 0.1 * jr.uniform(jr.key(3), (K, K))) * 1e-2
    truth = lesde.LEODE(lesde.General(E), "identity", K)
    ts = np.linspace(0.0, 400.0, 41)
    x0 = jr.normal(jr.key(4), (K, K))
    data = F.ClassMeans(ts, _solve_class_means(truth, ts, x0))
    loss = F.ClassMeanLoss(data, fit_until=300.0, num_steps=50)
    start = lesde.LEODE(lesde.General(0.3e-2 * jnp.eye(K)), "identity", K)
    res = F.fit(F.Parameters(start), loss, steps=150, method="lbfgs", progress=False)
    got = np.asarray(res.params.model.impact.schedule.value)
    assert np.abs(got - np.asarray(E)).max() < 0.005 * np.abs(E).max()
    good = loss.goodness(res.params)
    assert good["heldout"]["points"] == 10 * K * K
    assert good["heldout"]["r2"] > 0.999  # the later window, not fitted, is predicted


@pytest.mark.slow  # the K = 10 test below makes the same checks
def test_moment_matching_recovers_alpha_beta_and_sigma_k3():
    K, per = 3, 20
    labels, y0 = _class_offsets(K, per, jr.key(5))
    classes = lesde.Classes(labels, K)
    alpha, beta, sigma = 0.06, 0.015, 0.03

    def model(a, b, s):
        return lesde.LESDE(lesde.LocallyElastic(a, b), "identity", classes,
                           noise=lesde.Noise(independent=s))

    ts = np.linspace(0.0, 40.0, 21)
    x = _ensemble(model(alpha, beta, sigma), y0, ts, jr.split(jr.key(6), 64), dt=0.5)
    mean, cov = _moments(x, labels, K)
    loss = F.MomentLoss(F.ClassMoments(ts, mean, cov), num_steps=40, ensemble=8, seed=11)
    start = F.Parameters(model(0.03, 0.0, 0.06), y0=y0)
    res = F.fit(start, loss, steps=30, method="lbfgs", progress=False)
    m = res.params.model
    assert float(m.impact.alpha(0.0)) == pytest.approx(alpha, rel=0.05)
    assert float(m.impact.beta(0.0)) == pytest.approx(beta, abs=0.1 * alpha)
    assert abs(float(m.noise.level("independent")(0.0))) == pytest.approx(sigma, rel=0.1)


@pytest.mark.slow  # long; the moment loss's gradient is checked against finite differences by default
def test_moment_matching_recovers_alpha_beta_and_sigma_k10():
    K, per = 10, 6
    labels, y0 = _class_offsets(K, per, jr.key(7))
    classes = lesde.Classes(labels, K)
    alpha, beta, sigma = 0.15, 0.02, 0.03

    def model(a, b, s):
        return lesde.LESDE(lesde.LocallyElastic(a, b), "identity", classes,
                           noise=lesde.Noise(independent=s))

    ts = np.linspace(0.0, 40.0, 11)
    x = _ensemble(model(alpha, beta, sigma), y0, ts, jr.split(jr.key(8), 32), dt=0.5)
    mean, cov = _moments(x, labels, K)
    loss = F.MomentLoss(F.ClassMoments(ts, mean, cov), num_steps=40, ensemble=8, seed=12)
    res = F.fit(F.Parameters(model(0.08, 0.0, 0.06), y0=y0), loss, steps=30, method="lbfgs",
                progress=False)
    m = res.params.model
    assert float(m.impact.alpha(0.0)) == pytest.approx(alpha, rel=0.05)
    assert float(m.impact.beta(0.0)) == pytest.approx(beta, abs=0.05 * alpha)
    assert abs(float(m.noise.level("independent")(0.0))) == pytest.approx(sigma, rel=0.1)


def _transition_case(K, per, impact, sigma, steps, replicas, seed):
    labels, y0 = _class_offsets(K, per, jr.key(seed))
    classes = lesde.Classes(labels, K)
    truth = lesde.LESDE(impact, "identity", classes, noise=lesde.Noise(independent=sigma))
    ts = np.arange(steps + 1, dtype=float)
    x = _ensemble(truth, y0, ts, jr.split(jr.key(seed + 1), replicas), dt=1.0)
    return classes, F.Snapshots(ts, x, labels, num_classes=K)


def test_transition_likelihood_recovers_time_varying_impact_within_its_stderr_k3():
    K = 3
    knots = jnp.array([0.0, 100.0])
    values = jnp.array([[[0.09, 0.02, 0.0], [0.01, 0.06, 0.03], [0.02, 0.0, 0.12]],
                        [[0.03, 0.0, 0.02], [0.02, 0.09, 0.0], [0.0, 0.03, 0.06]]])
    impact = lesde.General(lesde.PiecewiseLinear(knots, values))
    sigma = lesde.PowerLaw(0.05, 0.5, 50.0)
    classes, snaps = _transition_case(K, 10, impact, sigma, 100, 8, 20)
    loss = F.TransitionLoss(snaps)
    start = lesde.LESDE(
        lesde.General(lesde.PiecewiseLinear(knots, jnp.broadcast_to(0.05 * jnp.eye(K), (2, K, K)))),
        "identity", classes, noise=lesde.Noise(independent=lesde.PowerLaw(0.1, 0.2, 50.0)),
    )
    res = F.fit(F.Parameters(start), loss, steps=1500, learning_rate=0.05, progress=False)
    rep = F.fit_report(res, loss)
    truth = np.concatenate([np.asarray(values).ravel(), [0.05, 0.5]])
    est = np.array([v["value"] for v in rep["parameters"].values()])
    se = np.array([v["stderr"] for v in rep["parameters"].values()])
    est[-2] = abs(est[-2])  # sigma enters the density through sigma^2
    z = (est - truth) / se
    assert np.all(np.abs(z) < 4.5), z
    assert np.all(se < 0.2 * np.abs(truth).max())


def test_transition_likelihood_recovers_alpha_beta_within_its_stderr_k10():
    K = 10
    classes, snaps = _transition_case(K, 4, lesde.LocallyElastic(0.2, 0.03), 0.05, 60, 4, 30)
    loss = F.TransitionLoss(snaps, fit_until=40.0)
    start = lesde.LESDE(lesde.LocallyElastic(0.1, 0.0), "identity", classes,
                        noise=lesde.Noise(independent=0.1))
    res = F.fit(F.Parameters(start), loss, steps=1000, learning_rate=0.05, progress=False)
    rep = F.fit_report(res, loss)
    est = np.array([abs(v["value"]) for v in rep["parameters"].values()])
    se = np.array([v["stderr"] for v in rep["parameters"].values()])
    z = (est - np.array([0.2, 0.03, 0.05])) / se
    assert np.all(np.abs(z) < 4.5), z
    held = rep["goodness"]["heldout"]
    assert held["transitions"] == 20
    # the held-out transitions are as likely under the fit as the fitted ones
    assert held["nll_per_value"] == pytest.approx(rep["goodness"]["fit"]["nll_per_value"], abs=0.1)


# ------------------------------------------------------------------------------
# The transition density, exactly


def test_transition_density_equals_dense_gaussian(x64):
    K, per = 2, 3
    labels, y0 = _class_offsets(K, per, jr.key(40))
    classes = lesde.Classes(labels, K)
    model = lesde.LESDE(lesde.LocallyElastic(0.3, 0.1), "identity", classes,
                        noise=lesde.Noise(independent=0.2, shared=0.15))
    ts = np.array([0.0, 0.5, 1.25])
    x = np.asarray(jr.normal(jr.key(41), (1, 3, K * per, K)))
    loss = F.TransitionLoss(F.Snapshots(ts, x, labels))
    got = float(loss.total_nll(F.Parameters(model)))
    want = 0.0
    same = (labels[:, None] == labels[None, :]).astype(float)
    for m in range(2):
        gap = ts[m + 1] - ts[m]
        mean = x[0, m] + np.asarray(model.drift(ts[m], jnp.asarray(x[0, m]))) * gap
        cov = (0.2**2 * np.eye(K * per) + 0.15**2 * same) * gap
        for j in range(K):
            want -= scipy.stats.multivariate_normal(mean[:, j], cov).logpdf(x[0, m + 1, :, j])
    assert got == pytest.approx(want, rel=1e-10)


# ------------------------------------------------------------------------------
# Gradients of each loss against finite differences


def _fd_check(params, loss, free, rel=1e-5):
    diff, static = eqx.partition(params, free)
    theta, unravel = ravel_pytree(diff)

    def f(th):
        return loss.value(eqx.combine(unravel(th), static))

    g = np.asarray(jax.jit(jax.grad(f))(theta))
    v = np.asarray(jr.normal(jr.key(9), theta.shape))
    h = 1e-6 * max(1.0, float(jnp.abs(theta).max()))
    fd = (float(f(theta + h * v)) - float(f(theta - h * v))) / (2 * h)
    assert g @ v == pytest.approx(fd, rel=rel, abs=1e-10)


def test_class_mean_loss_gradient_matches_finite_differences(x64):
    K = 3
    impact = lesde.General(lesde.PowerLaw(jr.uniform(jr.key(10), (K, K)) * 0.02, 0.4, 10.0))
    truth = lesde.LEODE(impact, "projected", K)
    ts = np.linspace(0.0, 50.0, 11)
    data = F.ClassMeans(ts, _solve_class_means(truth, ts, jr.normal(jr.key(11), (K, K))))
    start = lesde.LEODE(lesde.General(lesde.PowerLaw(0.01 * jnp.ones((K, K)), 0.6, 10.0)), "projected", K)
    params = F.Parameters(start, y0=jnp.asarray(data.xbar[0]) + 0.1)
    loss = F.ClassMeanLoss(data, num_steps=50)
    _fd_check(params, loss, F.free_parameters(params, initial=True))


def test_class_mean_loss_gradient_through_lesde_ensemble(x64):
    K, per = 3, 4
    labels, y0 = _class_offsets(K, per, jr.key(12))
    classes = lesde.Classes(labels, K)
    model = lesde.LESDE(lesde.LocallyElastic(lesde.PiecewiseLinear([0.0, 10.0], [0.5, 0.2]), 0.1),
                        "ce", classes, noise=lesde.Noise(independent=0.1), init_mean=0.1)
    ts = np.linspace(0.0, 10.0, 6)
    data = F.ClassMeans(ts, np.asarray(jr.normal(jr.key(13), (6, K, K))))
    loss = F.ClassMeanLoss(data, num_steps=40, ensemble=3)
    params = F.Parameters(model)
    _fd_check(params, loss, F.free_parameters(params, initial=True))


def test_moment_loss_gradient_matches_finite_differences(x64):
    K, per = 3, 4
    labels, y0 = _class_offsets(K, per, jr.key(14))
    model = lesde.LESDE(lesde.LocallyElastic(0.2, 0.05), "identity", lesde.Classes(labels, K),
                        noise=lesde.Noise(independent=0.1, shared=0.05))
    ts = np.linspace(0.0, 5.0, 6)
    mean = np.asarray(jr.normal(jr.key(15), (6, K, K)))
    cov = np.broadcast_to(0.01 * np.eye(K), (6, K, K, K))
    loss = F.MomentLoss(F.ClassMoments(ts, mean, cov), num_steps=20, ensemble=3)
    params = F.Parameters(model, y0=y0)
    _fd_check(params, loss, F.free_parameters(params, initial=True))


def test_transition_loss_gradient_matches_finite_differences(x64):
    K, per = 3, 4
    labels, y0 = _class_offsets(K, per, jr.key(16))
    model = lesde.LESDE(lesde.General(jr.uniform(jr.key(17), (K, K)) * 0.1), "ce",
                        lesde.Classes(labels, K),
                        noise=lesde.Noise(independent=lesde.PowerLaw(0.1, 0.3), shared=0.05))
    ts = np.array([0.0, 1.0, 2.5, 3.0])
    x = np.asarray(jr.normal(jr.key(18), (2, 4, K * per, K)))
    loss = F.TransitionLoss(F.Snapshots(ts, x, labels))
    params = F.Parameters(model)
    _fd_check(params, loss, F.free_parameters(params))


# ------------------------------------------------------------------------------
# The change of time unit


@pytest.mark.parametrize("kind", ["power_law", "piecewise_linear"])
def test_rescaled_model_has_the_same_solution(x64, kind):
    if kind == "power_law":  # built here, under x64
        impact = lesde.LocallyElastic(lesde.PowerLaw(0.05, 0.7, 20.0), lesde.Constant(0.01))
    else:
        values = jnp.stack([jnp.eye(3) * c for c in (0.04, 0.01, 0.03)])
        impact = lesde.General(lesde.PiecewiseLinear([0.0, 30.0, 80.0], values))
    model = lesde.LEODE(impact, "identity", 3)
    x0 = jr.normal(jr.key(19), (3, 3))
    s = 40.0
    ts = np.linspace(0.0, 100.0, 6)
    a = lesde.simulate(model, t1=100.0, dt=0.5, y0=x0, ts=ts).ys
    scaled = F.rescale_time(F.Parameters(model), s).model
    b = lesde.simulate(scaled, t1=100.0 / s, dt=0.5 / s, y0=x0, ts=ts / s).ys
    np.testing.assert_allclose(b, a, rtol=1e-8)
    back = F.rescale_time(F.rescale_time(F.Parameters(model), s), 1 / s)
    for u, v in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(F.Parameters(model))):
        np.testing.assert_allclose(u, v, rtol=1e-12)


def test_rescaled_noise_has_the_same_variance(x64):
    # Var of sum sigma(t) dW over [0, T] = int sigma^2 dt must not change with the unit.
    sig = lesde.PowerLaw(0.3, 0.4, 5.0)
    s = 7.0
    g = sig.time_scaled(s, math.sqrt(s))
    t = np.linspace(0.0, 70.0, 200001)
    tau = t / s
    v1 = np.trapezoid(np.asarray(jax.vmap(sig)(t)) ** 2, t)
    v2 = np.trapezoid(np.asarray(jax.vmap(g)(tau)) ** 2, tau)
    assert v2 == pytest.approx(v1, rel=1e-9)


# ------------------------------------------------------------------------------
# The fit loop


def test_fit_stops_early_and_keeps_the_best():
    K = 3
    truth = lesde.LEODE(lesde.LocallyElastic(0.02, 0.005), "identity", K)
    ts = np.linspace(0.0, 100.0, 11)
    data = F.ClassMeans(ts, _solve_class_means(truth, ts, jr.normal(jr.key(20), (K, K))))
    loss = F.ClassMeanLoss(data, num_steps=50)
    start = F.Parameters(lesde.LEODE(lesde.LocallyElastic(0.01, 0.0), "identity", K))
    res = F.fit(start, loss, steps=5000, patience=50, rtol=1e-3, progress=False)
    assert res.stopped == "converged" and len(res.history) < 5000
    assert res.best_loss == pytest.approx(np.min(res.history))
    assert F.loss_value(res.params, loss) == pytest.approx(res.best_loss, rel=1e-3)
    # fixed parameters stay where they are
    free = eqx.tree_at(lambda p: p.model.impact.beta.value, F.free_parameters(start), False)
    res2 = F.fit(start, loss, free=free, steps=20, progress=False)
    assert float(res2.params.model.impact.beta.value) == 0.0
    assert float(res2.params.model.impact.alpha.value) != 0.01


def test_bootstrap_over_trials_of_a_log():
    K, T, S = 3, 6, 200
    truth = lesde.LEODE(lesde.LocallyElastic(0.03, 0.005), "identity", K)
    ts = np.arange(S, dtype=float)
    xbar = np.asarray(_solve_class_means(truth, ts, jr.normal(jr.key(21), (K, K))))
    rng = np.random.default_rng(0)
    label = rng.integers(0, K, (T, S))
    logits = xbar[np.arange(S)[None, :], label] + 0.05 * rng.standard_normal((T, S, K))
    log = lesde.io.make_log(np.zeros((T, S), int), label, logits, np.zeros((T, S)))
    make = lambda idx: F.ClassMeanLoss(F.ClassMeans.from_log(log, window=20, trials=idx), num_steps=40)  # noqa: E731
    start = F.Parameters(lesde.LEODE(lesde.LocallyElastic(0.02, 0.0), "identity", K))
    loss = make(np.arange(T))
    res = F.fit(start, loss, steps=400, progress=False)
    boot = F.bootstrap(res, make, T, samples=4, steps=100, progress=False)
    assert boot.shape == (4, 2) and np.all(boot.std(0) > 0)
    rep = F.fit_report(res, loss, bootstrap_samples=boot)
    assert rep["uncertainty"].startswith("bootstrap")
    assert rep["parameters"]["impact.alpha.value"]["value"] == pytest.approx(0.03, rel=0.2)


# ------------------------------------------------------------------------------
# What the data do not identify


def _unfitted(params, loss, time_scale):
    """A FitResult at `params` (no optimisation): the report at the planted values."""
    return F.FitResult(params=params, free=F.free_parameters(params), history=np.zeros(1),
                       best_loss=0.0, best_step=0, stopped="max_steps",
                       time_scale=time_scale)


def test_parameters_entering_only_through_their_difference_get_no_stderr():
    """The class means sum to zero at every time (they do at t = 0 and the identity
    LE-ODE keeps the sum), so the drift (1/K) ((alpha - beta) Xbar_k + beta sum Xbar)
    sees alpha - beta only: (1, 1) is a null direction of J^T J, and neither alpha
    nor beta is identified. Their standard errors are NaN (null in JSON), never 0."""
    K = 3
    x0 = np.array([[1.0, -0.3, 0.2], [-0.4, 0.8, 0.1], [-0.6, -0.5, -0.3]])  # columns sum to 0
    truth = lesde.LEODE(lesde.LocallyElastic(4e-3, 1e-3), "identity", K)
    ts = np.linspace(0.0, 200.0, 11)
    loss = F.ClassMeanLoss(F.ClassMeans(ts, _solve_class_means(truth, ts, x0)), num_steps=20)
    rep = F.fit_report(_unfitted(F.Parameters(truth), loss, 200.0), loss)
    for name in ("impact.alpha.value", "impact.beta.value"):
        assert math.isnan(rep["parameters"][name]["stderr"])
        assert rep["parameters"][name]["identified"] is False
        assert rep["parameters"][name]["value"] == pytest.approx(4e-3 if "alpha" in name else 1e-3)
    rank = rep["covariance_rank"]
    assert rank["rank"] == 1 and rank["parameters"] == 2
    assert rank["not_identified"] == ["impact.alpha.value", "impact.beta.value"]
    assert rank["rtol"] == pytest.approx(math.sqrt(float(jnp.finfo(jnp.zeros(()).dtype).eps)))
    text = dump_json(rep)
    assert "NaN" not in text and '"stderr": null' in text


def test_a_knot_no_data_time_depends_on_gets_no_stderr():
    """E(t) piecewise linear through knots 0, 100, 400 and data up to t = 100: the
    values of the knot at 400 do not move the loss (zero columns of J), the other 8
    entries are identified and keep finite standard errors."""
    K = 2
    values = jnp.stack([4e-3 * jnp.eye(K) + 1e-3, 3e-3 * jnp.eye(K), 5e-3 * jnp.eye(K)])
    truth = lesde.LEODE(lesde.General(lesde.PiecewiseLinear(jnp.array([0.0, 100.0, 400.0]), values)),
                        "identity", K)
    ts = np.linspace(0.0, 100.0, 11)
    x0 = np.array([[1.0, -0.3], [-0.4, 0.8]])
    loss = F.ClassMeanLoss(F.ClassMeans(ts, _solve_class_means(truth, ts, x0)), num_steps=20)
    rep = F.fit_report(_unfitted(F.Parameters(truth), loss, 100.0), loss)
    params = rep["parameters"]
    dead = [n for n in params if n.startswith("impact.schedule.values[2,")]
    assert len(dead) == 4 and rep["covariance_rank"]["not_identified"] == dead
    assert rep["covariance_rank"]["rank"] == 8
    for name, p in params.items():
        assert math.isnan(p["stderr"]) == (name in dead) and p["identified"] == (name not in dead)


# ------------------------------------------------------------------------------
# Errors


def test_nan_and_too_few_points_are_refused():
    ts = np.arange(4.0)
    xbar = np.zeros((4, 3, 3))
    xbar[2, 1, 0] = np.nan
    with pytest.raises(F.FitDataError, match=r"xbar must be finite.*time 2\.0.*class 1"):
        F.ClassMeans(ts, xbar)
    with pytest.raises(F.FitDataError, match="at least 2 time points"):
        F.ClassMeans([0.0], np.zeros((1, 3, 3)))
    with pytest.raises(F.FitDataError, match="strictly increasing"):
        F.ClassMeans([0.0, 2.0, 1.0, 3.0], np.zeros((4, 3, 3)))
    with pytest.raises(F.FitDataError, match="features must be finite"):
        F.Snapshots(ts, np.full((4, 6, 3), np.nan), np.repeat(np.arange(3), 2))
    with pytest.raises(ValueError, match="fit_until = 0.5 leaves 1"):
        F.ClassMeanLoss(F.ClassMeans(ts, np.zeros((4, 3, 3))), fit_until=0.5)


def test_a_log_with_nan_logits_is_refused():
    logits = np.zeros((2, 10, 3))
    logits[1, 4, 2] = np.nan
    log = lesde.io.make_log(np.zeros((2, 10), int), np.zeros((2, 10), int), np.zeros((2, 10, 3)),
                            np.zeros((2, 10)))
    log["logits"][:] = logits
    with pytest.raises(lesde.io.LogError, match="logits must be finite"):
        F.ClassMeans.from_log(log)


def test_too_few_steps_for_the_knots_are_refused():
    with pytest.raises(ValueError, match="too few time points for the requested knots"):
        F.check_knots(np.linspace(0, 100, 8), np.linspace(0, 100, 5))
    with pytest.raises(ValueError, match="no data time between knots 10.0 and 20.0"):
        F.check_knots([0.0, 10.0, 20.0, 100.0], [0.0, 5.0, 50.0, 60.0, 100.0])
    F.check_knots([0.0, 50.0, 100.0], np.linspace(0, 100, 11))


def test_mismatched_models_are_refused():
    K = 3
    ramp = np.arange(4.0)[:, None, None] * np.ones((1, K, K))  # data that vary in time
    data = F.ClassMeans(np.arange(4.0), ramp)
    loss = F.ClassMeanLoss(data)
    wrong = F.Parameters(lesde.LEODE(lesde.LocallyElastic(0.1, 0.0), "identity", 4))
    with pytest.raises(ValueError, match="K = 4 classes.*data have K = 3"):
        F.fit(wrong, loss, progress=False)
    ode = F.Parameters(lesde.LEODE(lesde.LocallyElastic(0.1, 0.0), "identity", K))
    moments = F.MomentLoss(F.ClassMoments(np.arange(4.0), ramp, np.zeros((4, K, K, K))))
    with pytest.raises(ValueError, match="must be an LESDE"):
        F.fit(ode, moments, progress=False)
    labels = np.repeat(np.arange(K), 2)
    sde = F.Parameters(lesde.LESDE(lesde.LocallyElastic(0.1, 0.0), "identity", lesde.Classes(labels, K),
                                   noise=lesde.Noise(shared=0.1)))
    snaps = F.TransitionLoss(F.Snapshots(np.arange(3.0), ramp[:3, :2].reshape(3, 6, 1) * np.ones(K), labels))
    with pytest.raises(ValueError, match="independent noise"):
        F.fit(sde, snaps, progress=False)
    fn = F.Parameters(lesde.LEODE(lesde.LocallyElastic(lambda t: 0.1 + 0 * t, 0.0), "identity", K))
    with pytest.raises(ValueError, match="Function schedule"):
        F.fit(fn, loss, progress=False)
    with pytest.raises(ValueError, match="no free parameters"):
        F.free_parameters(ode, impact=False)
    with pytest.raises(ValueError, match="initial=True needs an explicit Parameters.y0"):
        F.free_parameters(ode, initial=True)
    with pytest.raises(ValueError, match="learning_rate must be"):
        F.fit(ode, loss, learning_rate=-1.0, progress=False)


def test_fits_compile_once_per_structure(monkeypatch):
    """A second fit, a bootstrap and repeated loss evaluations with new data values and
    new starting values (the same model structure, data times and settings) trace
    nothing: the loss is evaluated inside a trace only while JAX compiles."""
    K, T, S = 3, 4, 60
    traces = []
    real = F.ClassMeanLoss.value
    monkeypatch.setattr(F.ClassMeanLoss, "value",
                        lambda self, p: (traces.append(1), real(self, p))[1])
    truth = lesde.LEODE(lesde.LocallyElastic(0.03, 0.005), "identity", K)
    ts = np.arange(S, dtype=float)
    rng = np.random.default_rng(1)

    def log_of(seed):
        xbar = np.asarray(_solve_class_means(truth, ts, jr.normal(jr.key(seed), (K, K))))
        label = rng.integers(0, K, (T, S))
        logits = xbar[np.arange(S)[None, :], label] + 0.05 * rng.standard_normal((T, S, K))
        return lesde.io.make_log(np.zeros((T, S), int), label, logits, np.zeros((T, S)))

    def loss_of(log, idx=None):
        return F.ClassMeanLoss(F.ClassMeans.from_log(log, window=10, trials=idx), num_steps=20)

    def start(alpha):
        return F.Parameters(lesde.LEODE(lesde.LocallyElastic(alpha, 0.0), "identity", K))

    log_a = log_of(30)
    res = F.fit(start(0.02), loss_of(log_a), steps=3, progress=False)
    F.loss_value(res.params, loss_of(log_a))
    first = len(traces)
    assert first > 0
    F.fit(start(0.01), loss_of(log_of(31)), steps=3, progress=False)
    F.bootstrap(res, lambda idx: loss_of(log_a, idx), T, samples=2, steps=3, progress=False)
    F.loss_value(start(0.05), loss_of(log_of(32)))
    assert len(traces) == first
