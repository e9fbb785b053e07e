"""Growth rates of the linear LE-ODEs from the Jacobian of the drift, and the exact
factor of one explicit Euler step (spec: "The LE-ODE").

Identity model: dXbar/dt = (E/K) Xbar acts on the class axis of the K x p state and
independently on each of the p feature coordinates, so the Jacobian on the flattened
state is kron(E/K, I_p): the all-ones rate (alpha + (K-1) beta)/K has multiplicity p and
the sum-zero rate (alpha - beta)/K multiplicity (K-1) p.

Projected model: y_k = <Xbar_k, d_k>/|d_k|^2 follows the closed K-dimensional linear
system dy/dt = M y with M = (1/K)[(alpha + beta/(K-1)) I - beta/(K-1) 1 1^T]: rate
(alpha - beta)/K on y ~ 1 (multiplicity 1), (alpha + beta/(K-1))/K on sum(y) = 0
(multiplicity K-1).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde

KS = [2, 3, 5, 10]
# (alpha, beta): locally elastic, not locally elastic, negative inter-class impact
IMPACTS = [(1.5, 0.4), (0.3, 0.9), (1.0, -0.6)]


def _sorted_real_eigs(J):
    ev = np.linalg.eigvals(np.asarray(J, dtype=np.float64))
    assert np.max(np.abs(ev.imag)) < 1e-9
    return np.sort(ev.real)


def _flat_jacobian(model, t):
    x = jnp.asarray(np.random.default_rng(0).normal(size=model.state_shape))
    return _flat_jacobian_at(model, jnp.asarray(t, float), x.reshape(-1))


@eqx.filter_jit
def _flat_jacobian_at(model, t, x):
    shape = model.state_shape
    f = lambda z: model.drift(t, z.reshape(shape)).reshape(-1)  # noqa: E731
    return jax.jacobian(f)(x)


@pytest.mark.parametrize("alpha,beta", IMPACTS)
@pytest.mark.parametrize("K", KS)
def test_identity_rates_are_jacobian_eigenvalues(x64, K, alpha, beta):
    model = lesde.LEODE(lesde.LocallyElastic(alpha, beta), "identity", K)
    p = K
    J = _flat_jacobian(model, 0.0)
    assert J.shape == (K * p, K * p)
    r_ones, r_zero = lesde.identity_rates(alpha, beta, K)
    want = np.sort([r_ones] * p + [r_zero] * ((K - 1) * p))
    np.testing.assert_allclose(_sorted_real_eigs(J), want, rtol=1e-12, atol=1e-12)
    # the all-ones direction on the class axis (any feature vector) has rate r_ones
    v = np.outer(np.ones(K), np.arange(1.0, p + 1)).reshape(-1)
    np.testing.assert_allclose(np.asarray(J) @ v, r_ones * v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K,p", [(2, 5), (3, 1), (5, 7), (10, 4)])
def test_identity_rates_with_head_multiplicities(x64, K, p):
    """dim p != K (a head W of shape (K, p)): multiplicities p and (K-1) p."""
    alpha, beta = 1.2, -0.3
    W = np.random.default_rng(K).normal(size=(K, p))
    model = lesde.LEODE(lesde.LocallyElastic(alpha, beta), lesde.Identity(head=W), K)
    assert model.state_shape == (K, p)
    J = _flat_jacobian(model, 0.0)
    r_ones, r_zero = lesde.identity_rates(alpha, beta, K)
    want = np.sort([r_ones] * p + [r_zero] * ((K - 1) * p))
    np.testing.assert_allclose(_sorted_real_eigs(J), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K", KS)
def test_identity_rates_time_varying(x64, K):
    """With alpha(t), beta(t) the instantaneous rates are the rates at alpha(t), beta(t)."""
    alpha = lesde.PowerLaw(2.0, 0.8)
    beta = lesde.PiecewiseLinear([0.5, 2.0], [0.7, -0.2])
    model = lesde.LEODE(lesde.LocallyElastic(alpha, beta), "identity", K)
    for t in (0.0, 1.3, 3.0):
        J = _flat_jacobian(model, t)
        a, b = float(alpha(t)), float(beta(t))
        r_ones, r_zero = lesde.identity_rates(a, b, K)
        want = np.sort([r_ones] * K + [r_zero] * ((K - 1) * K))
        np.testing.assert_allclose(_sorted_real_eigs(J), want, rtol=1e-12, atol=1e-12)


def _projected_y_map(model, t):
    y = jnp.asarray(np.random.default_rng(1).normal(size=model.num_classes))
    return _projected_y_map_at(model, jnp.asarray(t, float), y)


@eqx.filter_jit
def _projected_y_map_at(model, t, y):
    """The linear map y -> dy/dt, through Xbar_k = y_k d_k and the drift."""
    D = lesde.simplex_directions(model.num_classes)

    def f(y):
        return lesde.projected_coordinates(model.drift(t, y[:, None] * D))

    return jax.jacobian(f)(y)


@pytest.mark.parametrize("alpha,beta", IMPACTS)
@pytest.mark.parametrize("K", KS)
def test_projected_rates_are_y_dynamics_eigenvalues(x64, K, alpha, beta):
    model = lesde.LEODE(lesde.LocallyElastic(alpha, beta), "projected", K)
    M = np.asarray(_projected_y_map(model, 0.0))
    r_sym, r_anti = lesde.projected_rates(alpha, beta, K)
    np.testing.assert_allclose(r_sym, (alpha - beta) / K, rtol=1e-15)
    np.testing.assert_allclose(r_anti, (alpha + beta / (K - 1)) / K, rtol=1e-15)
    want = np.sort([r_sym] + [r_anti] * (K - 1))
    np.testing.assert_allclose(_sorted_real_eigs(M), want, rtol=1e-12, atol=1e-12)
    # y ~ 1 is the eigenvector of the symmetric rate
    ones = np.ones(K)
    np.testing.assert_allclose(M @ ones, r_sym * ones, rtol=1e-12, atol=1e-12)
    # and M is exactly the matrix of the spec
    want_M = ((alpha + beta / (K - 1)) * np.eye(K) - beta / (K - 1) * np.ones((K, K))) / K
    np.testing.assert_allclose(M, want_M, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K", KS)
def test_projected_y_dynamics_closed(x64, K):
    """dy/dt depends on Xbar only through y: for any state X, y(drift(X)) = M y(X); so
    the full K*K Jacobian has the projected rates plus K(K-1) zeros."""
    alpha, beta = 1.4, 0.5
    model = lesde.LEODE(lesde.LocallyElastic(alpha, beta), "projected", K)
    M = np.asarray(_projected_y_map(model, 0.0))
    X = jnp.asarray(np.random.default_rng(2).normal(size=(K, K)))
    y = np.asarray(lesde.projected_coordinates(X))
    dy = np.asarray(lesde.projected_coordinates(model.drift(0.0, X)))
    np.testing.assert_allclose(dy, M @ y, rtol=1e-12, atol=1e-12)
    J = _flat_jacobian(model, 0.0)
    r_sym, r_anti = lesde.projected_rates(alpha, beta, K)
    want = np.sort([r_sym] + [r_anti] * (K - 1) + [0.0] * (K * (K - 1)))
    np.testing.assert_allclose(_sorted_real_eigs(J), want, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# One explicit Euler step of size 1.


@pytest.mark.parametrize("alpha,beta", IMPACTS)
@pytest.mark.parametrize("K", KS)
def test_projected_euler_step_factors(x64, K, alpha, beta):
    model = lesde.LEODE(lesde.LocallyElastic(alpha, beta), "projected", K)
    D = np.asarray(lesde.simplex_directions(K))
    f_sym, f_anti = lesde.projected_euler_factors(alpha, beta, K)
    np.testing.assert_allclose(f_sym, 1 + (alpha - beta) / K, rtol=1e-15)
    np.testing.assert_allclose(f_anti, 1 + (alpha + beta / (K - 1)) / K, rtol=1e-15)

    def step(x0):
        tr = lesde.simulate(model, t1=1.0, dt=1.0, y0=jnp.asarray(x0), solver="euler")
        assert int(tr.num_steps) == 1
        return np.asarray(tr.ys[0])

    # symmetric mode: Xbar_k(0) = c d_k, so y(0) = c 1
    c = 0.37
    x_sym = c * D
    x1 = step(x_sym)
    y1 = np.asarray(lesde.projected_coordinates(jnp.asarray(x1)))
    np.testing.assert_allclose(y1, (1 + (alpha - beta) / K) * c * np.ones(K), rtol=1e-14)
    # the whole state is scaled (the drift is (alpha - beta) c d_k / K)
    np.testing.assert_allclose(x1, (1 + (alpha - beta) / K) * x_sym, rtol=1e-14, atol=1e-15)

    # a sum-zero start: Xbar_k(0) = v_k d_k with sum(v) = 0
    v = np.random.default_rng(K).normal(size=K)
    v -= v.mean()
    x1 = step(v[:, None] * D)
    y1 = np.asarray(lesde.projected_coordinates(jnp.asarray(x1)))
    np.testing.assert_allclose(y1, (1 + (alpha + beta / (K - 1)) / K) * v, rtol=1e-13,
                               atol=1e-14)
