"""Closed-form integrals of the time schedules against numerical quadrature.

Every schedule f has `integral(t) = int_0^t f(s) ds`; the LE-ODE closed forms depend on
it (A(t), B(t)). Here `integral` is checked against `scipy.integrate.quad` of the
schedule's own `__call__` (so the two methods of one schedule must agree), in double
precision.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import lesde

TIMES = [0.0, 0.3, 1.0, 2.7, 17.0]


@eqx.filter_jit
def _eval(sched, s):
    return sched(s)


def _quad(sched, t, points=None):
    """int_0^t sched(s) ds by adaptive quadrature (scalar or array valued)."""
    if t == 0.0:
        return np.zeros(sched.shape)
    f = lambda s: np.asarray(_eval(sched, jnp.asarray(s, float)), dtype=np.float64)  # noqa: E731
    if sched.shape == ():
        pts = None if points is None else [p for p in points if 0.0 < p < t]
        val, _ = integrate.quad(lambda s: float(f(s)), 0.0, t, points=pts or None,
                                epsabs=1e-13, epsrel=1e-12, limit=200)
        return np.asarray(val)
    pts = None if points is None else [p for p in points if 0.0 < p < t]
    val, _ = integrate.quad_vec(f, 0.0, t, points=pts or None, epsabs=1e-13, epsrel=1e-12)
    return val


def _check(sched, t, points=None, rtol=1e-10, atol=1e-12):
    got = np.asarray(sched.integral(jnp.asarray(t)))
    want = _quad(sched, t, points)
    assert got.shape == want.shape == tuple(sched.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("t", TIMES)
def test_constant_integral(x64, t):
    _check(lesde.Constant(1.7), t)
    _check(lesde.Constant(-0.4), t)
    _check(lesde.Constant(np.array([[1.0, -2.0], [0.5, 3.0]])), t)


@pytest.mark.parametrize("r", [0.0, 0.5, 1.0, 1.0 - 0.5e-4, 1.0001, 1.0 + 2e-4, 2.0, 3.5])
@pytest.mark.parametrize("t0", [1.0, 0.4])
@pytest.mark.parametrize("t", TIMES)
def test_powerlaw_integral(x64, r, t0, t):
    _check(lesde.PowerLaw(1.3, r, t0=t0), t)


def test_powerlaw_matrix_integral(x64):
    c = np.array([[1.0, 0.2, -0.3], [0.0, 2.0, 0.5], [0.1, 0.1, 0.7]])
    for r in (0.5, 1.0, 2.0):
        for t in (0.5, 4.0):
            _check(lesde.PowerLaw(c, r, t0=2.0), t)
    # exponents per entry (one of them exactly 1, one within the series branch)
    r = np.array([[0.5, 1.0, 2.0], [1.00005, 0.0, 3.0], [0.9, 1.1, 1.5]])
    for t in (0.5, 4.0):
        _check(lesde.PowerLaw(c, r, t0=2.0), t)


def test_powerlaw_values():
    """f(t) = c (1 + t/t0)^(-r), f(0) = c."""
    s = lesde.PowerLaw(2.0, 1.5, t0=0.5)
    np.testing.assert_allclose(s(0.0), 2.0, rtol=1e-6)
    np.testing.assert_allclose(s(1.5), 2.0 * 4.0**-1.5, rtol=1e-6)


# Knots that start after 0 (so [0, times[0]] is extrapolated constantly), and values
# that change sign.
PL_TIMES = [0.5, 1.0, 2.5, 4.0]
PL_VALUES = [0.8, -0.3, 1.9, 1.2]


@pytest.mark.parametrize(
    "t",
    [0.0, 0.2, 0.5, 0.75, 1.0, 1.6, 2.5, 3.99, 4.0, 6.5],
    ids=lambda t: f"t={t}",
)
def test_piecewise_linear_integral(x64, t):
    """t before the first knot (which is after 0), on knots, inside, after the last."""
    s = lesde.PiecewiseLinear(PL_TIMES, PL_VALUES)
    _check(s, t, points=PL_TIMES)


def test_piecewise_linear_extrapolation_values(x64):
    s = lesde.PiecewiseLinear(PL_TIMES, PL_VALUES)
    np.testing.assert_allclose(s(0.0), PL_VALUES[0])
    np.testing.assert_allclose(s(0.25), PL_VALUES[0])
    np.testing.assert_allclose(s(0.75), 0.5 * (PL_VALUES[0] + PL_VALUES[1]))
    np.testing.assert_allclose(s(10.0), PL_VALUES[-1])
    # before the first knot the integral is a rectangle of height v_0
    np.testing.assert_allclose(s.integral(0.3), 0.3 * PL_VALUES[0], rtol=1e-14)


@pytest.mark.parametrize("t", [0.7, 1.4, 3.0, 5.0])
def test_piecewise_linear_knots_before_zero(x64, t):
    """Knots that start before 0: the integral still starts at 0."""
    s = lesde.PiecewiseLinear([-1.0, 0.5, 2.0], [3.0, 1.0, -1.0])
    _check(s, t, points=[0.5, 2.0])


def test_piecewise_linear_single_knot(x64):
    s = lesde.PiecewiseLinear([1.0], [2.5])
    for t in (0.5, 3.0):
        _check(s, t)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.3, 2.0, 3.7])
def test_piecewise_linear_matrix_integral(x64, t):
    times = np.array([0.25, 1.0, 2.0])
    values = np.random.default_rng(0).normal(size=(3, 3, 3))
    s = lesde.PiecewiseLinear(times, values)
    assert s.shape == (3, 3)
    _check(s, t, points=list(times))


@pytest.mark.parametrize("t", [0.0, 0.4, 2.0, 5.5])
def test_function_integral(x64, t):
    s = lesde.Function(lambda u: 1.0 + jnp.sin(u), integral=lambda u: u + 1.0 - jnp.cos(u))
    _check(s, t)


def test_function_without_integral_raises():
    s = lesde.Function(lambda u: 2.0 * u)
    with pytest.raises(ValueError, match="integral"):
        s.integral(1.0)


# ---------------------------------------------------------------------------
# d/dr of the power-law integral, across the series branch near r = 1.


def _powerlaw_integral(r, c=1.3, t0=0.8, t=3.0):
    return lesde.PowerLaw(c, r, t0=t0).integral(t)


@pytest.mark.parametrize("r", [1.0, 1.0 + 3e-5, 1.0 - 9e-5, 1.0 + 1.2e-4, 0.7, 1.6])
def test_powerlaw_integral_grad_r(x64, r):
    r = jnp.asarray(r)
    g = jax.grad(_powerlaw_integral)(r)
    assert np.isfinite(g)
    eps = 1e-6
    fd = (_powerlaw_integral(r + eps) - _powerlaw_integral(r - eps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-7)
    # exact derivative of c t0 [(1 + t/t0)^(1-r) - 1]/(1 - r) with respect to r
    c, t0, t = 1.3, 0.8, 3.0
    L = np.log1p(t / t0)
    s = 1.0 - float(r)
    if s == 0.0:
        exact = -c * t0 * L**2 / 2
    else:
        exact = -c * t0 * (s * L * np.exp(s * L) - np.expm1(s * L)) / s**2
    np.testing.assert_allclose(g, exact, rtol=1e-6)


def test_powerlaw_integral_grad_r_at_one_default_precision():
    """No NaN from the r = 1 branch in default precision either."""
    g = jax.grad(_powerlaw_integral)(jnp.asarray(1.0))
    assert np.isfinite(g)
    L = np.log1p(3.0 / 0.8)
    np.testing.assert_allclose(g, -1.3 * 0.8 * L**2 / 2, rtol=1e-4)
