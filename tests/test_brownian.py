"""The fold-in Brownian path: law of the increments, determinism, differentiability."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde


def path(levy=diffrax.BrownianIncrement, shape=(2000, 5), dt=0.25, n=40):
    return lesde.FoldInBrownianPath(shape, jax.random.key(7), 0.0, dt, n, levy_area=levy)


def increments(p, n):
    ts = p.grid_t0 + p.dt * np.arange(n + 1)
    return np.stack([np.asarray(p.evaluate(ts[i], ts[i + 1])) for i in range(n)])


def test_increments_are_independent_normals_of_variance_dt():
    p = path()
    dw = increments(p, 40)  # 40 steps x 10000 draws
    z = dw / np.sqrt(p.dt)
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    # consecutive steps are uncorrelated
    corr = np.mean(z[1:] * z[:-1])
    assert abs(corr) < 5 / np.sqrt(z[1:].size)
    # each step differs from the others
    assert not np.allclose(dw[0], dw[1])


def test_increment_depends_only_on_the_step_index():
    p = path()
    a = p.evaluate(1.0, 1.25)
    b = p.evaluate(1.0 + 1e-7, 1.25 - 1e-7)  # float noise in the times
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, path().evaluate(1.0, 1.25))
    assert int(p.step_index(1.0)) == 4


def test_space_time_levy_area_variance():
    p = path(levy=diffrax.SpaceTimeLevyArea)
    out = p.evaluate(0.5, 0.75, use_levy=True)
    assert isinstance(out, diffrax.SpaceTimeLevyArea)
    h = np.asarray(out.H)
    w = np.asarray(out.W)
    assert abs(h.var() / (p.dt / 12) - 1) < 0.05
    assert abs(w.var() / p.dt - 1) < 0.05
    assert abs(np.mean(h * w)) / (p.dt / np.sqrt(12)) < 0.05  # independent of W
    np.testing.assert_array_equal(p.evaluate(0.5, 0.75), w)  # same W without Levy area


def test_pytree_shape():
    shape = {
        "independent": jax.ShapeDtypeStruct((4, 3), jnp.float32),
        "shared": jax.ShapeDtypeStruct((2, 3), jnp.float32),
    }
    p = lesde.FoldInBrownianPath(shape, jax.random.key(0), 0.0, 0.1, 10)
    out = p.evaluate(0.3, 0.4)
    assert out["independent"].shape == (4, 3) and out["shared"].shape == (2, 3)
    assert not np.allclose(out["independent"][:2], out["shared"])


def test_value_at_a_point_is_refused():
    with pytest.raises(ValueError, match="one grid step only"):
        path().evaluate(1.0)


def test_bad_construction():
    with pytest.raises(ValueError, match="dt must be a positive finite number"):
        lesde.FoldInBrownianPath((3,), jax.random.key(0), 0.0, 0.0, 10)
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        lesde.FoldInBrownianPath((3,), jax.random.key(0), 0.0, 0.1, 0)
    with pytest.raises(ValueError, match="levy_area"):
        lesde.FoldInBrownianPath(
            (3,), jax.random.key(0), 0.0, 0.1, 5, levy_area=diffrax.SpaceTimeTimeLevyArea
        )


def test_reverse_mode_gradient_is_the_brownian_endpoint():
    """With zero impacts X_T = X_0 + sigma W_T, so d(sum X_T)/d sigma = sum W_T exactly:
    reverse mode through diffrax (RecursiveCheckpointAdjoint) with the fold-in path."""
    classes = lesde.Classes.balanced(2, 3)
    key = jax.random.key(11)
    dt, n = 0.1, 20

    def total(sigma):
        m = lesde.LESDE(
            lesde.LocallyElastic(0.0, 0.0), "identity", classes,
            noise=lesde.Noise(independent=sigma), dim=2,
        )
        return jnp.sum(lesde.simulate(m, t1=n * dt, dt=dt, key=key, y0=jnp.zeros((6, 2))).ys)

    g = jax.grad(total)(0.3)
    bm_key = jax.random.split(key)[1]  # simulate splits key into (initial state, Brownian)
    p = lesde.FoldInBrownianPath(
        {"independent": jax.ShapeDtypeStruct((6, 2), jnp.float32)}, bm_key, 0.0, dt, n
    )
    w_T = sum(np.asarray(p.evaluate(i * dt, (i + 1) * dt)["independent"]) for i in range(n))
    np.testing.assert_allclose(g, w_T.sum(), rtol=1e-5)
    np.testing.assert_allclose(total(0.3), 0.3 * w_T.sum(), rtol=1e-5)
