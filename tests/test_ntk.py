"""Empirical tangent kernel, its impact matrix and He-Su relative similarity: closed forms
for a linear model, an explicit Jacobian for an MLP, chunking, non-parameter leaves and
input validation."""

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lesde import metrics as M

P_IN, K = 4, 3


# Module-level networks, so that compiled kernels are shared between tests; data from
# NumPy (float64 under x64, else float32), so that no eager JAX op needs compiling.


def apply(module, x):
    return module(x)


def apply_dict(params, x):
    return params["W"] @ x + params["b"]


def normal(rng, *shape):
    return rng.normal(size=shape).astype(np.float64 if jax.config.jax_enable_x64 else np.float32)


def linear_dict(rng, p=P_IN, k=K):
    return {"W": normal(rng, k, p), "b": normal(rng, k)}, apply_dict


def with_normal_weights(rng, make, *args, **kwargs):
    """An equinox module built abstractly (no random initialisation to compile), its
    array leaves then drawn from N(0, 1) by NumPy."""
    shapes = eqx.filter_eval_shape(make, *args, **kwargs, key=jax.random.key(0))
    return jax.tree_util.tree_map(
        lambda s: normal(rng, *s.shape) if isinstance(s, jax.ShapeDtypeStruct) else s, shapes
    )


def linear_module(rng, p=P_IN, k=K):
    return with_normal_weights(rng, eqx.nn.Linear, p, k), apply


def mlp(rng, p=P_IN, k=K):
    net = with_normal_weights(rng, eqx.nn.MLP, p, k, width_size=6, depth=2, activation=jnp.tanh)
    return net, apply


