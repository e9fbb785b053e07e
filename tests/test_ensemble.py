"""`lesde.simulate_ensemble`: the trial-minor path equals `jax.vmap` over `simulate`
(fields, save times, status, masking), is exact where Euler is a matrix power, flags a
diverging trial alone, is chosen by 'auto' where it applies, and compiles once."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import lesde

K = 3
DECAYING = lesde.LocallyElastic(lesde.PowerLaw(0.05, 0.5), lesde.PowerLaw(0.02, 0.5))


def _y0s(b, key=0, scale=0.05):
    return scale * jr.normal(jr.key(key), (b, K, K))


def _both(model, y0s, **kw):
    a = lesde.simulate_ensemble(model, y0s, layout="trial-minor", solver="euler", **kw)
    b = lesde.simulate_ensemble(model, y0s, layout="vmap", solver="euler", **kw)
    return a, b


def _assert_same_fields(a, b):
    for name in ("ts", "ys", "status", "valid", "num_steps"):
        x, y = getattr(a, name), getattr(b, name)
        for u, v in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)):
            assert u.shape == v.shape and u.dtype == v.dtype, name
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.valid, b.valid)
    np.testing.assert_array_equal(a.num_steps, b.num_steps)
    np.testing.assert_array_equal(a.result._value, b.result._value)
    np.testing.assert_allclose(a.ts, b.ts, rtol=1e-6)


@pytest.mark.parametrize("gradient", ["projected", "identity"])
def test_trial_minor_equals_vmap_of_simulate(gradient):
    model = lesde.LEODE(DECAYING, gradient, K)
    y0s = _y0s(40)
    ts = np.array([0.0, 10.0, 20.0, 20.0, 50.0, 200.0])
    a, b = _both(model, y0s, t1=200.0, dt=1.0, ts=ts)
    _assert_same_fields(a, b)
    assert a.ys.shape == (40, len(ts), K, K)
    scale = np.abs(np.asarray(b.ys)).max(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(a.ys / scale, b.ys / scale, rtol=0, atol=2e-6)
    assert (np.asarray(a.status) == lesde.solve.SUCCESS).all()


def test_default_drift_of_a_model_vmaps_over_the_trials():
    # the LESDE without noise has no trial-minor drift of its own: the default vmaps drift
    classes = lesde.Classes.balanced(K, 2)
    model = lesde.LESDE(lesde.LocallyElastic(0.5, 0.1), "ce", classes)
    y0s = 0.3 * jr.normal(jr.key(3), (8, 2 * K, K))
    a, b = _both(model, y0s, t1=1.0, dt=0.1)
    _assert_same_fields(a, b)
    np.testing.assert_allclose(a.ys, b.ys, rtol=1e-5, atol=1e-6)


def test_euler_on_the_linear_le_ode_is_a_matrix_power(x64):
    # identity model, constant E: dX/dt = E X / K, so Euler gives X_n = (I + dt E/K)^n X_0
    e = np.array([[0.9, 0.2, 0.1], [0.2, 0.8, 0.3], [0.1, 0.3, 0.7]])
    dt, steps = 0.25, 40
    model = lesde.LEODE(lesde.General(e), "identity", K)
    y0s = np.random.default_rng(0).normal(size=(5, K, K))
    ts = dt * np.array([0, 7, 20, steps])
    traj = lesde.simulate_ensemble(model, y0s, t1=dt * steps, dt=dt, ts=ts, solver="euler",
                                   layout="trial-minor")
    assert traj.ys.dtype == jnp.float64
    step = np.eye(K) + dt * e / K
    want = np.stack([
        np.stack([np.linalg.matrix_power(step, n) @ y for n in (0, 7, 20, steps)]) for y in y0s
    ])
    np.testing.assert_allclose(np.asarray(traj.ys), want, rtol=1e-12, atol=1e-13)
    # reverse mode through the loop: d sum(X_n) / d X_0 = (M^n)^T 1 in every column
    grad = jax.grad(lambda y: jnp.sum(lesde.simulate_ensemble(
        model, y, t1=dt * steps, dt=dt, solver="euler", layout="trial-minor").ys))(y0s)
    power = np.linalg.matrix_power(step, steps)
    np.testing.assert_allclose(grad, np.broadcast_to(power.sum(0)[None, :, None], y0s.shape),
                               rtol=1e-12)


def test_a_diverging_trial_is_flagged_alone():
    # identity model, E = 3000 I: X_n = 1001^n X_0, so 1e30 overflows float32 at step 3;
    # fn's values (a dict) are NaN where a save is unhealthy, as under vmap
    model = lesde.LEODE(lesde.General(3000.0 * jnp.eye(K)), "identity", K)
    y0s = _y0s(6).at[2].set(1e30)
    fn = lambda t, x, m: {"max": jnp.max(jnp.abs(x)), "first": x[0]}  # noqa: E731
    a, b = _both(model, y0s, t1=3.0, dt=1.0, ts=np.array([1.0, 3.0]), fn=fn)
    _assert_same_fields(a, b)
    status = np.asarray(a.status)
    assert status[2] == lesde.solve.DIVERGED
    assert (np.delete(status, 2) == lesde.solve.SUCCESS).all()
    np.testing.assert_array_equal(np.asarray(a.valid)[2], [True, False])
    assert np.isnan(np.asarray(a.ys["first"])[2, 1]).all()
    for u, v in zip(jax.tree_util.tree_leaves(a.ys), jax.tree_util.tree_leaves(b.ys)):
        np.testing.assert_allclose(u, v, rtol=1e-6)


def test_auto_picks_trial_minor_for_long_batches_of_small_odes():
    ode = lesde.LEODE(DECAYING, "projected", K)
    choose = lesde.solve.choose_ensemble_layout
    assert choose(ode, 500, solver="euler") == "trial-minor"
    assert choose(ode, K, solver="euler") == "vmap"  # batch no longer than the minor axis p
    assert choose(ode, 500) == "vmap"  # default solver of the LE-ODE: Tsit5
    assert choose(ode, 500, solver="euler", saves_on_grid=False) == "vmap"
    assert choose(ode, 500, solver="euler", options=("max_steps",)) == "vmap"
    assert choose(ode, 500, layout="vmap", solver="euler") == "vmap"
    sde = lesde.LESDE(lesde.LocallyElastic(1.0, 0.1), "identity", lesde.Classes.balanced(K, 2),
                      noise=lesde.Noise(independent=0.1))
    assert choose(sde, 500, solver="euler") == "vmap"
    with pytest.raises(ValueError, match="LESDE has noise"):
        choose(sde, 500, layout="trial-minor", solver="euler")
    with pytest.raises(ValueError, match="solver='euler'.*UnrolledTsit5, the default of LEODE"):
        lesde.simulate_ensemble(ode, _y0s(8), t1=1.0, dt=0.1, layout="trial-minor")
    with pytest.raises(ValueError, match="unknown layout"):
        choose(ode, 8, layout="sample-minor")
    with pytest.raises(ValueError, match=r"y0s must have shape \(trials, \*state_shape\)"):
        lesde.simulate_ensemble(ode, jnp.zeros((K, K)), t1=1.0, dt=0.1)


def test_new_initial_states_do_not_retrace():
    traces = []

    def alpha(t):
        traces.append(1)
        return 0.5 / (1.0 + t)

    model = lesde.LEODE(lesde.LocallyElastic(alpha, 0.1), "projected", K)
    run = lambda y0s: lesde.simulate_ensemble(  # noqa: E731
        model, y0s, t1=5.0, dt=0.5, solver="euler", layout="trial-minor")
    run(_y0s(16, key=1))
    n = len(traces)
    assert n > 0  # the solve traced the schedule
    out = run(_y0s(16, key=2))
    assert len(traces) == n  # new values, same shapes: the compiled solve is reused
    assert np.isfinite(np.asarray(out.ys)).all()
    run(_y0s(17))  # a new batch size compiles again (the count sees a trace)
    assert len(traces) > n
