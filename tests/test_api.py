"""Determinism, batching, compilation count and divergence handling of `simulate`."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde

K, N_PER = 3, 8
CLASSES = lesde.Classes.balanced(K, N_PER)


def make(alpha, beta=0.1, sigma=0.05, gradient="ce"):
    return lesde.LESDE(
        lesde.LocallyElastic(alpha, beta),
        gradient,
        CLASSES,
        noise=lesde.Noise(independent=sigma, shared=0.5 * sigma),
    )


def test_same_key_same_result():
    m = make(1.0)
    a = lesde.simulate(m, t1=5.0, dt=0.1, key=jax.random.key(3))
    b = lesde.simulate(m, t1=5.0, dt=0.1, key=jax.random.key(3))
    c = lesde.simulate(m, t1=5.0, dt=0.1, key=jax.random.key(4))
    np.testing.assert_array_equal(a.ys, b.ys)
    assert not np.allclose(a.ys, c.ys)


@pytest.mark.parametrize("solver", ["euler", "shark"])
def test_vmap_equals_members_one_by_one(solver):
    alphas = jnp.array([0.5, 1.0, 2.0, 3.0])
    sigmas = jnp.array([0.0, 0.01, 0.05, 0.1])
    keys = jax.random.split(jax.random.key(0), 4)

    def member(alpha, sigma, key):
        return lesde.simulate(
            make(alpha, sigma=sigma), t1=4.0, dt=0.05, key=key, ts=jnp.linspace(0, 4, 5),
            solver=solver,
        ).ys

    batched = jax.jit(jax.vmap(member))(alphas, sigmas, keys)
    assert batched.shape == (4, 5, K * N_PER, K)
    for i in range(4):
        single = member(alphas[i], sigmas[i], keys[i])
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)


def test_one_compilation_for_a_batch_and_new_values():
    traces = []

    def alpha_fn(t):
        traces.append(1)  # runs only while JAX traces the solve
        return 1.0 + 0.0 * t

    @jax.jit
    @jax.vmap
    def run(beta, key):
        model = lesde.LESDE(
            lesde.LocallyElastic(lesde.Function(alpha_fn), beta), "ce", CLASSES,
            noise=lesde.Noise(independent=0.05),
        )
        return lesde.simulate(model, t1=2.0, dt=0.1, key=key).ys

    keys = jax.random.split(jax.random.key(0), 6)
    run(jnp.linspace(0.0, 0.5, 6), keys)
    after_first = len(traces)
    assert after_first > 0
    out = run(jnp.linspace(0.1, 0.9, 6), keys)  # new values, same shapes: no retrace
    assert len(traces) == after_first
    assert np.isfinite(np.asarray(out)).all()


def test_simulate_does_not_recompile_for_new_parameter_values():
    traces = []

    def sigma_fn(t):
        traces.append(1)
        return 0.05 + 0.0 * t

    def run(alpha):
        m = lesde.LESDE(
            lesde.LocallyElastic(jnp.asarray(alpha), 0.1), "identity", CLASSES,
            noise=lesde.Noise(independent=lesde.Function(sigma_fn)),
        )
        return lesde.simulate(m, t1=1.0, dt=0.1, key=jax.random.key(0))

    run(1.0)
    n = len(traces)
    run(2.0)
    # the sigma(t) grid check traces sigma_fn once per call (outside the solve); the
    # solve itself must not be traced again
    assert len(traces) - n <= 1


def test_diverging_member_is_flagged_and_does_not_poison_others():
    alphas = jnp.array([1.0, 2000.0, 1.5])  # exp(2000 t / K) overflows float32
    keys = jax.random.split(jax.random.key(1), 3)

    def member(alpha, key):
        m = make(alpha, gradient="identity")
        return lesde.simulate(m, t1=5.0, dt=0.01, key=key)

    traj = jax.vmap(member)(alphas, keys)
    np.testing.assert_array_equal(np.asarray(traj.status), [0, 1, 0])
    assert list(traj.status_names()) == ["success", "diverged", "success"]
    assert not np.isfinite(np.asarray(traj.ys[1])).all()
    for i in (0, 2):
        single = member(alphas[i], keys[i])
        assert int(single.status) == 0
        np.testing.assert_allclose(traj.ys[i], single.ys, rtol=1e-5)


def test_solver_failure_is_reported_not_raised():
    ode = lesde.LEODE(lesde.LocallyElastic(1.0, 0.2), "identity", K)
    traj = lesde.simulate(
        ode, t1=10.0, dt=0.1, key=jax.random.key(0),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8), max_steps=3,
    )
    assert int(traj.status) == 2
    assert not bool(traj.succeeded)


def test_reduction_inside_the_solve_matches_saving_states():
    m = make(1.0)
    ts = jnp.linspace(0.0, 3.0, 4)
    full = lesde.simulate(m, t1=3.0, dt=0.1, key=jax.random.key(2), ts=ts)
    red = lesde.simulate(
        m, t1=3.0, dt=0.1, key=jax.random.key(2), ts=ts, fn=lesde.metrics.observables
    )
    np.testing.assert_allclose(red.ts, ts)
    for i in range(4):
        x = full.ys[i]
        np.testing.assert_allclose(red.ys["class_means"][i], CLASSES.mean(x), rtol=1e-6)
        np.testing.assert_allclose(
            red.ys["loss"][i], lesde.metrics.cross_entropy(m.logits(x), CLASSES.labels),
            rtol=1e-6,
        )


def test_noise_free_lesde_class_means_follow_the_le_ode():
    """Without noise the class means of the LE-SDE (linear model) solve the LE-ODE."""
    m = lesde.LESDE(lesde.LocallyElastic(1.2, 0.3), "projected", CLASSES)
    y0 = m.initial_state(jax.random.key(5))
    sde = lesde.simulate(m, t1=3.0, dt=0.01, y0=y0)
    ode = lesde.simulate(
        m.class_mean_ode(), t1=3.0, dt=0.01, y0=CLASSES.mean(y0), solver="euler"
    )
    np.testing.assert_allclose(CLASSES.mean(sde.ys[-1]), ode.ys[-1], rtol=1e-5, atol=1e-6)


def test_initial_state_distribution():
    m = lesde.LESDE(
        lesde.LocallyElastic(1.0, 0.0), "ce", lesde.Classes.balanced(4, 5000),
        init_mean=0.3, init_std=0.05,
    )
    x = np.asarray(m.initial_state(jax.random.key(0)))
    assert x.shape == (20000, 4)
    assert abs(x.mean() - 0.3) < 4 * 0.05 / np.sqrt(x.size)
    assert abs(x.std() - 0.05) < 0.001
