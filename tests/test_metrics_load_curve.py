"""The law of data separation and load-curve statistics."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lesde import metrics as M


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.3])
def test_law_of_separation_exact_geometric_decay(rho):
    d = 3.0 * rho ** np.arange(7)
    law = M.separation_law(d)
    np.testing.assert_allclose(law.correlation, -1.0 if rho < 1 else 1.0, atol=1e-5)
    np.testing.assert_allclose(law.rho, rho, rtol=1e-5)
    np.testing.assert_allclose(np.exp(law.log_d0), 3.0, rtol=1e-5)


def test_law_of_separation_noisy_and_batched():
    rng = np.random.default_rng(0)
    d = 2.0 * 0.6 ** np.arange(10) * np.exp(0.05 * rng.normal(size=(4, 10)))
    law = jax.jit(jax.vmap(M.separation_law))(jnp.asarray(d))
    for i in range(4):
        one = M.separation_law(d[i])
        slope, intercept = np.polyfit(np.arange(10), np.log(d[i]), 1)
        np.testing.assert_allclose(one.rho, np.exp(slope), rtol=1e-4)
        np.testing.assert_allclose(one.log_d0, intercept, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(one.correlation, np.corrcoef(np.arange(10), np.log(d[i]))[0, 1], rtol=1e-5)
        np.testing.assert_allclose(law.rho[i], one.rho, rtol=1e-5)
        assert -1 < float(one.correlation) < -0.95


def test_law_of_separation_bad_input():
    with pytest.raises(ValueError, match=re.escape("fuzziness must be positive and finite, got fuzziness[2] = 0.0")):
        M.separation_law([1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="at least 2 values"):
        M.separation_law([1.0])
    assert bool(jnp.isnan(jax.jit(M.separation_law)(jnp.array([1.0, -0.5, 0.2])).rho))


def test_equal_gains_are_linear():
    lc = M.load_curve(jnp.array([0.2, 0.2, 0.2, 0.2]))
    assert float(lc.curvature) == 0.0 and float(lc.nonuniformity) == pytest.approx(0.0, abs=1e-7)
    assert int(lc.shape_code) == 0 and lc.shape_label == "linear"
    np.testing.assert_allclose(lc.gains, [0.25] * 4, rtol=1e-6)  # normalised to sum 1


def test_decreasing_gains_are_convex_increasing_concave():
    lc = M.load_curve(jnp.array([4.0, 3.0, 2.0, 1.0]))  # shallow layers gain more
    np.testing.assert_allclose(lc.gains, [0.4, 0.3, 0.2, 0.1], rtol=1e-6)
    np.testing.assert_allclose(lc.curvature, 0.3, rtol=1e-6)
    np.testing.assert_allclose(lc.nonuniformity, np.std([0.4, 0.3, 0.2, 0.1]), rtol=1e-6)
    assert lc.shape_label == "convex" and int(lc.shape_code) == 1
    lc = M.load_curve(jnp.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(lc.curvature, -0.3, rtol=1e-6)
    assert lc.shape_label == "concave"
    # the spring-block displacement-control example (friction 0.1): lazy, concave
    assert M.load_curve(jnp.array([0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4])).shape_label == "concave"


def test_tolerance_decides_linear():
    g = jnp.array([1.04, 1.0, 1.0, 0.96])  # normalised: c = 0.08 / 4 = 0.02, mean |d| = 0.25
    assert M.load_curve(g).shape_label == "linear"  # 0.02 <= 0.1 * 0.25
    assert M.load_curve(g, tol=0.05).shape_label == "convex"
    batch = M.load_curve(jnp.stack([g, g[::-1], jnp.ones(4)]), tol=0.05)
    assert list(batch.shape_label) == ["convex", "concave", "linear"]
    with pytest.raises(ValueError, match="tol must be a finite number >= 0, got -1.0"):
        M.load_curve(g, tol=-1.0)


def test_chain_gains_are_differences_from_the_wall():
    x = jnp.array([0.1, 0.3, 0.35, 0.9])
    np.testing.assert_allclose(M.position_gains(x), [0.1, 0.2, 0.05, 0.55], rtol=1e-6)
    d = jnp.array([5.0, 3.0, 2.5, 2.4])
    np.testing.assert_allclose(M.separation_gains(d), [2.0, 0.5, 0.1], rtol=1e-6)


def test_separation_and_position_forms_agree_under_the_mapping():
    # network D_0..D_L <-> chain pulled to y: x_l = y (1 - D_l / D_0), l = 1..L
    d = jnp.array([8.0, 5.0, 3.5, 3.0, 2.0])
    y = 1.7
    x = y * (1 - d[1:] / d[0])
    np.testing.assert_allclose(M.position_gains(x), y / d[0] * M.separation_gains(d), rtol=1e-6)
    a, b = M.load_curve(M.separation_gains(d)), M.load_curve(M.position_gains(x))
    for field in ("gains", "curvature", "nonuniformity", "shape_code"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-5, atol=1e-7)


def test_jit_and_vmap_and_degenerate_gains():
    g = jnp.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    batched = jax.jit(jax.vmap(M.load_curve))(g)
    for i in range(3):
        one = M.load_curve(g[i])
        for field in ("gains", "curvature", "nonuniformity", "shape_code"):
            np.testing.assert_allclose(getattr(batched, field)[i], getattr(one, field), rtol=1e-6)
    # all-zero gains stay zero: a flat, linear curve; one gain: c = v = 0
    assert batched.shape_label[2] == "linear" and float(batched.curvature[2]) == 0.0
    one = M.load_curve(jnp.array([2.0]))
    assert float(one.curvature) == 0.0 and one.shape_label == "linear"
    with pytest.raises(ValueError, match=re.escape("gains must be finite, got gains[1] = nan")):
        M.load_curve(jnp.array([1.0, jnp.nan]))
    with pytest.raises(ValueError, match="fuzziness must be an array of D_0..D_L"):
        M.separation_gains(jnp.array([1.0]))
    with pytest.raises(ValueError, match="positions must be an array of x_1..x_L"):
        M.position_gains(jnp.zeros((2, 0)))
