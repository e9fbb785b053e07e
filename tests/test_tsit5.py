"""`UnrolledTsit5` (the LE-ODE's default solver) is diffrax's Tsit5 with the stages
written out: same solution, dense output, error estimate and gradients, and order 5."""

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import lesde
from lesde.solve import UnrolledTsit5


def _model():
    values = jnp.stack([jnp.eye(3) * 0.4 + 0.1 * c for c in (1.0, -0.5, 0.3)])
    impact = lesde.General(lesde.PiecewiseLinear([0.0, 2.0, 5.0], values))
    return lesde.LEODE(impact, "projected", 3)


def test_same_solution_and_dense_output_as_diffrax_tsit5(x64):
    model = _model()
    y0 = jr.normal(jr.key(0), (3, 3))
    ts = jnp.array([0.0, 0.33, 1.0, 2.71, 4.999, 6.0])  # off the grid: dense output
    a = lesde.simulate(model, t1=6.0, dt=0.25, y0=y0, ts=ts, solver=diffrax.Tsit5()).ys
    b = lesde.simulate(model, t1=6.0, dt=0.25, y0=y0, ts=ts, solver=UnrolledTsit5()).ys
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13)
    assert isinstance(lesde.solve._simulate._solver(None, model), UnrolledTsit5)


def test_same_adaptive_steps_as_diffrax_tsit5(x64):
    impact = lesde.LocallyElastic(lesde.PowerLaw(2.0, 0.7, 1.0), 0.2)  # smooth in t
    model = lesde.LEODE(impact, "identity", 3)
    y0 = jr.normal(jr.key(1), (3, 3))
    ctrl = diffrax.PIDController(rtol=1e-8, atol=1e-10)
    a = lesde.simulate(model, t1=6.0, dt=0.1, y0=y0, solver=diffrax.Tsit5(), stepsize_controller=ctrl)
    b = lesde.simulate(model, t1=6.0, dt=0.1, y0=y0, solver=UnrolledTsit5(), stepsize_controller=ctrl)
    assert int(a.num_steps) == int(b.num_steps)
    np.testing.assert_allclose(b.ys, a.ys, rtol=1e-12)


def test_same_gradient_as_diffrax_tsit5(x64):
    y0 = jr.normal(jr.key(2), (3, 3))

    def loss(alpha, solver):
        model = lesde.LEODE(lesde.LocallyElastic(alpha, 0.2), "identity", 3)
        return jnp.sum(lesde.simulate(model, t1=3.0, dt=0.1, y0=y0, solver=solver).ys ** 2)

    ga = jax.grad(loss)(0.7, diffrax.Tsit5())
    gb = jax.grad(loss)(0.7, UnrolledTsit5())
    assert float(gb) == pytest.approx(float(ga), rel=1e-12)


def test_fifth_order_convergence(x64):
    # identity model with time-varying impacts: exact solution by `closed_form`
    impact = lesde.LocallyElastic(lesde.PowerLaw(2.0, 0.7, 1.0), lesde.Constant(-0.5))
    model = lesde.LEODE(impact, "identity", 3)
    y0 = jr.normal(jr.key(3), (3, 3))
    exact = lesde.closed_form(model, y0, 4.0)
    errs = []
    dts = [0.125, 0.0625, 0.03125]
    for dt in dts:
        y = lesde.simulate(model, t1=4.0, dt=dt, y0=y0, solver=UnrolledTsit5()).ys[-1]
        errs.append(float(jnp.max(jnp.abs(y - exact))))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all((4.5 < orders) & (orders < 5.5)), (orders, errs)


def test_vmapped_solves_match_single_ones():
    y0 = jr.normal(jr.key(4), (3, 3))

    def final(alpha):
        model = lesde.LEODE(lesde.LocallyElastic(alpha, 0.1), "projected", 3)
        return lesde.simulate(model, t1=2.0, dt=0.1, y0=y0).ys[-1]

    alphas = jnp.array([0.3, 0.8, 1.5])
    batch = jax.jit(jax.vmap(final))(alphas)
    for i, a in enumerate(alphas):
        np.testing.assert_allclose(batch[i], final(a), rtol=1e-5, atol=1e-6)
