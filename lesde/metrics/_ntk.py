"""Local elasticity of a real network, from its empirical neural tangent kernel.

A network is a callable `f(params, x) -> logits` of shape (K,) for ONE input x (of any
shape), with `params` any pytree, typically an equinox module. Its parameters w are the
inexact-array leaves of `params` (`eqx.is_inexact_array`); every other leaf (integer
arrays, activation functions, static fields, Python numbers) is held fixed. With the
Jacobian J(x) = d f(x) / dw in R^{K x P}, the empirical neural tangent kernel is the
K x K block

    Theta(x, x') = J(x) J(x')^T,   Theta(x, x')_{ab} = sum_w d f_a(x)/dw  d f_b(x')/dw.

It is computed exactly by reverse-mode differentiation (no finite differences), a chunk
of samples at a time, so that the Jacobian of all samples is never held at once.

References: H. He and W. J. Su, "The local elasticity of neural networks", ICLR 2020;
S. Chen, H. He and W. J. Su, "Label-aware neural tangent kernel: toward better
generalization and local elasticity", NeurIPS 2020.
"""

from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from .._checks import (
    as_float_array,
    check_finite,
    check_labels,
    check_positive_int,
    is_concrete,
    show,
)

_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------- validation


def _check_batch(name: str, x: Any, one: bool = False) -> jax.Array:
    """A numeric array (n, ...) of n >= 1 inputs (`one`: a single input of any shape),
    finite on concrete input. The dtype is kept (integer inputs such as token ids are
    allowed)."""
    if not isinstance(x, jax.core.Tracer):
        a = np.asarray(x)
        if a.dtype == object or not (
            np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
        ):
            raise ValueError(f"{name} must be a numeric array, got {show(x)}")
        x = jnp.asarray(a)
    if not one and (x.ndim < 1 or x.shape[0] == 0):
        raise ValueError(
            f"{name} must be a batch of inputs of shape (n, ...) with n >= 1, got shape "
            f"{tuple(x.shape)}"
        )
    check_finite(name, x)
    return x


def _check_network(f: Any, params: Any, x_shape: tuple, x_dtype: Any) -> int:
    """Check that `params` has parameters and that f(params, x) is a vector of K >= 1
    inexact logits (by abstract evaluation, before any differentiation); return K."""
    if not callable(f):
        raise ValueError(f"f must be a callable f(params, x) -> logits, got {f!r}")
    leaves = jax.tree_util.tree_leaves(eqx.filter(params, eqx.is_inexact_array))
    if not leaves:
        raise ValueError(
            "params must contain at least one inexact-array leaf (the parameters w), got "
            "none"
        )
    arrays, static = eqx.partition(params, eqx.is_array)
    out = jax.eval_shape(
        lambda a, x: f(eqx.combine(a, static), x), arrays, jax.ShapeDtypeStruct(x_shape, x_dtype)
    )
    if (
        not isinstance(out, jax.ShapeDtypeStruct)
        or len(out.shape) != 1
        or out.shape[0] < 1
        or not jnp.issubdtype(out.dtype, jnp.inexact)
    ):
        raise ValueError(
            "f(params, x) must return a 1-D array of K >= 1 floating logits for one input "
            f"x of shape {tuple(x_shape)}, got {out}"
        )
    return int(out.shape[0])


