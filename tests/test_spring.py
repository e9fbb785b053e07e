"""The spring-block model: both variants against the exact results of the spec."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import lesde
from lesde.metrics import load_curve


def elongations_at(model, steps, key=None, **kw):
    traj = lesde.simulate(model, t1=steps, dt=1, key=key or jax.random.key(0), **kw)
    return np.asarray(model.chain.elongations(traj.ys[-1]))


# --- Variant A without noise: closed forms ---------------------------------------------


@pytest.mark.parametrize("eta", [0.1, 0.01])
def test_noiseless_displacement_control_reaches_the_closed_form(x64, eta):
    model = lesde.SpringBlockMap(7, noise=0.0, eta=eta)  # the authors' k, y, mu
    d = elongations_at(model, int(100 / eta))
    expected = lesde.spring_equilibrium(7, stiffness=1.0, mu=0.1, load=1.0)
    np.testing.assert_allclose(expected, [0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4], atol=1e-15)
    # the spec allows O(eta); the dead-zone map stops exactly at |F_l| = mu
    np.testing.assert_allclose(d, expected, atol=1e-9)


@pytest.mark.parametrize("L, k, mu, F", [(7, 1.0, 0.1, 0.35), (5, 2.0, 0.05, 0.3), (3, 0.5, 0.2, 0.1)])
def test_noiseless_force_control_reaches_the_closed_form(x64, L, k, mu, F):
    model = lesde.SpringBlockMap(L, stiffness=k, mu_fwd=mu, noise=0.0, load=F, control="force")
    d = elongations_at(model, 20_000)
    depth = L - np.arange(1, L + 1) + 1
    np.testing.assert_allclose(d, np.maximum(0, F - depth * mu) / k, atol=1e-9)
    np.testing.assert_allclose(lesde.spring_equilibrium(L, stiffness=k, mu=mu, load=F, control="force"), d, atol=1e-9)


@pytest.mark.parametrize("L, y, k", [(1, 1.0, 1.0), (3, 2.0, 0.5), (7, 1.0, 1.0)])
def test_frictionless_chain_relaxes_to_equal_elongations(x64, L, y, k):
    model = lesde.SpringBlockMap(L, stiffness=k, mu_fwd=0.0, noise=0.0, load=y, eta=0.05)
    d = elongations_at(model, 40_000)
    np.testing.assert_allclose(d, np.full(L + 1, y / (L + 1)), rtol=1e-9)
    curve = load_curve(d[:L])
    assert abs(float(curve.curvature)) < 1e-9 and curve.shape_label == "linear"


def test_equilibrium_closed_form_by_hand():
    # two springs stretch: 2 c - mu / k = y, so c = 0.55 and d = [0, 0, 0.05, 0.55]
    d = lesde.spring_equilibrium(3, mu=0.5, load=0.6)
    np.testing.assert_allclose(d, [0, 0, 0.05, 0.55], atol=1e-12)
    assert np.isclose(d.sum(), 0.6)
    np.testing.assert_allclose(lesde.spring_equilibrium(4, mu=0.0, load=2.0), np.full(5, 0.4))


# --- Variant A with noise: rectification ----------------------------------------------


@pytest.mark.parametrize("F", [-0.3, 0.0, 0.05, 0.4])
def test_rectified_velocity_equals_the_gaussian_integral(F):
    s, a, b = 0.7, 0.1, 0.3

    def phi_map(f):
        return f - a if f > a else f + b if f < -b else 0.0

    exact, _ = integrate.quad(lambda z: phi_map(F + s * z) * stats.norm.pdf(z), -12, 12, points=[(-b - F) / s, (a - F) / s], limit=200)
    assert np.isclose(lesde.rectified_velocity(F, s, a, b), exact, rtol=1e-9, atol=1e-12)


def test_rectified_push_at_zero_force_is_h_fwd_minus_h_back():
    s, a, b = 0.5, 0.1, 0.25

    def h(c):
        return s * stats.norm.pdf(c / s) - c * stats.norm.sf(c / s)

    push = lesde.rectified_velocity(0.0, s, a, b)
    assert np.isclose(push, h(a) - h(b), rtol=1e-12) and push > 0
    assert lesde.rectified_velocity(0.0, s, a, a) == pytest.approx(0.0, abs=1e-15)


def shaken_elongations(model, seeds=64, steps=12_000, burn_in=4_000):
    """Time averages (after burn-in) of the elongations, one per seed: (seeds, L+1)."""
    ts = np.arange(burn_in, steps + 1, 20)

    def one(key):
        traj = lesde.simulate(
            model, t1=steps, dt=1, key=key, ts=ts, fn=lambda t, x, m: m.chain.elongations(x)
        )
        return traj.ys.mean(0)

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(11), seeds)))


def test_strong_symmetric_noise_gives_a_linear_load_curve():
    L, s, mu = 7, 1.0, 0.1
    d = shaken_elongations(lesde.SpringBlockMap(L, noise=s, mu_fwd=mu))
    se = d.std(0) / np.sqrt(len(d))
    assert np.all(np.abs(d.mean(0) - 1 / (L + 1)) < 4 * se + 1e-3)
    slopes = np.polyfit(np.arange(L + 1), d.T, 1)[0]  # one slope per seed
    assert abs(slopes.mean()) < 4 * slopes.std() / np.sqrt(len(slopes))
    assert load_curve(d.mean(0)[:L]).shape_label == "linear"


def test_asymmetric_noise_gives_the_rectified_convex_slope():
    L, k, s, fwd, back = 7, 1.0, 1.0, 0.1, 0.3
    d = shaken_elongations(lesde.SpringBlockMap(L, stiffness=k, noise=s, mu_fwd=fwd, mu_back=back))
    predicted = lesde.stationary_gains(L, stiffness=k, noise=s, mu_fwd=fwd, mu_back=back)
    f_star = predicted[1] - predicted[0]  # = F* / k, from v(F*) = 0
    assert lesde.rectified_velocity(f_star * k, s, fwd, back) == pytest.approx(0, abs=1e-10)
    assert f_star < 0  # the push forwards is balanced by springs pulling back
    slopes = np.polyfit(np.arange(L + 1), d.T, 1)[0]
    se = slopes.std() / np.sqrt(len(slopes))
    assert abs(slopes.mean() - f_star) < 4 * se, (slopes.mean(), f_star, se)
    se_d = d.std(0) / np.sqrt(len(d))
    assert np.all(np.abs(d.mean(0) - predicted) < 4 * se_d + 2e-3)
    assert load_curve(d.mean(0)[:L]).shape_label == "convex"


# --- Variant B --------------------------------------------------------------------------


def energy_run(model, t1=40.0, dt=0.01):
    ts = np.linspace(0, t1, 4001)
    y0 = jnp.stack([jnp.linspace(0.3, -0.2, model.num_blocks), jnp.linspace(-0.1, 0.2, model.num_blocks)])
    traj = lesde.simulate(
        model, t1=t1, dt=dt, y0=y0, key=jax.random.key(0), ts=ts, solver="tsit5",
        fn=lambda t, y, m: (m.energy(y), jnp.sum(y[1] ** 2)),
    )
    energy, v2 = (np.asarray(a) for a in traj.ys)
    return ts, energy, v2


@pytest.mark.parametrize("control", ["displacement", "force"])
def test_langevin_without_noise_and_friction_only_loses_energy_to_damping(x64, control):
    gamma, m = 0.3, 2.0
    model = lesde.SpringBlockSDE(
        5, stiffness=0.7, mass=m, damping=gamma, mu_fwd=0.0, mu_back=0.0, noise=0.0,
        load=0.4, control=control,
    )
    ts, energy, v2 = energy_run(model)
    dissipated = gamma * integrate.cumulative_simpson(v2, x=ts, initial=0.0)
    np.testing.assert_allclose(energy - energy[0], -dissipated, atol=1e-6 * energy[0])
    assert np.all(np.diff(energy) <= 1e-12)
    assert energy[-1] < 0.5 * energy[0]


def test_langevin_without_damping_conserves_energy(x64):
    model = lesde.SpringBlockSDE(
        4, stiffness=1.3, damping=0.0, mu_fwd=0.0, mu_back=0.0, noise=0.0, load=1.0
    )
    _, energy, _ = energy_run(model)
    np.testing.assert_allclose(energy, energy[0], rtol=1e-8)


@pytest.mark.parametrize("control", ["displacement", "force"])
def test_spring_force_is_minus_the_gradient_of_the_potential(x64, control):
    chain = lesde.Chain(6, stiffness=0.8, load=0.7, control=control)
    x = jnp.asarray(np.random.default_rng(0).normal(size=6))
    np.testing.assert_allclose(chain.force(x), -jax.grad(chain.potential)(x), rtol=1e-12)


@pytest.mark.parametrize("kind, variance_blocks", [("common", 5), ("independent", 1)])
def test_shaking_noise_covariance(kind, variance_blocks):
    L, eps, dt = 5, 0.2, 0.01
    model = lesde.SpringBlockSDE(L, noise=eps, decay=0.0, noise_kind=kind, load=0.0)
    y0 = jnp.zeros((2, L))  # at rest, no load: the drift vanishes, one step is pure noise

    def one(key):
        return lesde.simulate(model, t1=dt, dt=dt, y0=y0, key=key).ys[-1, 1]

    n = 20_000
    v = np.asarray(jax.vmap(one)(jax.random.split(jax.random.key(2), n)))
    cov = np.cov(v.T)
    expected = variance_blocks * eps**2 * dt
    tol = 5 * np.sqrt(2 / n) * expected
    assert np.all(np.abs(np.diag(cov) - expected) < tol)
    off = cov[~np.eye(L, dtype=bool)]
    if kind == "common":  # one shaking floor: the same increment on every block
        np.testing.assert_allclose(v, np.repeat(v[:, :1], L, axis=1), rtol=1e-6)
    else:
        assert np.all(np.abs(off) < tol)


def test_noise_decays_exponentially():
    model = lesde.SpringBlockSDE(noise=0.003, decay=0.001)
    assert float(model.sigma(700.0)) == pytest.approx(0.003 * np.exp(-0.7), rel=1e-6)


def test_kinetic_friction_and_its_smoothed_form():
    f = lesde.Friction(0.3, 0.5)
    v = jnp.array([-2.0, -1e-9, 0.0, 1e-9, 2.0])
    np.testing.assert_allclose(f.kinetic(v), [-0.5, -0.5, 0.0, 0.3, 0.3])
    smooth = np.asarray(f.kinetic(v, jnp.asarray(1e-3)))
    np.testing.assert_allclose(smooth[[0, 2, 4]], [-0.5, 0.0, 0.3], atol=1e-6)
    np.testing.assert_allclose(f.dead_zone(jnp.array([-0.6, -0.5, 0.0, 0.3, 0.4])), [-0.1, 0, 0, 0, 0.1], atol=1e-7)


# --- gradients ----------------------------------------------------------------------------


def central_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name", ["eta", "stiffness", "noise", "load"])
def test_map_gradient_matches_finite_differences(x64, name):
    base = dict(eta=0.05, stiffness=1.2, noise=0.5, load=1.0)
    key = jax.random.key(4)

    def extension(value):
        model = lesde.SpringBlockMap(5, mu_fwd=0.1, mu_back=0.2, **{**base, name: value})
        return lesde.simulate(model, t1=300, dt=1, key=key).ys[-1, -1]

    x = jnp.asarray(base[name])
    grad = jax.grad(extension)(x)
    assert float(grad) == pytest.approx(float(central_difference(extension, x)), rel=1e-5)


def test_smoothed_langevin_gradient_in_friction_matches_finite_differences(x64):
    key = jax.random.key(5)

    def extension(mu):
        model = lesde.SpringBlockSDE(5, mu_fwd=mu, mu_back=1.5 * mu, noise=0.01, smoothing=0.01)
        return lesde.simulate(model, t1=50.0, dt=0.05, key=key).ys[-1, 0, -1]

    mu = jnp.asarray(0.02)
    assert float(jax.grad(extension)(mu)) == pytest.approx(float(central_difference(extension, mu)), rel=1e-5)


# --- batching, keys, saving ---------------------------------------------------------------


@pytest.mark.parametrize(
    "model, t1, dt",
    [(lesde.SpringBlockMap(4, noise=0.3), 200, 1), (lesde.SpringBlockSDE(4, noise=0.05), 10.0, 0.05)],
    ids=["map", "sde"],
)
def test_batched_equals_one_by_one_and_keys_reproduce(model, t1, dt):
    keys = jax.random.split(jax.random.key(3), 5)

    def solve(key):
        return lesde.simulate(model, t1=t1, dt=dt, key=key).ys[-1]

    batched = np.asarray(jax.vmap(solve)(keys))
    single = np.stack([np.asarray(solve(k)) for k in keys])
    np.testing.assert_allclose(batched, single, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(solve(keys[0])), np.asarray(solve(keys[0])))
    assert not np.allclose(batched[0], batched[1])


def test_map_parameters_batch_under_vmap():
    mus = jnp.array([0.0, 0.1, 0.2])

    def solve(mu):
        model = lesde.SpringBlockMap(7, mu_fwd=mu, noise=0.0, eta=0.05)
        return model.chain.elongations(lesde.simulate(model, t1=8000, dt=1, key=jax.random.key(0)).ys[-1])

    d = np.asarray(jax.vmap(solve)(mus))
    for mu, row in zip([0.0, 0.1, 0.2], d):
        np.testing.assert_allclose(row, lesde.spring_equilibrium(7, mu=mu), atol=1e-5)


def test_map_saves_at_uneven_steps_without_changing_the_path():
    model = lesde.SpringBlockMap(3, noise=0.4)
    key = jax.random.key(8)
    saved = lesde.simulate(model, t1=100, dt=1, key=key, ts=[0, 3, 10, 11, 50, 100])
    np.testing.assert_array_equal(np.asarray(saved.ts), [0, 3, 10, 11, 50, 100])
    np.testing.assert_array_equal(np.asarray(saved.ys[0]), np.zeros(3))
    for i, n in enumerate([3, 10, 100]):
        direct = lesde.simulate(model, t1=n, dt=1, key=key).ys[-1]
        np.testing.assert_allclose(saved.ys[[1, 2, 5][i]], direct, rtol=1e-6, atol=1e-7)
    assert int(saved.status) == 0


def test_map_flags_divergence():
    model = lesde.SpringBlockMap(3, eta=3.0, mu_fwd=0.0, noise=0.0)  # eta k > 1: unstable
    traj = lesde.simulate(model, t1=2000, dt=1, key=jax.random.key(0))
    assert traj.status_names() == "diverged"


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: lesde.SpringBlockMap(0), r"num_blocks must be a positive integer, got 0"),
        (lambda: lesde.SpringBlockMap(stiffness=-1.0), r"stiffness must be > 0, got -1.0"),
        (lambda: lesde.SpringBlockMap(mu_fwd=-0.1), r"mu_fwd must be >= 0, got -0.1"),
        (lambda: lesde.SpringBlockMap(mu_back=-0.2), r"mu_back must be >= 0, got -0.2"),
        (lambda: lesde.SpringBlockMap(noise=-1.0), r"noise must be >= 0, got -1.0"),
        (lambda: lesde.SpringBlockMap(noise=float("nan")), r"noise must be finite, got nan"),
        (lambda: lesde.SpringBlockMap(eta=0.0), r"eta must be > 0, got 0.0"),
        (lambda: lesde.SpringBlockMap(load=float("inf")), r"load must be finite, got inf"),
        (lambda: lesde.SpringBlockMap(control="torque"), r"control must be one of .* got 'torque'"),
        (lambda: lesde.SpringBlockMap(noise=[0.1, 0.2]), r"noise must be a scalar, got shape \(2,\)"),
        (lambda: lesde.SpringBlockSDE(mass=0.0), r"mass must be > 0, got 0.0"),
        (lambda: lesde.SpringBlockSDE(damping=-1.0), r"damping must be >= 0, got -1.0"),
        (lambda: lesde.SpringBlockSDE(decay=-0.1), r"decay must be >= 0, got -0.1"),
        (lambda: lesde.SpringBlockSDE(smoothing=0.0), r"smoothing must be > 0, got 0.0"),
        (lambda: lesde.SpringBlockSDE(noise_kind="floor"), r"noise_kind must be one of"),
        (lambda: lesde.SpringBlockSDE(stiffness=float("nan")), r"stiffness must be finite"),
        (lambda: lesde.stationary_gains(7, noise=0.0, mu_fwd=0.1), r"noise must be > 0, got 0.0"),
        (lambda: lesde.spring_equilibrium(7, mu=-1.0), r"mu must be >= 0, got -1.0"),
    ],
)
def test_bad_parameters_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(t1=100, dt=0.5), r"dt must be 1 and t1 the number of steps, got dt = 0.5"),
        (dict(t1=100, dt=1, solver="heun"), r"solver does not apply to a discrete map"),
        (dict(t1=100, dt=1, ts=[1.5, 3]), r"whole step numbers"),
        (dict(t1=100, dt=1, ts=[3, 200]), r"whole step numbers in \[0, 100\]"),
        (dict(t1=100.5, dt=1), r"whole number of steps"),
    ],
)
def test_map_solve_arguments_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        lesde.simulate(lesde.SpringBlockMap(), key=jax.random.key(0), **kw)
