"""Convergence of the SDE solvers on an exactly solvable special case of the LE-SDE,
in the style of diffrax's own SDE tests (test/test_sde*.py: a shared
`VirtualBrownianTree` per path, RMS errors over a batch of paths, log-log slopes).

Ornstein-Uhlenbeck case: K = 1 class, n = 1 sample, p = 1, identity gradient model,
E = alpha = -lam (beta plays no role with one class), independent noise sigma:

    dX = -(1/K) E Gbar dt + sigma dW = alpha X dt + sigma dW = -lam X dt + sigma dW,

    X_T = e^{-lam T} X_0 + sigma int_0^T e^{-lam (T - s)} dW_s
        = e^{-lam T} X_0 + sigma (W_T - lam int_0^T e^{-lam (T - s)} W_s ds)

(integration by parts), E X_T = e^{-lam T} X_0,
Var X_T = sigma^2 (1 - e^{-2 lam T}) / (2 lam).
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde

LAM, SIGMA, T, X0 = 1.0, 1.0, 1.0, 1.0


def _ou_model(lam=LAM, sigma=SIGMA):
    return lesde.LESDE(
        lesde.LocallyElastic(alpha=-lam, beta=0.0),
        "identity",
        lesde.Classes.balanced(1, 1),
        noise=lesde.Noise(independent=sigma),
    )


def test_ou_drift_is_linear():
    """The special case really is dX = -lam X dt + sigma dW (read off the model)."""
    model = _ou_model()
    assert model.state_shape == (1, 1)
    for t in (0.0, 0.7):
        for x in (-1.3, 0.0, 2.5):
            xa = jnp.full((1, 1), x)
            np.testing.assert_allclose(model.drift(t, xa), -LAM * xa, rtol=1e-6)
    shapes = model.brownian_shape()
    assert set(shapes) == {"independent"} and shapes["independent"].shape == (1, 1)
    sig = model.noise.sigmas(0.3)
    np.testing.assert_allclose(sig["independent"], SIGMA)


def test_simulate_under_jit_with_model_built_outside():
    """`simulate` must work under jax.jit when the (noisy) model was built, concretely,
    outside the transformation (the pattern `lesde._checks` recommends: "build and
    validate models outside of transformations, then transform the solve")."""
    model = _ou_model()
    y0 = jnp.full((1, 1), X0)
    f = lambda key: lesde.simulate(model, t1=T, dt=0.25, key=key, y0=y0).ys  # noqa: E731
    key = jax.random.key(0)
    eager = f(key)
    jitted = jax.jit(f)(key)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)


# ---------------------------------------------------------------------------
# Strong convergence with a shared virtual Brownian tree per path.

NUM_PATHS = 200
TREE_TOL = 2.0**-14
FINE = 2**11  # quadrature grid for the exact solution, 32x finer than the smallest dt
STRONG_DTS = [2.0**-k for k in range(2, 7)]


def _tree(key):
    # SpaceTimeLevyArea so that the same paths drive Euler (which uses only W) and the
    # additive-noise Runge-Kutta solvers (which need the space-time Levy area H).
    return diffrax.VirtualBrownianTree(
        0.0, T, tol=TREE_TOL, shape=_ou_model().brownian_shape(), key=key,
        levy_area=diffrax.SpaceTimeLevyArea,
    )


@functools.lru_cache(maxsize=None)
def _paths():
    """Keys and exact X_T of each path (cached for the module; default precision)."""
    keys = jax.random.split(jax.random.key(1234), NUM_PATHS)

    @jax.jit
    @jax.vmap
    def exact(key):
        bm = _tree(key)
        s = jnp.linspace(0.0, T, FINE + 1)
        W = jax.vmap(lambda u: bm.evaluate(u)["independent"][0, 0])(s)
        f = jnp.exp(-LAM * (T - s)) * W
        integral = jnp.sum(0.5 * (f[1:] + f[:-1])) * (T / FINE)
        return jnp.exp(-LAM * T) * X0 + SIGMA * (W[-1] - LAM * integral)

    return keys, np.asarray(exact(keys), dtype=np.float64)


