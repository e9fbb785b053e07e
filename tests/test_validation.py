"""Every bad input gets a ValueError naming the field and the value, before any solve."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde

CLASSES = lesde.Classes.balanced(3, 4)
LE = lesde.LocallyElastic(1.0, 0.2)


def model(**kw):
    args = dict(impact=LE, gradient="ce", classes=CLASSES, noise=lesde.Noise(independent=0.1))
    args.update(kw)
    return lesde.LESDE(**args)


def raises(match):
    return pytest.raises(ValueError, match=match)


# --- labels and classes -------------------------------------------------------------
def test_label_out_of_range():
    with raises(r"labels\[2\] = 3"):
        lesde.Classes([0, 1, 3], 3)
    with raises(r"labels\[0\] = -1"):
        lesde.Classes([-1, 1, 2], 3)


def test_empty_class():
    with raises(r"class\(es\) \[1\].*empty"):
        lesde.Classes([0, 0, 2, 2], 3)


def test_labels_shape_and_type():
    with raises("1-D"):
        lesde.Classes([[0, 1], [1, 0]], 2)
    with raises("integers"):
        lesde.Classes([0.5, 1.0], 2)
    with raises("num_classes"):
        lesde.Classes([0, 1], 0)


# --- impacts and schedules ----------------------------------------------------------
def test_non_square_impact():
    with raises(r"square K x K, got shape \(3, 2\)"):
        lesde.General(np.ones((3, 2)))


def test_impact_size_mismatch():
    with raises("4 x 4 but the model has num_classes = 3"):
        model(impact=lesde.General(np.eye(4)))


def test_non_finite_impact():
    with raises("alpha must be finite, got nan"):
        lesde.LocallyElastic(float("nan"), 0.0)
    with raises(r"impact matrix must be finite.*index \(0, 1\)"):
        lesde.General(np.array([[1.0, np.inf], [0.0, 1.0]]))


def test_impact_wrong_shape_schedule():
    with raises(r"alpha must be a schedule of shape \(\), got shape \(2,\)"):
        lesde.LocallyElastic(np.array([1.0, 2.0]), 0.0)


def test_bad_schedules():
    with raises("strictly increasing"):
        lesde.PiecewiseLinear([0.0, 2.0, 1.0], [1.0, 2.0, 3.0])
    with raises("one per knot"):
        lesde.PiecewiseLinear([0.0, 1.0], [1.0, 2.0, 3.0])
    with raises("t0 must be > 0"):
        lesde.PowerLaw(1.0, 0.5, t0=0.0)
    with raises("r must be finite"):
        lesde.PowerLaw(1.0, float("inf"))
    with raises("numeric"):
        lesde.Constant("fast")


# --- noise --------------------------------------------------------------------------
def test_negative_sigma():
    with raises(r"noise.independent sigma must be >= 0, got -0.1"):
        lesde.Noise(independent=-0.1)
    with raises(r"noise.shared sigma \(knot values\) must be >= 0"):
        lesde.Noise(shared=lesde.PiecewiseLinear([0.0, 1.0], [0.1, -0.2]))


def test_non_finite_sigma():
    with raises("noise.shared.*must be finite, got nan"):
        lesde.Noise(shared=float("nan"))


def test_negative_sigma_callable_checked_on_the_grid():
    m = model(noise=lesde.Noise(independent=lambda t: 0.1275 - 0.05 * t))  # < 0 after 2.55
    with raises(r"noise.independent sigma must be finite and >= 0, got sigma\(2.(6|59).* = -0.002"):
        lesde.simulate(m, t1=3.0, dt=0.1, key=jax.random.key(0))


# --- gradient models, dimensions and heads ------------------------------------------
def test_projected_needs_p_equal_K():
    with raises("projected model needs dim p = num_classes K, got dim = 5"):
        model(gradient="projected", dim=5)


def test_head_shape():
    with raises(r"head must have shape \(num_classes, dim\) = \(3, 4\), got shape \(3, 5\)"):
        model(gradient=lesde.CrossEntropy(head=np.ones((3, 5))), dim=4)
    with raises("2-D"):
        lesde.LinearCE(head=np.ones(3))
    with raises("without a head needs dim p = num_classes K"):
        model(gradient="ce", dim=7)


def test_unknown_gradient_model():
    with raises("unknown gradient model 'mse'"):
        model(gradient="mse")


def test_le_ode_refuses_cross_entropy():
    with raises("LE-ODE needs a linear gradient model.*'ce'"):
        lesde.LEODE(LE, "ce", 3)


def test_init_parameters():
    with raises("init_std must be >= 0, got -1"):
        model(init_std=-1.0)
    with raises(r"init_mean must be a scalar or a vector of length dim = 3, got shape \(2,\)"):
        model(init_mean=np.zeros(2))


# --- simulate -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(t1=1.0, dt=0.0), "dt must be > 0, got 0.0"),
        (dict(t1=1.0, dt=-0.1), "dt must be > 0"),
        (dict(t1=0.0, dt=0.1), "t1 must be > t0"),
        (dict(t1=1.0, dt=0.3), r"whole number of steps, got \(t1 - t0\) / dt = 3.33"),
        (dict(t1=float("nan"), dt=0.1), "t1 must be finite"),
        (dict(t1=jnp.asarray(1.0), dt=0.1), "t1 must be a Python number"),
        (dict(t1=1.0, dt=0.1, solver="rk4"), "unknown solver 'rk4'"),
        (dict(t1=1.0, dt=0.1, brownian="tree"), "unknown brownian 'tree'"),
        (dict(t1=1.0, dt=0.1, ts=[0.5, 2.0]), r"ts must lie in \[t0, t1\]"),
        (dict(t1=1.0, dt=0.1, ts=[0.5, 0.2]), "ts must be non-decreasing"),
        (dict(t1=1.0, dt=0.1, max_steps=0), "max_steps must be a positive integer"),
        (dict(t1=1.0, dt=0.1, fn=3), "fn must be callable"),
        (
            dict(t1=1.0, dt=0.1, stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=1e-3)),
            "brownian='fold_in' needs fixed steps",
        ),
    ],
)
def test_simulate_arguments(kw, match):
    with raises(match):
        lesde.simulate(model(), key=jax.random.key(0), **kw)


def test_y0_shape_and_values():
    with raises(r"y0 must have shape \(12, 3\), got shape \(3, 12\)"):
        lesde.simulate(model(), t1=1.0, dt=0.1, key=jax.random.key(0), y0=np.zeros((3, 12)))
    y0 = np.zeros((12, 3))
    y0[4, 1] = np.nan
    with raises(r"y0 must be finite, got nan at index \(4, 1\)"):
        lesde.simulate(model(), t1=1.0, dt=0.1, key=jax.random.key(0), y0=y0)


def test_key_required():
    with raises("key is required"):
        lesde.simulate(model(), t1=1.0, dt=0.1)


def test_not_a_model():
    with raises("model must be a lesde model"):
        lesde.simulate("ce", t1=1.0, dt=0.1, key=jax.random.key(0))


def test_fold_in_path_grid_mismatch():
    path = lesde.FoldInBrownianPath(
        model().brownian_shape(), jax.random.key(0), t0=0.0, dt=0.2, num_steps=5
    )
    with raises("does not cover the solve's grid"):
        lesde.simulate(model(), t1=1.0, dt=0.1, key=jax.random.key(0), brownian=path)