def explicit_kernel(f, params, x1, x2):
    """J(x1) J(x2)^T from jax.jacrev on the ravelled parameters, shape (n1, n2, K, K)."""
    dyn, static = eqx.partition(params, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(dyn)

    @jax.jit
    @jax.vmap
    def jac(x):
        return jax.jacrev(lambda w: f(eqx.combine(unravel(w), static), x))(flat)

    j = np.asarray(jac(np.concatenate([x1, x2])), np.float64)  # (n1 + n2, K, P)
    return np.einsum("iap,jbp->ijab", j[: len(x1)], j[len(x1) :])


def closed_form_impact(x, y, k, lr, normalise):
    """E_hat, alpha, beta, ratio for Theta(x, x') = (x.x' + 1) I_K, from the definitions:
    loops over the pairs of distinct samples, in float64 NumPy."""
    x = np.asarray(x, np.float64)
    gram = x @ x.T + 1  # Tr Theta / K
    d = np.diag(gram)
    cos = gram / np.sqrt(np.outer(d, d))
    kern = cos if normalise else lr * gram
    n = len(y)
    e = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            vals = [kern[i, j] for i in range(n) for j in range(n)
                    if y[i] == a and y[j] == b and i != j]
            e[a, b] = np.mean(vals)
    alpha = np.mean(np.diag(e))
    beta = (e.sum() - np.trace(e)) / (k * (k - 1))
    same = np.mean([cos[i, j] for i in range(n) for j in range(n) if i != j and y[i] == y[j]])
    diff = np.mean([cos[i, j] for i in range(n) for j in range(n) if y[i] != y[j]])
    return e, alpha, beta, same / (same + diff)


# ------------------------------------------------------------------------ linear model


@pytest.mark.parametrize("make", [linear_dict, linear_module])
def test_linear_kernel_is_gram_plus_one_times_identity(make):
    rng = np.random.default_rng(0)
    params, f = make(rng)
    x1, x2 = normal(rng, 5, P_IN), normal(rng, 7, P_IN)
    theta = M.tangent_kernel(f, params, x1, x2, chunk_size=3)
    assert theta.shape == (5, 7, K, K)
    expected = (x1 @ x2.T + 1)[:, :, None, None] * np.eye(K)
    np.testing.assert_allclose(theta, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalise", [False, True])
def test_linear_impact_equals_closed_form(normalise, x64):
    rng = np.random.default_rng(1)
    params, f = linear_dict(rng)
    y = np.array([0, 1, 2, 2, 0, 1, 2, 1, 2, 0, 2, 1])  # imbalanced: 3, 4, 5
    x = normal(rng, len(y), P_IN)
    lr = 0.3
    out = M.ntk_impact(f, params, x, y, K, learning_rate=lr, normalise=normalise, chunk_size=5)
    assert isinstance(out, M.NTKImpact) and out.matrix.shape == (K, K)
    e, alpha, beta, ratio = closed_form_impact(x, y, K, lr, normalise)
    np.testing.assert_allclose(out.matrix, e, rtol=1e-10)
    np.testing.assert_allclose(out.alpha, alpha, rtol=1e-10)
    np.testing.assert_allclose(out.beta, beta, rtol=1e-10)
    np.testing.assert_allclose(out.ratio, ratio, rtol=1e-10)


def test_self_pairs_are_excluded(x64):
    """By hand: including the self-pairs would change the diagonal."""
    params, f = linear_dict(np.random.default_rng(2), k=2)
    y = np.array([0, 0, 1, 1])
    x = np.array([[1.0, 0, 0, 0], [0.5, 0, 0, 0], [0, 2.0, 0, 0], [0, 1.0, 0, 0]])
    out = M.ntk_impact(f, params, x, y, 2)
    # x.x' + 1 over distinct pairs: class 0: 1.5, class 1: 3, between classes: 1
    np.testing.assert_allclose(out.matrix, [[1.5, 1.0], [1.0, 3.0]], rtol=1e-12)
    np.testing.assert_allclose([out.alpha, out.beta], [2.25, 1.0], rtol=1e-12)


# --------------------------------------------------------------------------------- MLP


def test_mlp_kernel_matches_explicit_jacobian(x64):
    rng = np.random.default_rng(3)
    params, f = mlp(rng)
    x1, x2 = normal(rng, 9, P_IN), normal(rng, 4, P_IN)
    np.testing.assert_allclose(
        M.tangent_kernel(f, params, x1, x2, chunk_size=3), explicit_kernel(f, params, x1, x2),
        rtol=1e-10, atol=1e-12,
    )
    np.testing.assert_allclose(
        M.tangent_kernel(f, params, x1, chunk_size=3), explicit_kernel(f, params, x1, x1),
        rtol=1e-10, atol=1e-12,
    )


def test_mlp_kernel_symmetric_psd_chunk_independent_and_its_impact(x64):
    rng = np.random.default_rng(4)
    params, f = mlp(rng)
    n = 9
    x = normal(rng, n, P_IN)
    thetas = [np.asarray(M.tangent_kernel(f, params, x, chunk_size=c)) for c in (1, 3, 64)]
    for t in thetas[1:]:
        np.testing.assert_allclose(t, thetas[0], rtol=1e-10, atol=1e-12)
    t = thetas[1]
    np.testing.assert_array_equal(t, np.transpose(t, (1, 0, 3, 2)))  # exactly symmetric
    eig = np.linalg.eigvalsh(np.transpose(t, (0, 2, 1, 3)).reshape(n * K, n * K))
    assert eig.min() >= -1e-6 * eig.max()  # PSD up to rounding

    # ntk_impact: averages of Tr Theta / K over pairs of distinct samples
    y = np.array([0, 1, 2] * 3)
    out = M.ntk_impact(f, params, x, y, K, learning_rate=0.5)
    tr = np.trace(thetas[2].astype(np.float64), axis1=2, axis2=3)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    e = np.array([[np.mean([tr[i, j] / K for i, j in pairs if y[i] == a and y[j] == b])
                   for b in range(K)] for a in range(K)])
    np.testing.assert_allclose(out.matrix, 0.5 * e, rtol=1e-10)
    d = np.diag(tr)
    cos = tr / np.sqrt(np.outer(d, d))
    same = np.mean([cos[i, j] for i, j in pairs if y[i] == y[j]])
    diff = np.mean([cos[i, j] for i, j in pairs if y[i] != y[j]])
    np.testing.assert_allclose(out.ratio, same / (same + diff), rtol=1e-10)


# ---------------------------------------------------------------- non-parameter leaves


class Permuted(eqx.Module):
    weight: jax.Array
    bias: jax.Array
    perm: jax.Array  # integer array: not a parameter
    act: Callable  # function: not a parameter
    scale: float = eqx.field(static=True)

    def __call__(self, x):
        return self.scale * self.act(self.weight @ x[self.perm] + self.bias)


def test_non_parameter_leaves_are_ignored(x64):
    rng = np.random.default_rng(5)
    net = Permuted(
        weight=normal(rng, K, P_IN), bias=normal(rng, K), perm=np.array([2, 0, 3, 1]),
        act=jnp.tanh, scale=2.0,
    )
    x = normal(rng, 5, P_IN)
    theta = M.tangent_kernel(apply, net, x, chunk_size=64)
    np.testing.assert_allclose(theta, explicit_kernel(apply, net, x, x), rtol=1e-10, atol=1e-12)
    s = M.relative_similarity(apply, net, x[0], 1, x, learning_rate=0.1)
    assert np.isfinite(s.relative).all() and np.isfinite(s.kernel).all()


# ----------------------------------------------------------------- relative similarity


def test_relative_similarity_linear_model(x64):
    rng = np.random.default_rng(6)
    params, f = linear_dict(rng)
    x = normal(rng, P_IN)
    others = np.concatenate([x[None], normal(rng, 5, P_IN)])
    gram = others @ x + 1  # Theta(x', x) = (x.x' + 1) I
    for eta in (1e-6, 0.5):  # linear in w: exact at every step size
        s_rel, s_ker = M.relative_similarity(f, params, x, 2, others, learning_rate=eta)
        np.testing.assert_allclose(s_ker, gram, rtol=1e-8)
        np.testing.assert_allclose(s_rel, np.abs(gram) / gram[0], rtol=1e-8)
        np.testing.assert_allclose(s_rel[0], 1.0, rtol=1e-12)


def test_relative_similarity_kernel_limit_mlp(x64):
    rng = np.random.default_rng(7)
    params, f = mlp(rng)
    x, y = normal(rng, P_IN), 1
    others = np.concatenate([x[None], normal(rng, 4, P_IN)])  # x itself first
    g = np.asarray(jax.jit(jax.grad(lambda z: -jax.nn.log_softmax(z)[y]))(f(params, x)))
    theta = np.asarray(M.tangent_kernel(f, params, others, x[None]))[:, 0]  # (n', K, K)
    limit = np.einsum("a,nab,b->n", g, theta, g) / (g @ g)
    near = M.relative_similarity(f, params, x, y, others, learning_rate=1e-7)
    np.testing.assert_allclose(near.kernel, limit, rtol=1e-5, atol=1e-8)
    far = M.relative_similarity(f, params, x, y, others, learning_rate=1.0)
    assert not np.allclose(far.kernel, limit, rtol=1e-5)  # a finite step differs at O(eta)
    np.testing.assert_allclose(near.relative[0], 1.0, rtol=1e-12)  # S_rel(x, x) = 1
    np.testing.assert_allclose(far.relative[0], 1.0, rtol=1e-12)


def test_relative_similarity_one_logit_reduces_to_he_su(x64):
    """K = 1, squared loss: S_ker = (f(x', w) - f(x', w+)) / (eta dL/df(x))."""
    rng = np.random.default_rng(8)
    params, f = mlp(rng, k=1)
    x, others, target, eta = normal(rng, P_IN), normal(rng, 3, P_IN), np.array([0.7]), 0.05

    def loss(z, t):
        return 0.5 * jnp.sum((z - t) ** 2)

    out = M.relative_similarity(f, params, x, target, others, learning_rate=eta, loss=loss)

    @eqx.filter_jit
    def reference(params):
        dyn, static = eqx.partition(params, eqx.is_inexact_array)
        grads = jax.grad(lambda d: loss(f(eqx.combine(d, static), x), target))(dyn)
        plus = eqx.combine(jax.tree_util.tree_map(lambda w, gw: w - eta * gw, dyn, grads), static)
        before = jax.vmap(lambda xi: f(params, xi)[0])(others)
        after = jax.vmap(lambda xi: f(plus, xi)[0])(others)
        dldf = f(params, x)[0] - target[0]
        step_x = jnp.abs(f(plus, x)[0] - f(params, x)[0])
        return (before - after) / (eta * dldf), jnp.abs(after - before) / step_x

    s_ker, s_rel = reference(params)
    np.testing.assert_allclose(out.kernel, s_ker, rtol=1e-9)
    np.testing.assert_allclose(out.relative, s_rel, rtol=1e-9)


# -------------------------------------------------------------------------- bad inputs


def _bad_impact_cases():
    x = np.random.default_rng(0).normal(size=(6, P_IN)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    nan_x = x.copy()
    nan_x[3, 1] = np.nan
    return [
        ("y", dict(x=x, y=np.array([0, 0, 1, 1, 2, 3]))),  # label out of range
        ("y", dict(x=x, y=np.array([0, 0, 1, 1, 1, 2]))),  # class 2 has one sample
        ("y", dict(x=x, y=y.astype(float) + 0.5)),  # not integers
        ("x", dict(x=nan_x, y=y)),
        ("num_classes", dict(x=x, y=np.zeros(6, int), num_classes=1)),
        ("learning_rate", dict(x=x, y=y, learning_rate=-1.0)),
        ("chunk_size", dict(x=x, y=y, chunk_size=0)),
    ]


@pytest.mark.parametrize("field,kwargs", _bad_impact_cases())
def test_ntk_impact_rejects_bad_inputs(field, kwargs):
    params, f = linear_dict(np.random.default_rng(9))
    kwargs = {"num_classes": K, **kwargs}
    with pytest.raises(ValueError, match=field):
        M.ntk_impact(f, params, **kwargs)


def test_other_bad_inputs_are_named():
    params, f = linear_dict(np.random.default_rng(10))
    x = np.ones((3, P_IN), np.float32)
    with pytest.raises(ValueError, match="x2"):
        M.tangent_kernel(f, params, x, np.ones((3, P_IN + 1)))
    with pytest.raises(ValueError, match="x1"):
        M.tangent_kernel(f, params, np.ones((0, P_IN)))
    with pytest.raises(ValueError, match="params"):
        M.tangent_kernel(f, {"W": np.ones((K, P_IN), int)}, x)
    with pytest.raises(ValueError, match="f"):
        M.tangent_kernel(lambda p, x: p["W"] @ jnp.outer(x, x), params, x)  # not 1-D
    with pytest.raises(ValueError, match="y"):
        M.relative_similarity(f, params, x[0], K, x, learning_rate=0.1)  # label K
    with pytest.raises(ValueError, match="x_other"):
        M.relative_similarity(f, params, x[0], 0, x[:, :2], learning_rate=0.1)
    with pytest.raises(ValueError, match="x"):
        M.relative_similarity(f, params, x[0] * np.nan, 0, x, learning_rate=0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        M.relative_similarity(f, params, x[0], 0, x, learning_rate=0.0)