@functools.lru_cache(maxsize=None)
def _strong_error(solver, dt):
    keys, exact = _paths()
    model = _ou_model()
    y0 = jnp.full((1, 1), X0)

    @eqx.filter_vmap
    def solve(key):
        tr = lesde.simulate(model, t1=T, dt=dt, key=key, y0=y0, solver=solver,
                            brownian=_tree(key))
        return tr.ys[0, 0, 0], tr.status

    xs, status = solve(keys)
    assert np.all(np.asarray(status) == 0)
    return float(np.sqrt(np.mean((np.asarray(xs, dtype=np.float64) - exact) ** 2)))


def test_euler_strong_order_one_for_additive_noise():
    """Euler-Maruyama has strong order 1/2 in general, but with additive noise it is the
    Milstein scheme (the Milstein correction sigma sigma' vanishes), so its strong order
    here is 1. We require the fitted order to be at least 1/2 and within 0.2 of 1."""
    errs = np.array([_strong_error("euler", dt) for dt in STRONG_DTS])
    assert np.all(np.isfinite(errs)) and np.all(errs > 0)
    order = np.polyfit(np.log(STRONG_DTS), np.log(errs), 1)[0]
    assert order >= 0.5, (order, errs)
    assert abs(order - 1.0) < 0.2, (order, errs)
    # errors decrease monotonically
    assert np.all(np.diff(errs) < 0), errs


def test_exact_solution_quadrature_is_accurate():
    """The reference solution's quadrature error (~ sigma lam dt_fine sqrt(T/12)) is far
    below the smallest Euler error, so the fitted order is the solver's."""
    quad_err = SIGMA * LAM * (T / FINE) * np.sqrt(T / 12)
    assert quad_err < 0.05 * _strong_error("euler", STRONG_DTS[-1])


@pytest.mark.parametrize("solver", ["sea", "shark", "sra1"])
def test_additive_noise_solvers_beat_euler(solver):
    dt = 2.0**-3
    err = _strong_error(solver, dt)
    err_euler = _strong_error("euler", dt)
    assert np.isfinite(err)
    assert err < err_euler, (solver, err, err_euler)
    if solver in ("shark", "sra1"):
        # strong order 1.5 with additive noise: much better than Euler already here
        assert err < err_euler / 3, (solver, err, err_euler)


# ---------------------------------------------------------------------------
# Weak convergence with a large ensemble on the default fold-in Brownian path.

WEAK_PATHS = 2**18
WEAK_DTS = [2.0**-k for k in range(1, 5)]
WEAK_X0 = 0.5


def _ou_moments_exact(lam=LAM, sigma=SIGMA, t=T, x0=WEAK_X0):
    m = np.exp(-lam * t) * x0
    v = sigma**2 * (1 - np.exp(-2 * lam * t)) / (2 * lam)
    return m, m * m + v


def _ou_moments_euler(h, lam=LAM, sigma=SIGMA, t=T, x0=WEAK_X0):
    """Exact moments of the Euler chain: m <- (1 - lam h) m, S <- (1 - lam h)^2 S
    + sigma^2 h (S the variance)."""
    m, S = x0, 0.0
    for _ in range(round(t / h)):
        m, S = (1 - lam * h) * m, (1 - lam * h) ** 2 * S + sigma**2 * h
    return m, m * m + S


@functools.lru_cache(maxsize=None)
def _weak_ensemble(dt):
    model = _ou_model()
    y0 = jnp.full((1, 1), WEAK_X0)
    keys = jax.random.split(jax.random.key(7), WEAK_PATHS)

    @eqx.filter_vmap
    def solve(key):
        tr = lesde.simulate(model, t1=T, dt=dt, key=key, y0=y0, solver="euler")
        return tr.ys[0, 0, 0], tr.status

    xs, status = solve(keys)
    assert np.all(np.asarray(status) == 0)
    x = np.asarray(xs, dtype=np.float64)
    n = x.size
    return (x.mean(), x.std(ddof=1) / np.sqrt(n), (x**2).mean(), (x**2).std(ddof=1) / np.sqrt(n))