def _check_learning_rate(learning_rate: Any) -> jax.Array:
    lr = as_float_array("learning_rate", learning_rate)
    if lr.ndim != 0:
        raise ValueError(f"learning_rate must be a scalar, got shape {tuple(lr.shape)}")
    if is_concrete(lr) and not (np.isfinite(float(lr)) and float(lr) > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {float(lr)}")
    return lr


def _check_num_classes(num_classes: Any) -> int:
    k = check_positive_int("num_classes", num_classes)
    if k < 2:
        raise ValueError(f"num_classes must be >= 2 (intra- and inter-class impacts), got {k}")
    return k


def _check_class_labels(y: Any, num_samples: int, num_classes: int) -> jax.Array:
    """Integer labels y of shape (n,) in 0..K-1 (`lesde._checks.check_labels`) with at
    least two samples per class (checked on concrete input)."""
    y = check_labels("y", y, num_samples, num_classes, match="x")
    if isinstance(y, jax.core.Tracer):
        return y
    counts = np.bincount(y, minlength=num_classes)
    few = np.flatnonzero(counts < 2)
    if few.size:
        k = int(few[0])
        raise ValueError(
            f"y must hold at least 2 samples of every class (the intra-class impact "
            f"averages over pairs of distinct samples), got {int(counts[k])} of class "
            f"{k} (class counts {counts.tolist()})"
        )
    return jnp.asarray(y, dtype=jnp.int32)


# ------------------------------------------------------------------- chunked kernel


def _logits_fn(f, params):
    """Split params into parameters w (inexact arrays) and the rest; return w and
    g(w, x) = f(params with w, x)."""
    dyn, static = eqx.partition(params, eqx.is_inexact_array)

    def logits(d, x):
        return f(eqx.combine(d, static), x)

    return dyn, logits


def _jac(logits, dyn, xs) -> list:
    """Jacobians of a chunk of c inputs, one (c, K, P_leaf) array per parameter leaf."""
    jac = jax.vmap(jax.jacrev(logits), in_axes=(None, 0))(dyn, xs)
    c = xs.shape[0]
    return [leaf.reshape(c, leaf.shape[1], -1) for leaf in jax.tree_util.tree_leaves(jac)]


def _contract(ja: list, jb: list, trace: bool) -> Array:
    """sum over leaves of Ja Jb^T: (ca, cb, K, K), or its trace over the logits (ca, cb)."""
    spec = "iap,jap->ij" if trace else "iap,jbp->ijab"
    return sum(jnp.einsum(spec, a, b, precision=_HIGHEST) for a, b in zip(ja, jb))


def _swap(theta: Array, trace: bool) -> Array:
    """Theta(x', x) from Theta(x, x') (first two axes): Theta(x', x) = Theta(x, x')^T."""
    return jnp.swapaxes(theta, 0, 1) if trace else jnp.transpose(theta, (1, 0, 3, 2))


def _chunked(x: Array, chunk_size: int) -> Array:
    """(n, ...) -> (m, c, ...): m = ceil(n / chunk_size) chunks of equal size
    c = ceil(n / m) <= chunk_size, the last padded with copies of the last input (fewer
    than m padded rows in all)."""
    n = x.shape[0]
    m = -(-n // chunk_size)
    c = -(-n // m)
    pad = m * c - n
    if pad:
        x = jnp.concatenate([x, jnp.broadcast_to(x[-1:], (pad,) + x.shape[1:])])
    return x.reshape((m, c) + x.shape[1:])


def _kernel(f, params, x1, x2, chunk_size: int, trace: bool) -> Array:
    """Theta (n1, n2, K, K), or Tr Theta (n1, n2) if `trace`, chunk pair by chunk pair
    (traceable; two nested `lax.map` loops over the chunks).

    Peak memory: two chunk Jacobians, 2 c K P numbers, plus the output. Each chunk of x1
    is differentiated once, each chunk of x2 once per chunk of x1. With x2 = None only
    the chunk pairs i <= j are computed (a `lax.switch` skips the others) and the lower
    blocks are the transposes of the upper ones."""
    dyn, logits = _logits_fn(f, params)
    sym = x2 is None
    a = _chunked(x1, chunk_size)
    b = a if sym else _chunked(x2, chunk_size)
    n1 = x1.shape[0]
    n2 = n1 if sym else x2.shape[0]

    def row(args):
        i, xa = args
        ja = _jac(logits, dyn, xa)

        def col(args):
            j, xb = args
            if not sym:
                return _contract(ja, _jac(logits, dyn, xb), trace)
            shape = (xa.shape[0], xb.shape[0]) + (() if trace else (ja[0].shape[1],) * 2)
            branches = [
                lambda xb: jnp.zeros(shape, jnp.result_type(*ja)),  # j < i: mirrored below
                lambda xb: _contract(ja, ja, trace),  # j == i
                lambda xb: _contract(ja, _jac(logits, dyn, xb), trace),  # j > i
            ]
            return jax.lax.switch(jnp.sign(j - i) + 1, branches, xb)

        return jax.lax.map(col, (jnp.arange(b.shape[0]), b))

    if a.shape[0] == b.shape[0] == 1:  # one chunk pair: no loops
        ja = _jac(logits, dyn, a[0])
        blocks = _contract(ja, ja if sym else _jac(logits, dyn, b[0]), trace)[None, None]
    else:
        blocks = jax.lax.map(row, (jnp.arange(a.shape[0]), a))  # (ma, mb, ca, cb[, K, K])
    ma, mb, ca, cb = blocks.shape[:4]
    rest = blocks.shape[4:]
    theta = jnp.transpose(blocks, (0, 2, 1, 3) + tuple(range(4, blocks.ndim)))
    theta = theta.reshape((ma * ca, mb * cb) + rest)
    if sym:
        chunk = jnp.arange(ma * ca) // ca
        lower = (chunk[:, None] > chunk[None, :]).reshape((ma * ca,) * 2 + (1,) * len(rest))
        theta = jnp.where(lower, _swap(theta, trace), theta)
        theta = (theta + _swap(theta, trace)) / 2  # exact symmetry of the diagonal blocks
    return theta[:n1, :n2]


# ------------------------------------------------------------------------ public API


def tangent_kernel(
    f: Callable,
    params: PyTree,
    x1: Array,
    x2: Array | None = None,
    *,
    chunk_size: int = 64,
) -> Float[Array, "n1 n2 K K"]:
    r"""The empirical neural tangent kernel of a network between two sets of inputs,

        Theta(x, x')_{ab} = sum_w  d f_a(x; w) / dw   d f_b(x'; w) / dw,

    i.e. Theta(x, x') = J(x) J(x')^T with J(x) = d f(x) / dw the K x P Jacobian of the
    logits with respect to the parameters w (the inexact-array leaves of `params`; other
    leaves are held fixed).

    **Method:** exact reverse-mode Jacobians (`jax.jacrev`, K vector-Jacobian products
    per input), computed for `chunk_size` inputs at a time; the kernel is assembled from
    the products of chunk Jacobians J_A J_B^T. Only two chunk Jacobians (2 c K P
    numbers) are held at once, never the n K P numbers of all inputs; the price is that
    each chunk of x2 is differentiated once per chunk of x1. With `x2=None` the kernel
    of x1 with itself is computed from the chunk pairs i <= j only, and is exactly
    symmetric, Theta(x, x') = Theta(x', x)^T. Products are taken in full precision.

    **Arguments:**
    - `f`: the network, `f(params, x) -> logits` of shape (K,) for one input x.
    - `params`: a pytree (e.g. an equinox module) holding the parameters.
    - `x1`: inputs, shape (n1, ...) (any trailing shape; finite).
    - `x2`: inputs, shape (n2, ...) with the trailing shape of x1, or None for x1.
    - `chunk_size`: the largest number of inputs differentiated at once (the chunks are
      balanced: ceil(n / chunk_size) chunks of equal size).

    **Returns:** Theta, shape (n1, n2, K, K), in the dtype of the logits; with
    `x2=None` it is positive semi-definite as an (n1 K) x (n1 K) matrix.

    Bad inputs raise a ValueError naming the argument before anything is
    differentiated.
    """
    chunk = check_positive_int("chunk_size", chunk_size)
    x1 = _check_batch("x1", x1)
    if x2 is not None:
        x2 = _check_batch("x2", x2)
        if tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
            raise ValueError(
                f"x2 must hold inputs of the shape of those in x1, {tuple(x1.shape[1:])}, "
                f"got shape {tuple(x2.shape)} for x2 (x1 has shape {tuple(x1.shape)})"
            )
    _check_network(f, params, x1.shape[1:], x1.dtype)
    return _tangent_kernel(f, params, x1, x2, chunk)


@eqx.filter_jit
def _tangent_kernel(f, params, x1, x2, chunk_size):
    return _kernel(f, params, x1, x2, chunk_size, trace=False)


class NTKImpact(eqx.Module):
    """The impact matrix of a network estimated from its tangent kernel (see
    `ntk_impact`)."""

    matrix: Float[Array, "K K"]
    """E_hat: the mean kernel impact of a class-k' sample on a class-k sample."""
    alpha: Float[Array, ""]
    """The intra-class impact, mean_k E_hat_kk."""
    beta: Float[Array, ""]
    """The inter-class impact, mean_{k != k'} E_hat_kk'."""
    ratio: Float[Array, ""]
    """The local-elasticity ratio mean_same / (mean_same + mean_between) of the
    normalised kernel over pairs of distinct samples (> 1/2: locally elastic)."""


@eqx.filter_jit
def _ntk_impact(f, params, x, y, num_classes, num_logits, lr, normalise, chunk_size):
    return _impact(_kernel(f, params, x, None, chunk_size, trace=True), y, num_classes,
                   num_logits, lr, normalise)


def _impact(tr, y, num_classes, num_logits, lr, normalise):
    dtype = tr.dtype
    d = jnp.diagonal(tr)
    tn = tr / jnp.sqrt(d[:, None] * d[None, :])

    counts = jax.ops.segment_sum(jnp.ones_like(d), y, num_segments=num_classes)
    self_pairs = jnp.diag(counts)
    pairs = counts[:, None] * counts[None, :] - self_pairs

    def class_sums(m):
        """sum over x in class k, x' in class k', x != x', of m(x, x')."""
        s = jax.ops.segment_sum(m, y, num_segments=num_classes)  # (K, n)
        s = jax.ops.segment_sum(s.T, y, num_segments=num_classes).T  # (K, K)
        return s - jnp.diag(jax.ops.segment_sum(jnp.diagonal(m), y, num_segments=num_classes))

    sums_n = class_sums(tn)
    # normalise is a traced flag: both variants share one compilation
    matrix = jnp.where(normalise, sums_n, lr.astype(dtype) * class_sums(tr / num_logits)) / pairs
    k = num_classes
    alpha = jnp.trace(matrix) / k
    beta = (jnp.sum(matrix) - jnp.trace(matrix)) / (k * (k - 1))
    same = jnp.trace(sums_n) / jnp.trace(pairs)
    between = (jnp.sum(sums_n) - jnp.trace(sums_n)) / (jnp.sum(pairs) - jnp.trace(pairs))
    ratio = same / (same + between)
    return NTKImpact(matrix=matrix, alpha=alpha, beta=beta, ratio=ratio)


def ntk_impact(
    f: Callable,
    params: PyTree,
    x: Array,
    y: Int[Array, " n"],
    num_classes: int,
    *,
    learning_rate: Any = 1.0,
    normalise: bool = False,
    chunk_size: int = 64,
) -> NTKImpact:
    r"""Estimate the LE-SDE impact matrix of a network from its empirical tangent kernel.

    With Theta the kernel of `tangent_kernel` and K the number of logits,

        E_hat_{k k'} = eta * mean_{x in class k, x' in class k', x != x'} Tr Theta(x, x') / K,
        alpha = mean_k E_hat_kk,      beta = mean_{k != k'} E_hat_kk',

    with eta = `learning_rate`. Tr Theta / K is the isotropic part of the K x K kernel
    block (Theta = (Tr Theta / K) I when the kernel treats all logits alike).

    **Why the learning rate:** one SGD step of size eta on the sample x_j,
    w+ = w - eta J(x_j)^T dL/df(x_j), changes the logits of x_i by

        f(x_i; w+) - f(x_i; w) = eta Theta(x_i, x_j) (-dL/df(x_j)) + O(eta^2),

    so eta Tr Theta(x_i, x_j) / K is the impact of that step on x_i, and E_hat is in the
    units of the LE-SDE impact matrix E(t) with time t counted in SGD steps of one sample
    each (for a step on the mean loss of a batch of B samples, pass eta / B).

    **Self-pairs are excluded:** the diagonal blocks average over pairs of distinct
    samples (n_k (n_k - 1) ordered pairs; n_k n_k' pairs off the diagonal). A pair
    (x, x) contributes the sample's own kernel norm Tr Theta(x, x) / K = |J(x)|_F^2 / K,
    which is not an impact of one sample on another: including the self-pairs would
    raise E_hat_kk by (eta S_k - E_hat_kk) / n_k, with S_k the class-k mean of
    Tr Theta(x, x) / K. By Cauchy-Schwarz, eta S_k >= E_hat_kk, so this is a bias of
    order 1/n_k towards local elasticity (alpha > beta) that shrinks only with the class
    size. Hence every class needs at least two samples.

    **Normalised kernel:** with `normalise=True`, Tr Theta(x, x') / K is replaced by the
    cosine kernel

        Tr Theta(x, x') / sqrt(Tr Theta(x, x) Tr Theta(x', x')),

    which lies in [-1, 1] and is scale-free: `learning_rate` is not applied then.

    **Local-elasticity ratio** (label-aware NTK paper), always from the normalised
    kernel, pooled over all ordered pairs of distinct samples:

        ratio = mean_same / (mean_same + mean_between),

    mean_same over the pairs with y = y', mean_between over those with y != y'. It is
    1/2 when same-class and different-class pairs have the same mean kernel, and > 1/2
    for a locally elastic network (it leaves [0, 1] if mean_between < 0).

    **Arguments:**
    - `f`, `params`: the network, as for `tangent_kernel`.
    - `x`: inputs, shape (n, ...), finite.
    - `y`: integer labels, shape (n,), in 0..K-1, at least two samples per class.
    - `num_classes`: K >= 2, a Python int (normally the number of logits).
    - `learning_rate`: eta > 0 (default 1: the kernel itself).
    - `normalise`: use the normalised kernel for `matrix`, `alpha`, `beta`.
    - `chunk_size`: as for `tangent_kernel`.

    **Returns:** an `NTKImpact` (matrix (K, K), alpha, beta, ratio). Only the traces
    Tr Theta(x, x') (an n x n matrix) are formed. A sample with zero parameter gradient
    (Tr Theta(x, x) = 0) makes the normalised quantities NaN. Bad inputs raise a
    ValueError naming the argument before anything is differentiated.
    """
    k = _check_num_classes(num_classes)
    chunk = check_positive_int("chunk_size", chunk_size)
    x = _check_batch("x", x)
    y = _check_class_labels(y, int(x.shape[0]), k)
    lr = _check_learning_rate(learning_rate)
    if not isinstance(normalise, (bool, np.bool_)):
        raise ValueError(f"normalise must be True or False, got {normalise!r}")
    num_logits = _check_network(f, params, x.shape[1:], x.dtype)
    return _ntk_impact(f, params, x, y, k, num_logits, lr, jnp.asarray(bool(normalise)), chunk)


class RelativeSimilarity(NamedTuple):
    """He and Su's similarities of one SGD step (see `relative_similarity`)."""

    relative: Float[Array, " n"]
    """S_rel(x, x') = |f(x'; w+) - f(x'; w)| / |f(x; w+) - f(x; w)|."""
    kernel: Float[Array, " n"]
    """S_ker(x, x') = <f(x'; w) - f(x'; w+), g> / (eta |g|^2), g = dL/df(x)."""


def _cross_entropy(logits, y):
    return -jax.nn.log_softmax(logits)[y]


@eqx.filter_jit
def _relative_similarity(f, params, x, y, x_other, lr, loss):
    dyn, logits = _logits_fn(f, params)
    z, pullback = jax.vjp(lambda d: logits(d, x), dyn)
    g = jax.grad(loss)(z, y)
    (grad_w,) = pullback(g)
    eta = lr.astype(z.dtype)
    dyn_plus = jax.tree_util.tree_map(lambda w, gw: (w - eta * gw).astype(w.dtype), dyn, grad_w)
    xs = jnp.concatenate([x[None], x_other])
    batch = jax.vmap(logits, in_axes=(None, 0))
    delta = batch(dyn_plus, xs) - batch(dyn, xs)  # f(.; w+) - f(.; w); row 0 is x
    s_rel = jnp.linalg.norm(delta[1:], axis=-1) / jnp.linalg.norm(delta[0])
    s_ker = -jnp.einsum("na,a->n", delta[1:], g, precision=_HIGHEST) / (eta * jnp.sum(g**2))
    return RelativeSimilarity(relative=s_rel, kernel=s_ker)


def relative_similarity(
    f: Callable,
    params: PyTree,
    x: Array,
    y: Any,
    x_other: Array,
    *,
    learning_rate: Any,
    loss: Callable | None = None,
) -> RelativeSimilarity:
    r"""He and Su's measures of local elasticity: the effect on other inputs of one SGD
    step on the single sample (x, y).

    The step, on the parameters w only (the inexact-array leaves of `params`), is

        w+ = w - eta dL(f(x; w), y)/dw = w - eta J(x)^T g,    g = dL/df(x) in R^K,

    and for each x' in `x_other`, with Delta(x') = f(x'; w+) - f(x'; w),

        S_rel(x, x') = |Delta(x')| / |Delta(x)|                (Euclidean norms over K),
        S_ker(x, x') = -<Delta(x'), g> / (eta |g|^2).

    S_ker is the vector form of He and Su's (f(x'; w) - f(x'; w+)) / (eta dL/df(x)):
    it equals it for K = 1, and since Delta(x') = -eta Theta(x', x) g + O(eta^2),

        S_ker(x, x') -> g^T Theta(x', x) g / |g|^2      as eta -> 0,

    the tangent kernel between x' and x seen along the loss gradient (for a linear model
    in w the O(eta^2) term vanishes and this holds at every eta). S_rel(x, x) = 1, and
    S_rel(x, x') = 1 means the step moves x' as much as x.

    **Arguments:**
    - `f`, `params`: the network, as for `tangent_kernel`.
    - `x`: one input (the shape f takes), finite.
    - `y`: its target: with the default loss an integer label in 0..K-1; else whatever
      `loss` takes.
    - `x_other`: inputs x', shape (n', *x.shape), finite.
    - `learning_rate`: eta > 0. The differences Delta are taken in the working
      precision: a small eta needs double precision.
    - `loss`: `loss(logits, y) -> scalar`; default the softmax cross-entropy
      -log softmax(logits)_y.

    **Returns:** a `RelativeSimilarity` named tuple (relative, kernel), each of shape
    (n',); unpacks as `s_rel, s_ker = ...`. NaN where the step does not move f(x)
    (S_rel) or the loss gradient g is 0 (S_ker). Bad inputs raise a ValueError naming
    the argument before anything is differentiated.
    """
    x = _check_batch("x", x, one=True)
    x_other = _check_batch("x_other", x_other)
    if tuple(x_other.shape[1:]) != tuple(x.shape):
        raise ValueError(
            f"x_other must have shape (n', *x.shape) = (n', {', '.join(map(str, x.shape))}), "
            f"got shape {tuple(x_other.shape)}"
        )
    lr = _check_learning_rate(learning_rate)
    num_logits = _check_network(f, params, x.shape, x.dtype)
    if loss is None:
        loss = _cross_entropy
        if not isinstance(y, jax.core.Tracer):
            a = np.asarray(y)
            if a.shape != () or a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(
                    f"y must be one integer label for the default cross-entropy loss, got "
                    f"{show(y)}"
                )
            check_labels("y", a.reshape(1), num_classes=num_logits)
        y = jnp.asarray(y, dtype=jnp.int32)
    elif not callable(loss):
        raise ValueError(f"loss must be a callable loss(logits, y) -> scalar, got {loss!r}")
    return _relative_similarity(f, params, x, y, x_other, lr, loss)
