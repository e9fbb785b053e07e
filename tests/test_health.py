"""Numerical health: a member whose state lost its precision, diverged, or saved a
non-finite value is flagged, and its saved values are NaN; float32 results that pass
are checked against float64 reference runs of the same dynamics and draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde
from lesde.solve import DIVERGED, INACCURATE, PRECISION_BITS, SUCCESS

K, N_PER = 3, 50
CLASSES = lesde.Classes.balanced(K, N_PER)
TIMES = np.arange(2.5, 70.01, 2.5)


def _within(t, x, m):
    c = m.classes
    return {"within": jnp.mean(jnp.sum((x - c.gather(c.mean(x))) ** 2, axis=-1))}


def _y0():
    rng = np.random.default_rng(0)
    return 0.05 * rng.standard_normal((K * N_PER, K))


def _within_np(states):
    """Tr Sigma_W of saved states (T, N, p), in float64 numpy."""
    x = np.asarray(states, np.float64).reshape(len(states), K, N_PER, K)
    return ((x - x.mean(axis=2, keepdims=True)) ** 2).sum(-1).mean(axis=(1, 2))


def _identity(noise=None):
    return lesde.LESDE(lesde.LocallyElastic(1.0, 0.2), "identity", CLASSES, noise=noise)


def _solve(model, *, fn, brownian="fold_in", key=None):
    y0 = jnp.asarray(_y0(), jnp.result_type(float))
    return lesde.simulate(model, t1=70.0, dt=0.05, y0=y0, ts=TIMES, fn=fn, key=key,
                          brownian=brownian, layout="natural")


def _reference():
    """float64 states and Tr Sigma_W of the noiseless identity LE-SDE."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        traj = _solve(_identity(), fn=None)
        return np.asarray(traj.ys), np.asarray(traj.status), np.asarray(traj.valid)
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="compares float32 with a float64 reference")
def test_swamped_float32_is_flagged_and_what_passes_matches_float64():
    """alpha = 1, beta = 0.2, K = 3: the common mode grows as exp(0.47 t) while the
    within-class spread stays put (no noise), so float32 loses it near t = 40."""
    ref_states, ref_status, ref_valid = _reference()
    ref = _within_np(ref_states)
    # exact: the drift is the same for every sample of a class, so Tr Sigma_W is constant
    np.testing.assert_allclose(ref, ref[0], rtol=1e-4)  # float64 keeps 8 bits at t = 70
    assert ref_status == SUCCESS and ref_valid.all()

    traj = _solve(_identity(), fn=_within)
    raw = _within_np(_solve(_identity(), fn=None).ys)  # the same solve, states unmasked
    got = np.asarray(traj.ys["within"], np.float64)
    valid = np.asarray(traj.valid)
    assert int(traj.status) == INACCURATE
    assert valid[0] and not valid[-1]
    first_bad = int(np.argmin(valid))
    assert valid[:first_bad].all() and not valid[first_bad:].any()  # the range only grows
    # what passes agrees with float64 to 1e-3; what is flagged is NaN
    np.testing.assert_allclose(got[valid], ref[valid], rtol=1e-3)
    assert np.isnan(got[~valid]).all()
    # not flagged too early: within 15 time units (7 e-folds of the common mode) of the
    # first flagged save the unmasked float32 value is off by more than 1%
    err = np.abs(raw / ref - 1)
    soon = (TIMES >= TIMES[first_bad]) & (TIMES <= TIMES[first_bad] + 15)
    assert err[soon].max() > 1e-2
    assert err[:first_bad].max() < 1e-3


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="compares float32 with a float64 reference")
def test_noisy_float32_against_float64_with_the_same_draws():
    """With noise: both precisions are driven by the same float32 Brownian increments,
    so they differ only by rounding; every save that passes agrees to 1e-3."""
    noise = lesde.Noise(independent=0.05)
    shape = {"independent": jax.ShapeDtypeStruct((K * N_PER, K), jnp.float32)}

    def run():
        path = lesde.FoldInBrownianPath(shape, jax.random.key(3), 0.0, 0.05, 1400)
        traj = _solve(_identity(noise), fn=None, brownian=path)
        return _within_np(traj.ys), np.asarray(traj.valid), int(traj.status)

    got, valid, status = run()
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        ref, ref_valid, ref_status = run()
    finally:
        jax.config.update("jax_enable_x64", old)
    assert ref_status == SUCCESS and ref_valid.all()
    assert status == INACCURATE and valid[0] and not valid[-1]
    np.testing.assert_allclose(got[valid], ref[valid], rtol=1e-3)
    assert np.abs(got[~valid] / ref[~valid] - 1).max() > 1e-2


