"""The kinds of LE-SDE noise (lesde.models._noise): the built-in independent and shared
noise as registered kinds, a new kind as one class plus its registration, and the checks
of both.

A new kind used in these tests, `First`: sigma(t) dW_i^1 e_1, independent Brownian
motions that drive only the first feature coordinate of each sample. With E = 0
(alpha = beta = 0) the drift vanishes, so from X(0) = 0,

    X_{i,1}(t) ~ N(0, (sigma_ind^2 + sigma_first^2) t),   X_{i,c}(t) ~ N(0, sigma_ind^2 t)
    for c > 1, independently over samples i.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde
from lesde.models import (
    AbstractNoise,
    Independent,
    leaf_paths,
    NOISES,
    Noise,
    register_noise,
    set_at,
    Shared,
)


@pytest.fixture
def registry():
    """Registrations made by a test are undone after it."""
    saved = dict(NOISES)
    yield
    NOISES.clear()
    NOISES.update(saved)


def _define_first():
    @register_noise
    class First(AbstractNoise):
        """sigma(t) dW_i^1 e_1: noise on the first feature coordinate only."""

        name: ClassVar[str] = "first"

        def brownian_shape(self, classes, dim):
            return (classes.num_samples, dim)

        def apply(self, sigma, dw, classes):
            return sigma * dw * (jnp.arange(dw.shape[-1]) == 0)

    return First


def _model(noise, classes=lesde.Classes.balanced(3, 4), alpha=1.0, beta=0.2, **kw):
    return lesde.LESDE(lesde.LocallyElastic(alpha, beta), "identity", classes, noise=noise, **kw)


def test_levels_and_instances_build_the_same_noise_and_the_same_draws():
    by_level = _model(Noise(independent=0.1, shared=0.05))
    for noise in (Noise(Independent(0.1), Shared(0.05)),
                  Noise(shared=Shared(0.05), independent=Independent(0.1)),
                  Noise(0.1, 0.05)):
        model = _model(noise)
        assert jax.tree_util.tree_structure(model) == jax.tree_util.tree_structure(by_level)
        for solver in ("euler", "sea"):
            a, b = (lesde.simulate(m, t1=1.0, dt=0.1, key=jax.random.key(7), solver=solver,
                                   ts=jnp.linspace(0.0, 1.0, 4)).ys for m in (by_level, model))
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert isinstance(by_level.noise.level("independent"), lesde.Constant)
    assert [p for p in leaf_paths(by_level) if p.startswith("noise")] == [
        "noise.terms.independent.sigma.value", "noise.terms.shared.sigma.value"]
    assert set(by_level.brownian_shape()) == {"independent", "shared"}
    assert by_level.brownian_shape()["shared"].shape == (3, 3)
    assert Noise(independent=0.1).level("shared") is None and Noise().is_zero


def test_a_registered_noise_kind_has_the_variance_of_its_law(registry):
    first = _define_first()
    n, t = 10_000, (1.0, 2.0)  # N = 2 n samples; p = K = 2
    classes = lesde.Classes.balanced(2, n)

    def simulate(noise):
        model = _model(noise, classes, alpha=0.0, beta=0.0, init_mean=0.0, init_std=0.0)
        return model, np.asarray(lesde.simulate(
            model, t1=t[-1], dt=0.125, key=jax.random.key(3), ts=jnp.asarray(t)).ys)

    def check_variance(x, var):
        # mean of N squares of N(0, var) draws: standard deviation var sqrt(2 / N)
        np.testing.assert_allclose(np.mean(x**2), var, rtol=5 * np.sqrt(2 / x.size))

    model, ys = simulate(Noise(first=0.3))
    assert list(model.noise.terms) == ["first"]
    assert float(lesde.models.get_at(model, "noise.terms.first.sigma.value")) == pytest.approx(0.3)
    np.testing.assert_array_equal(ys[..., 1], 0.0)  # the other coordinate is not driven
    for i, ti in enumerate(t):
        check_variance(ys[i, :, 0], 0.3**2 * ti)

    model, ys = simulate(Noise(0.2, first=first(0.3)))
    assert list(model.noise.terms) == ["first", "independent"]  # in the order of the names
    for i, ti in enumerate(t):
        check_variance(ys[i, :, 0], (0.2**2 + 0.3**2) * ti)
        check_variance(ys[i, :, 1], 0.2**2 * ti)

    # a fit treats it as one more noise level: sqrt(s) sigma in the time unit t / s
    params = lesde.fit.rescale_time(lesde.fit.Parameters(model), 4.0)
    assert float(params.model.noise.level("first").value) == pytest.approx(0.6)
    spec = lesde.fit.free_parameters(params, impact=False)
    assert lesde.fit.parameter_names(params, spec) == [
        "noise.terms.first.sigma.value", "noise.terms.independent.sigma.value"]


def test_registration_checks(registry):
    first = _define_first()
    assert register_noise(first) is first  # registering the same class again is fine
    assert list(NOISES) == ["independent", "shared", "first"]

    class Other(AbstractNoise):
        name: ClassVar[str] = "first"

        def brownian_shape(self, classes, dim):
            return (1, dim)

        def apply(self, sigma, dw, classes):
            return sigma * dw

    with pytest.raises(ValueError, match=r"a noise named 'first' is registered already \(.*First\)"):
        register_noise(Other)
    with pytest.raises(ValueError, match="register_noise takes a subclass of AbstractNoise"):
        register_noise(int)
    for bad in (None, "two words", "class", ""):
        named = type("Bad", (Other,), {"name": bad})
        with pytest.raises(ValueError, match=r"Bad needs a class attribute name: ClassVar\[str\], "
                                             r"an identifier"):
            register_noise(named)

    class Half(AbstractNoise):
        name: ClassVar[str] = "half"

        def brownian_shape(self, classes, dim):
            return (1, dim)

    with pytest.raises(ValueError, match=r"Half must define \['apply'\]"):
        register_noise(Half)
    assert list(NOISES) == ["independent", "shared", "first"]

    # what Noise accepts
    with pytest.raises(ValueError, match=r"unknown noise 'half'; choose one of "
                                         r"\['independent', 'shared', 'first'\]"):
        Noise(half=0.1)
    with pytest.raises(ValueError, match=r"noise.shared must be a level or an instance of Shared"):
        Noise(shared=Independent(0.1))
    with pytest.raises(ValueError, match=r"noise.first must be a level or an instance of .*First"):
        Noise(first=Other(0.1))  # named 'first' but not the registered class
    with pytest.raises(ValueError, match=r"noise.first sigma must be >= 0, got -0.1"):
        Noise(first=-0.1)
    with pytest.raises(ValueError, match=r"noise.first sigma must be >= 0, got -0.1"):
        first(-0.1)
    # a term under another kind's name, e.g. after tree surgery
    bad = eqx.tree_at(lambda n: n.terms, Noise(0.1), {"shared": Independent(0.1)})
    with pytest.raises(ValueError, match=r"Noise.terms\['shared'\] must be the noise registered "
                                         r"as 'shared', got Independent"):
        lesde.models.check_tree(bad)


def test_registrations_are_undone():
    assert list(NOISES) == ["independent", "shared"]
    with pytest.raises(ValueError, match="unknown noise 'first'"):
        Noise(first=0.1)


@pytest.mark.parametrize("name", ["independent", "shared", "first"])
def test_set_at_refuses_a_negative_level_naming_the_noise(registry, name):
    _define_first()
    model = _model(Noise(independent=0.1, shared=0.05, first=0.2))
    path = f"noise.terms.{name}.sigma.value"
    with pytest.raises(ValueError, match=rf"^noise.{name} sigma must be >= 0, got -0.1$"):
        set_at(model, path, -0.1)
    with pytest.raises(ValueError, match=rf"^noise.{name} sigma must be finite, got nan$"):
        set_at(model, path, float("nan"))
    assert float(set_at(model, path, 0.3).noise.level(name).value) == pytest.approx(0.3)