@pytest.mark.parametrize("dt", WEAK_DTS)
def test_euler_ensemble_matches_exact_euler_moments(dt):
    """The ensemble's first two moments equal those of the Euler recursion, within 4
    standard errors (this checks the Brownian increments' law: mean 0, variance dt)."""
    mean, se_mean, m2, se_m2 = _weak_ensemble(dt)
    m_e, m2_e = _ou_moments_euler(dt)
    assert abs(mean - m_e) < 4 * se_mean, (mean, m_e, se_mean)
    assert abs(m2 - m2_e) < 4 * se_m2, (m2, m2_e, se_m2)


def test_euler_weak_order_one():
    _, m2_exact = _ou_moments_exact()
    stats = [_weak_ensemble(dt) for dt in WEAK_DTS]
    errs = np.array([abs(s[2] - m2_exact) for s in stats])
    ses = np.array([s[3] for s in stats])
    # the Monte-Carlo error is well below the smallest weak error
    assert errs[-1] > 8 * ses[-1], (errs, ses)
    order = np.polyfit(np.log(WEAK_DTS), np.log(errs), 1)[0]
    assert abs(order - 1.0) < 0.25, (order, errs)
    # the exact weak errors of the Euler chain have order 1 too (sanity of the reference)
    exact_errs = [abs(_ou_moments_euler(dt)[1] - m2_exact) for dt in WEAK_DTS]
    assert abs(np.polyfit(np.log(WEAK_DTS), np.log(exact_errs), 1)[0] - 1.0) < 0.25


# ---------------------------------------------------------------------------
# The ensemble average of the LE-SDE's class means is the LE-ODE (linear models).


@pytest.mark.parametrize("gradient", ["identity", "projected"])
def test_class_mean_ensemble_average_is_le_ode(gradient):
    """For a linear gradient model, E[Xbar_k] of the Euler-discretised LE-SDE follows
    exactly the Euler-discretised LE-ODE from the class means of y0 (the noise has mean
    zero and the drift of the class means is linear in the class means)."""
    K, n, M, dt, t1 = 3, 20, 2000, 2.0**-5, 1.0
    impact = lesde.LocallyElastic(lesde.PowerLaw(1.5, 0.5), 0.3)
    classes = lesde.Classes.balanced(K, n)
    model = lesde.LESDE(impact, gradient, classes,
                        noise=lesde.Noise(independent=0.6, shared=0.4))
    y0 = jnp.asarray(np.random.default_rng(3).normal(size=model.state_shape))

    @eqx.filter_vmap
    def class_means(key):
        tr = lesde.simulate(model, t1=t1, dt=dt, key=key, y0=y0, solver="euler",
                            fn=lambda t, x, m: m.classes.mean(x))
        return tr.ys[0], tr.status

    xbar, status = class_means(jax.random.split(jax.random.key(11), M))
    assert np.all(np.asarray(status) == 0)
    xbar = np.asarray(xbar, dtype=np.float64)  # (M, K, p)
    mean = xbar.mean(axis=0)
    se = xbar.std(axis=0, ddof=1) / np.sqrt(M)

    ode = model.class_mean_ode()
    want = np.asarray(
        lesde.simulate(ode, t1=t1, dt=dt, y0=classes.mean(y0), solver="euler").ys[0]
    )
    # the noise is not negligible (so the test has power) ...
    assert np.all(se > 1e-3)
    # ... the class means moved away from their start ...
    assert np.max(np.abs(want - np.asarray(classes.mean(y0)))) > 10 * se.max()
    # ... and the ensemble mean agrees with the LE-ODE within a few standard errors
    z = (mean - want) / se
    assert np.max(np.abs(z)) < 4.5, z
