"""The state layouts of a solve (lesde.solve._layout), the class sums' fast path and the
short-axis reductions: every layout solves the same equation, draws standard normal
increments, and is refused where it does not apply."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde
from lesde.models._ops import axis_dot, axis_sum
from lesde.solve import ClassMajor, Natural, SampleMinor, choose_layout

LAYOUTS = ("natural", "class-major", "sample-minor")


def _model(classes, sigma=0.0, shared=0.0, alpha=1.5, beta=0.5, gradient="ce"):
    noise = lesde.Noise(
        independent=sigma if sigma else None, shared=shared if shared else None
    )
    return lesde.LESDE(lesde.LocallyElastic(alpha, beta), gradient, classes, noise=noise)


HEAD = np.array([[1.0, -0.5, 0.2, 0.3], [0.1, 0.9, -0.4, 0.0], [-0.3, 0.2, 1.1, 0.5]])


@pytest.mark.parametrize("gradient", ["ce", "ce-head", "identity", "projected", "linear-ce"])
def test_noiseless_solve_is_the_same_in_every_layout(gradient, x64):
    """Class-major computes the drift in its own layout (the gradient models'
    class_mean_class_major); sample-minor goes through (N, p). Both equal (N, p)."""
    classes = lesde.Classes.balanced(3, 5)
    if gradient == "ce-head":  # p = 4 features, logits through a 3 x 4 head
        model = lesde.LESDE(lesde.LocallyElastic(1.5, 0.5),
                            lesde.gradient_model("ce", head=HEAD), classes, dim=4)
    else:
        model = _model(classes, gradient=gradient)
    p = model.dim
    y0 = jax.random.normal(jax.random.key(0), (15, p))
    ts = jnp.linspace(0.0, 2.0, 5)

    def fn(t, x, model):
        return {"x": x, "loss": lesde.metrics.cross_entropy(model.logits(x), classes.labels)}

    kw = dict(t1=2.0, dt=0.05, y0=y0, ts=ts, fn=fn)
    ref = lesde.simulate(model, layout="natural", **kw)
    layouts = ("class-major", "sample-minor") if gradient == "ce" else ("class-major",)
    for layout in layouts:
        sol = lesde.simulate(model, layout=layout, grid_saves=gradient == "ce", **kw)
        np.testing.assert_allclose(sol.ys["x"], ref.ys["x"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(sol.ys["loss"], ref.ys["loss"], rtol=1e-12)
    if gradient == "ce":
        plain = lesde.simulate(model, t1=2.0, dt=0.05, y0=y0, layout="class-major")
        assert plain.ys.shape == (1, 15, 3)
        np.testing.assert_allclose(plain.ys[-1], ref.ys["x"][-1], atol=1e-12)


def test_gradients_agree_across_layouts(x64):
    classes = lesde.Classes.balanced(3, 4)
    y0 = jax.random.normal(jax.random.key(1), (12, 3))

    def loss(alpha, layout):
        model = _model(classes, alpha=alpha)
        x = lesde.simulate(model, t1=0.5, dt=0.1, y0=y0, layout=layout).ys[-1]
        return lesde.metrics.cross_entropy(x, classes.labels)

    grads = [jax.grad(loss)(1.5, layout) for layout in ("natural", "class-major")]
    np.testing.assert_allclose(grads, grads[0], rtol=1e-10)


@pytest.mark.parametrize("layout", ["class-major", "sample-minor"])
def test_increments_are_the_packed_draws(layout):
    """One Euler step without drift: X1 - X0 = sigma sqrt(dt) unpack(Z), Z the normal
    draw of step 0 in the packed shape from fold_in(bm_key, 0)."""
    classes = lesde.Classes.balanced(4, 6)
    model = _model(classes, sigma=0.3, alpha=0.0, beta=0.0)
    key = jax.random.key(7)
    y0 = jnp.zeros((24, 4))
    sol = lesde.simulate(model, t1=0.25, dt=0.25, key=key, y0=y0, layout=layout)
    lay = choose_layout(model, layout, user_path=False)
    _, bm_key = jax.random.split(key)
    z = jax.random.normal(jax.random.fold_in(bm_key, 0), lay.packed_shape)
    np.testing.assert_allclose(sol.ys[-1], 0.3 * 0.5 * lay.unpack(z), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pure_noise_has_variance_sigma2_t(layout):
    classes = lesde.Classes.balanced(4, 250)
    model = _model(classes, sigma=0.5, alpha=0.0, beta=0.0)
    sol = lesde.simulate(model, t1=2.0, dt=0.1, key=jax.random.key(3),
                         y0=jnp.zeros((1000, 4)), layout=layout)
    x = np.asarray(sol.ys[-1])
    # 4000 draws of N(0, 0.5): the sample variance is within 4 standard errors
    se = 0.5 * np.sqrt(2 / x.size)
    assert abs(x.var() - 0.5) < 4 * se
    assert abs(x.mean()) < 4 * np.sqrt(0.5 / x.size)
    # coordinates and classes uncorrelated: correlation of neighbouring features small
    c = np.corrcoef(x[:, 0], x[:, 1])[0, 1]
    assert abs(c) < 4 / np.sqrt(1000)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shared_noise_moves_a_class_alike(layout):
    classes = lesde.Classes.balanced(3, 5)
    model = _model(classes, shared=0.4, alpha=0.0, beta=0.0)
    sol = lesde.simulate(model, t1=1.0, dt=0.1, key=jax.random.key(4),
                         y0=jnp.zeros((15, 3)), layout=layout)
    x = np.asarray(sol.ys[-1]).reshape(3, 5, 3)
    np.testing.assert_allclose(x, np.broadcast_to(x[:, :1], x.shape), atol=1e-6)
    assert np.abs(x).max() > 0.05


def test_auto_picks_the_longest_minor_axis():
    def lay(classes, p=None):
        if p is None:
            return choose_layout(_model(classes), "auto", user_path=False)
        head = np.random.default_rng(0).normal(size=(classes.num_classes, p))
        grad = lesde.gradient_model("identity", head=head)
        model = lesde.LESDE(lesde.LocallyElastic(1.0, 0.0), grad, classes, dim=p)
        return choose_layout(model, "auto", user_path=False)

    assert isinstance(lay(lesde.Classes.balanced(3, 50)), ClassMajor)
    unbalanced = lesde.Classes(np.repeat(np.arange(3), [10, 20, 30]), 3)
    assert isinstance(lay(unbalanced), SampleMinor)
    unsorted = lesde.Classes(np.tile(np.arange(3), 20), 3)
    assert isinstance(lay(unsorted), SampleMinor)
    # n = 2 < p = 64 < N = 256: the samples of all classes make the longest axis
    assert isinstance(lay(lesde.Classes.balanced(128, 2), p=64), SampleMinor)
    # p = 64 > N = 6: keep rows
    assert isinstance(lay(lesde.Classes.balanced(3, 2), p=64), Natural)
    # a given Brownian path keeps the model's shape
    model = _model(lesde.Classes.balanced(3, 50))
    assert isinstance(choose_layout(model, "auto", user_path=True), Natural)


def test_layout_errors():
    classes = lesde.Classes(np.repeat(np.arange(3), [2, 3, 4]), 3)
    model = _model(classes, sigma=0.1)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"unknown layout 'rows'"):
        lesde.simulate(model, t1=1.0, dt=0.1, key=key, layout="rows")
    with pytest.raises(ValueError, match=r"'class-major' needs balanced classes.*\[2, 3, 4\]"):
        lesde.simulate(model, t1=1.0, dt=0.1, key=key, layout="class-major")
    path = lesde.solve.FoldInBrownianPath(model.brownian_shape(), key, 0.0, 0.1, 10)
    with pytest.raises(ValueError, match="a given Brownian path has the model's"):
        lesde.simulate(model, t1=1.0, dt=0.1, key=key, brownian=path, layout="sample-minor")
    ode = lesde.LEODE(lesde.LocallyElastic(1.0, 0.0), "identity", 3)
    with pytest.raises(ValueError, match="applies to an LESDE"):
        lesde.simulate(ode, t1=1.0, dt=0.1, key=key, layout="class-major")
    with pytest.raises(ValueError, match="layout does not apply to a discrete map"):
        lesde.simulate(lesde.SpringBlockMap(), t1=5, dt=1, key=key, layout="natural")


def test_given_path_runs_in_the_natural_layout():
    classes = lesde.Classes.balanced(3, 20)
    model = _model(classes, sigma=0.2)
    key = jax.random.key(5)
    path = lesde.solve.FoldInBrownianPath(model.brownian_shape(), key, 0.0, 0.1, 10)
    a = lesde.simulate(model, t1=1.0, dt=0.1, key=key, brownian=path)
    b = lesde.simulate(model, t1=1.0, dt=0.1, key=key, brownian=path, layout="natural")
    np.testing.assert_array_equal(a.ys, b.ys)


def test_balanced_class_sums_equal_segment_sums(x64):
    x = jax.random.normal(jax.random.key(2), (12, 5))
    fast = lesde.Classes.balanced(3, 4)
    assert fast.per_class == 4
    slow = lesde.Classes(np.repeat(np.arange(3), 4)[::-1].copy(), 3)  # unsorted labels
    assert slow.per_class is None
    np.testing.assert_allclose(fast.sum(x), np.asarray(x).reshape(3, 4, 5).sum(1), rtol=1e-14)
    np.testing.assert_allclose(fast.mean(x), np.asarray(x).reshape(3, 4, 5).mean(1), rtol=1e-14)
    v = jnp.arange(15.0).reshape(3, 5)
    np.testing.assert_array_equal(fast.gather(v), np.asarray(v)[np.repeat(np.arange(3), 4)])
    np.testing.assert_allclose(slow.sum(x[::-1]), fast.sum(x), rtol=1e-14)
    assert lesde.Classes(np.repeat(np.arange(3), [4, 4, 5]), 3).per_class is None


@pytest.mark.parametrize("n", [1, 3, 10, 40])
def test_short_axis_reductions_equal_numpy(n, x64):
    x = np.random.default_rng(n).normal(size=(7, n, 2))
    w = np.random.default_rng(n + 1).normal(size=(7, n, 2))
    for axis in (1, -2):
        np.testing.assert_allclose(axis_sum(jnp.asarray(x), axis), x.sum(axis), rtol=1e-13)
        np.testing.assert_allclose(axis_sum(jnp.asarray(x), axis, keepdims=True),
                                   x.sum(axis, keepdims=True), rtol=1e-13)
        np.testing.assert_allclose(axis_dot(jnp.asarray(x), jnp.asarray(w), axis),
                                   (x * w).sum(axis), rtol=1e-12, atol=1e-14)
