"""Numerical LE-ODE solutions against the exact closed forms (spec: "The LE-ODE").

The LE-ODE dXbar_k/dt = -(1/K) sum_k' E_kk'(t) G(Xbar_k', k') is solved by `simulate`
with a high-order Runge-Kutta method (Tsit5) on a fine, dyadic grid that contains every
knot of the piecewise-linear schedules (so the right-hand side is smooth on every step),
in double precision, and compared with `closed_form` to rtol 1e-8.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import lesde

T1 = 2.0
DT = 2.0**-6  # knots below lie on this grid
KS = [2, 3, 5, 10]
RTOL, ATOL = 1e-8, 1e-10


def _extra(variants):
    """Each (K, model) pair costs one compilation of the solve (about a second): the
    extra impact/head variants run for one K each by default (together covering all of
    KS) and for every K with -m slow."""
    out = []
    for impact, default_k in variants:
        for K in KS:
            marks = () if K == default_k else (pytest.mark.slow,)
            out.append(pytest.param(K, impact, marks=marks, id=f"{K}-{impact}"))
    return out


def _xbar0(K, p, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(K, p)))


def _impact(kind, K=None, seed=0):
    if kind == "constant":
        return lesde.LocallyElastic(1.6, 0.4)
    if kind == "time-varying":
        # alpha a power law, beta piecewise linear with knots from t = 0.25 (extrapolated
        # constantly before), changing sign, and constant after t = 1.5 < T1.
        return lesde.LocallyElastic(
            lesde.PowerLaw(2.0, 0.7, t0=0.5),
            lesde.PiecewiseLinear([0.25, 0.75, 1.5], [0.5, -0.3, 0.9]),
        )
    rng = np.random.default_rng(seed)
    if kind == "general":
        return lesde.General(rng.normal(size=(K, K)))
    if kind == "general-piecewise":
        return lesde.General(
            lesde.PiecewiseLinear([0.25, 1.0, 1.5], rng.normal(size=(3, K, K)))
        )
    raise ValueError(kind)


def _solve(model, xbar0, ts=None):
    tr = lesde.simulate(model, t1=T1, dt=DT, y0=xbar0, ts=ts, solver="tsit5")
    assert int(tr.status) == 0
    return tr.ys


@pytest.mark.parametrize("impact", ["constant", "time-varying"])
@pytest.mark.parametrize("K", KS)
def test_identity_closed_form(x64, K, impact):
    model = lesde.LEODE(_impact(impact), "identity", K)
    x0 = _xbar0(K, K, K)
    got = _solve(model, x0)[0]
    want = lesde.closed_form(model, x0, T1)
    assert want.shape == (K, K)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("impact", ["constant", "time-varying"])
@pytest.mark.parametrize("K", KS)
def test_projected_closed_form(x64, K, impact):
    model = lesde.LEODE(_impact(impact), "projected", K)
    x0 = _xbar0(K, K, 100 + K)
    ts = jnp.linspace(0.0, T1, 9)
    xs = _solve(model, x0, ts=ts)
    got = lesde.projected_coordinates(xs[-1])
    want = lesde.closed_form(model, x0, T1)
    assert want.shape == (K,)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # the closed form also holds along the way
    want_t = jnp.stack([lesde.closed_form(model, x0, t) for t in ts])
    np.testing.assert_allclose(lesde.projected_coordinates(xs), want_t, rtol=RTOL, atol=ATOL)
    # the component of each class mean along the all-ones vector never moves
    ones = np.asarray(xs).sum(axis=-1)  # <Xbar_k(t), 1>, shape (T, K)
    np.testing.assert_allclose(ones, np.broadcast_to(np.asarray(x0).sum(-1), ones.shape),
                               rtol=0, atol=1e-12)
    # and that is not trivially so: the class means do move
    assert np.max(np.abs(np.asarray(xs[-1] - x0))) > 1e-2


def _check_linear_ce(K, impact):
    model = lesde.LEODE(_impact(impact, K, seed=K), "linear-ce", K)
    x0 = _xbar0(K, K, 200 + K)
    got = _solve(model, x0)[0]
    want = lesde.closed_form(model, x0, T1)
    assert want.shape == (K, K)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    if impact in ("constant", "time-varying"):
        # locally elastic: Xbar_k(t) = Xbar_k(0) + ((A - B)/K) d_k (W = I)
        imp = model.impact
        A, B = imp.alpha.integral(T1), imp.beta.integral(T1)
        d = lesde.simplex_directions(K)
        np.testing.assert_allclose(got, x0 + (A - B) / K * d, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("impact", ["constant", "time-varying"])
@pytest.mark.parametrize("K", KS)
def test_linear_ce_closed_form(x64, K, impact):
    _check_linear_ce(K, impact)


@pytest.mark.parametrize(("K", "impact"), _extra([("general", 3), ("general-piecewise", 10)]))
def test_linear_ce_general_closed_form(x64, K, impact):
    _check_linear_ce(K, impact)


@pytest.mark.parametrize(
    ("K", "impact"), _extra([("time-varying", 5), ("general-piecewise", 2)])
)
def test_linear_ce_head_closed_form(x64, K, impact):
    """A non-identity head W of shape (K, p) with p != K."""
    p = K + 2 if impact == "time-varying" else max(1, K - 1)
    W = jnp.asarray(np.random.default_rng(300 + K).normal(size=(K, p)))
    model = lesde.LEODE(_impact(impact, K, seed=K), lesde.LinearCE(head=W), K)
    assert model.state_shape == (K, p)
    x0 = _xbar0(K, p, 400 + K)
    got = _solve(model, x0)[0]
    want = lesde.closed_form(model, x0, T1)
    assert want.shape == (K, p)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # independent form of the exact solution: Xbar(t) = Xbar(0) + (1/K) [int_0^t E] D W
    D = np.eye(K) - 1.0 / K
    if impact == "time-varying":
        imp = model.impact
        A, B = float(imp.alpha.integral(T1)), float(imp.beta.integral(T1))
        intE = (A - B) * np.eye(K) + B * np.ones((K, K))
    else:
        intE = np.asarray(model.impact.schedule.integral(T1))
    np.testing.assert_allclose(got, np.asarray(x0) + intE @ D @ np.asarray(W) / K,
                               rtol=RTOL, atol=ATOL)


def test_closed_form_time_zero_is_identity(x64):
    for grad in ("identity", "linear-ce"):
        model = lesde.LEODE(_impact("time-varying"), grad, 4)
        x0 = _xbar0(4, 4, 1)
        np.testing.assert_allclose(lesde.closed_form(model, x0, 0.0), x0, rtol=1e-14)
    model = lesde.LEODE(_impact("time-varying"), "projected", 4)
    np.testing.assert_allclose(
        lesde.closed_form(model, x0, 0.0), lesde.projected_coordinates(x0), rtol=1e-14
    )
