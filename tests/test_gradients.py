"""Reverse-mode gradients through `simulate` against central finite differences.

The model is built inside the differentiated function from array parameters (the
documented pattern), the solve is a fixed-step Euler solve of a noisy LE-SDE on the
default fold-in Brownian path with a fixed key (so the loss is a smooth deterministic
function of the parameters), in double precision.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import lesde

K, PER_CLASS = 3, 5
T1, DT = 1.0, 0.02  # 50 Euler steps
EPS, RTOL = 1e-6, 1e-5


def _params(kind):
    p = {"beta": 0.4, "sigma_ind": 0.3, "sigma_sh": 0.2}
    if kind == "constant":
        p["alpha"] = 1.3
    elif kind == "power-law":
        p.update(alpha=1.3, r=1.0)
    elif kind == "general":
        rng = np.random.default_rng(0)
        p = {"E": 0.5 * rng.normal(size=(K, K)) + np.diag([1.2, 1.0, 0.8]),
             "sigma_ind": 0.3, "sigma_sh": 0.2}
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in p.items()}


def _loss(params, gradient, kind):
    classes = lesde.Classes.balanced(K, PER_CLASS)
    if kind == "constant":
        impact = lesde.LocallyElastic(params["alpha"], params["beta"])
    elif kind == "power-law":
        impact = lesde.LocallyElastic(lesde.PowerLaw(params["alpha"], params["r"]),
                                      params["beta"])
    else:
        impact = lesde.General(params["E"])
    noise = lesde.Noise(independent=params["sigma_ind"], shared=params["sigma_sh"])
    model = lesde.LESDE(impact, gradient, classes, noise=noise, init_std=0.3)
    tr = lesde.simulate(model, t1=T1, dt=DT, key=jax.random.key(42), solver="euler")
    x = tr.ys[0]
    if gradient == "ce":
        return lesde.metrics.cross_entropy(model.logits(x), classes.labels)
    # identity model: a fixed weighted sum of the final state
    w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape))
    return jnp.sum(w * x)


@pytest.mark.parametrize("kind", ["constant", "power-law", "general"])
@pytest.mark.parametrize("gradient", ["ce", "identity"])
def test_gradient_matches_finite_differences(x64, gradient, kind):
    theta, unravel = ravel_pytree(_params(kind))
    assert theta.dtype == jnp.float64
    f = jax.jit(lambda th: _loss(unravel(th), gradient, kind))
    g = np.asarray(jax.jit(jax.grad(lambda th: _loss(unravel(th), gradient, kind)))(theta))
    assert np.all(np.isfinite(g))
    fd = np.empty_like(g)
    for i in range(theta.size):
        e = jnp.zeros_like(theta).at[i].set(EPS)
        fd[i] = (float(f(theta + e)) - float(f(theta - e))) / (2 * EPS)
    names = _names(_params(kind))
    # every parameter matters (so no comparison is vacuous) ...
    assert np.all(np.abs(fd) > 1e-6), dict(zip(names, fd))
    # ... and the reverse-mode gradient matches the finite differences
    np.testing.assert_allclose(g, fd, rtol=RTOL, atol=1e-9 * np.abs(fd).max(),
                               err_msg=str(names))


def _names(params):
    out = []
    for k in sorted(params):
        v = np.asarray(params[k])
        out += [k] if v.ndim == 0 else [f"{k}{idx}" for idx in np.ndindex(v.shape)]
    return out