def test_leode_common_mode_swamps_the_class_means():
    """The LE-ODE's class means against the common mode: flagged once their spread is
    below 2^-PRECISION_BITS of eps max|X|; what passes matches the closed form."""
    model = lesde.LEODE(lesde.LocallyElastic(1.0, -0.4), "identity", K)  # common mode decays
    grow = lesde.LEODE(lesde.LocallyElastic(1.0, 0.45), "identity", K)  # rate 0.63 vs 0.18
    y0 = jnp.asarray(np.random.default_rng(1).standard_normal((K, K)), jnp.result_type(float))
    ts = np.arange(5.0, 100.1, 5.0)  # the spread falls as exp(-0.45 t) against the mode:
    for m, expect in ((model, SUCCESS), (grow, INACCURATE)):  # below float64's eps too
        traj = lesde.simulate(m, t1=100.0, dt=0.1, y0=y0, ts=ts, fn=lambda t, x, m: {"x": x})
        assert int(traj.status) == expect
        exact = np.stack([np.asarray(lesde.closed_form(m, y0, t), np.float64) for t in ts])
        v = np.asarray(traj.valid)
        got = np.asarray(traj.ys["x"], np.float64)
        centred = exact - exact.mean(axis=-2, keepdims=True)
        scale = np.sqrt((centred**2).sum(-1).mean(-1))  # the LE-ODE's resolution scale
        err = np.abs((got - got.mean(axis=-2, keepdims=True)) - centred).max(axis=(1, 2))
        assert (err[v] <= 1e-3 * scale[v]).all()  # to 1e-3 of the finest scale
        assert np.isnan(got[~v]).all()


def test_diverged_member_reports_nan_metrics_not_chance_accuracy():
    """A member whose state overflows reports NaN accuracy and loss (not 1/K) from the
    first save where its state is non-finite, and keeps the saves before it."""
    m = lesde.LESDE(lesde.LocallyElastic(60.0, 0.0), "identity", CLASSES,
                    noise=lesde.Noise(independent=0.1))
    ts = jnp.asarray([0.5, 1.0, 6.0, 8.0])
    traj = lesde.simulate(m, t1=8.0, dt=0.01, key=jax.random.key(0), ts=ts,
                          fn=lesde.metrics.metrics_fn(["accuracy", "loss"]))
    assert int(traj.status) == DIVERGED
    acc = np.asarray(traj.ys["accuracy"])
    assert np.isfinite(acc[0]) and np.isnan(acc[-1]) and np.isnan(np.asarray(traj.ys["loss"])[-1])


# diffrax allocates its save buffers filled with inf, which the integer leaf cannot hold
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_nonfinite_value_of_a_finite_state_is_inaccurate():
    def fn(t, x, m):
        return {"ok": jnp.mean(x), "bad": jnp.where(t > 1.5, jnp.log(-jnp.abs(x[0, 0]) - 1), 0.0),
                "count": jnp.sum(x > 0)}

    m = lesde.LESDE(lesde.LocallyElastic(1.0, 0.0), "ce", CLASSES)
    traj = lesde.simulate(m, t1=2.0, dt=0.1, key=jax.random.key(0), ts=jnp.asarray([1.0, 2.0]), fn=fn)
    assert int(traj.status) == INACCURATE
    assert np.asarray(traj.valid).tolist() == [True, False]
    ok = np.asarray(traj.ys["ok"])
    assert np.isfinite(ok[0]) and np.isnan(ok[1])  # every inexact value of the save is NaN
    assert np.asarray(traj.ys["count"]).dtype.kind == "i"  # integer values are kept


def test_health_inside_a_vmapped_batch_and_on_grid_saves():
    """Each member of a batch carries its own status; `grid_saves` gives the same."""

    def run(alpha, grid):
        m = lesde.LESDE(lesde.LocallyElastic(alpha, 0.2), "identity", CLASSES)
        return lesde.simulate(m, t1=70.0, dt=0.05, y0=jnp.asarray(_y0(), jnp.result_type(float)),
                              ts=TIMES, fn=_within, grid_saves=grid)

    alphas = jnp.asarray([-0.4, 1.0])
    for grid in (False, True):
        traj = jax.jit(jax.vmap(lambda a: run(a, grid)))(alphas)
        expect = [SUCCESS, SUCCESS if jax.config.jax_enable_x64 else INACCURATE]
        assert np.asarray(traj.status).tolist() == expect
        assert np.isfinite(np.asarray(traj.ys["within"])[0]).all()


def test_spring_map_default_health():
    traj = lesde.simulate(lesde.SpringBlockMap(), t1=200, dt=1, key=jax.random.key(0),
                          fn=lambda t, x, m: {"gains": m.gains(x)})
    assert int(traj.status) == SUCCESS and bool(traj.valid.all())


@pytest.mark.parametrize("bits, healthy", [(PRECISION_BITS + 0.5, True), (PRECISION_BITS - 0.5, False)])
def test_precision_threshold(bits, healthy):
    """A state whose within-class spread is 2^bits rounding units of its largest entry."""
    from lesde.solve._health import health_code

    dtype = jnp.result_type(float)
    eps = float(jnp.finfo(dtype).eps)
    d = np.tile([[1.0, -1.0, 0.0]], (K * N_PER // 2 * 2, 1))[: K * N_PER]  # spread sqrt(2)...
    d[1::2] *= -1
    big = np.sqrt(2.0) / (eps * 2.0**bits)  # ... against max|X| = big + 1
    x = jnp.asarray(big + d, dtype)
    m = _identity()
    spread = float(m.resolution_scale(x))
    assert spread == pytest.approx(np.sqrt(2.0), rel=1e-2)
    code = float(health_code(m, x, {"v": jnp.zeros(())}))
    assert code == (0.0 if healthy else 2.0)


def test_status_names():
    assert lesde.solve.STATUS_NAMES[INACCURATE] == "inaccurate"
    assert lesde.solve.status_counts(np.array([0, 3, 3, 1])) == {
        "success": 1, "diverged": 1, "inaccurate": 2,
    }
