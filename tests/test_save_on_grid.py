"""`simulate(..., grid_saves=True)`: save times on the solver grid are read off the
steps (`SaveAt(steps=True)`, then `fn`); the result must equal diffrax's interpolated
saves."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import lesde
from lesde.solve._simulate import _grid_index


def _both(model, ts, **kw):
    direct = lesde.simulate(model, ts=ts, grid_saves=True, **kw)  # read off the steps
    interpolated = lesde.simulate(model, ts=ts, **kw)
    traced = jax.jit(lambda s: lesde.simulate(model, ts=s, grid_saves=True, **kw))(jnp.asarray(ts))
    # traced save times cannot be placed on the grid: interpolated
    np.testing.assert_allclose(traced.ys, interpolated.ys, rtol=1e-6, atol=1e-7)
    return direct, traced


def test_ode_saves_on_the_grid_equal_interpolated_saves(x64):
    model = lesde.LEODE(lesde.LocallyElastic(lesde.PowerLaw(0.8, 0.5), 0.1), "identity", 3)
    ts = np.array([0.0, 0.5, 0.5, 2.0, 3.25, 4.0])
    direct, traced = _both(model, ts, t1=4.0, dt=0.25, y0=jr.normal(jr.key(0), (3, 3)))
    assert _grid_index(ts, 0.0, 0.25, 16) == (0, 2, 2, 8, 13, 16)
    np.testing.assert_allclose(direct.ys, traced.ys, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(direct.ts, ts)


def test_sde_saves_on_the_grid_equal_interpolated_saves():
    classes = lesde.Classes.balanced(3, 4)
    model = lesde.LESDE(lesde.LocallyElastic(1.0, 0.2), "ce", classes, noise=lesde.Noise(independent=0.3))
    ts = np.linspace(0.0, 2.0, 5)
    kw = dict(t1=2.0, dt=0.1, key=jr.key(1), fn=lambda t, x, m: m.classes.mean(x))
    direct, traced = _both(model, ts, **kw)
    np.testing.assert_allclose(direct.ys, traced.ys, rtol=1e-5, atol=1e-6)


def test_off_grid_save_times_interpolate():
    assert _grid_index(np.array([0.0, 0.3]), 0.0, 0.25, 16) is None
    model = lesde.LEODE(lesde.LocallyElastic(0.5, 0.1), "identity", 3)
    y0 = jr.normal(jr.key(2), (3, 3))
    ts = np.array([0.0, 0.3, 1.0])
    a = lesde.simulate(model, t1=1.0, dt=0.25, y0=y0, ts=ts, grid_saves=True)
    b = lesde.simulate(model, t1=1.0, dt=0.25, y0=y0, ts=ts)
    np.testing.assert_allclose(a.ys, b.ys)
