"""Linear separability of labelled features: the exact linear program, its boxed
maximal-margin version, and a fast jit-able screen (nearest-class-mean error).

Features H (N x p) with labels y_i in 0..K-1 are linearly separable iff some affine
classifier h -> argmax_k (w_k . h + b_k) gets every sample right with a strict margin,
i.e. iff the linear program

    (w_{y_i} - w_k) . h_i + (b_{y_i} - b_k) >= 1    for all i and all k != y_i     (LP)

in W (K x p), b (K) with free bounds is feasible (scale any strict solution up to
margin 1). Separability is invariant under invertible affine maps of the features and
permutations of the samples.
"""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.sparse
from jaxtyping import Array, Float, Int

from ._basic import margins
from ._scatter import _check_inputs, _class_stats, _nan_unless


# ------------------------------------------------------------------------ the LP (host)


def _constraint_matrix(h: np.ndarray, y: np.ndarray, num_classes: int) -> scipy.sparse.csr_matrix:
    """Rows (i, k), k != y_i, of the N (K - 1) x K (p + 1) matrix G with
    G x = (w_{y_i} - w_k) . h_i + (b_{y_i} - b_k) for x = vec([W b]) (row-major)."""
    n, p = h.shape
    q = p + 1
    ha = np.hstack([h, np.ones((n, 1))])
    ks = np.arange(num_classes - 1)
    others = ks + (ks >= y[:, None])  # the K - 1 classes k != y_i of each sample
    rows = np.arange(n * (num_classes - 1))
    i = np.repeat(np.arange(n), num_classes - 1)
    k = others.ravel()
    cols_y = y[i, None] * q + np.arange(q)
    cols_k = k[:, None] * q + np.arange(q)
    data = np.concatenate([ha[i], -ha[i]], axis=1).ravel()
    cols = np.concatenate([cols_y, cols_k], axis=1).ravel()
    r = np.repeat(rows, 2 * q)
    return scipy.sparse.csr_matrix((data, (r, cols)), shape=(rows.size, num_classes * q))


def _status_error(res) -> RuntimeError:
    return RuntimeError(
        f"scipy.optimize.linprog(method='highs') did not decide the problem: status "
        f"{res.status} ({res.message})"
    )


def _separable_one(h: np.ndarray, y: np.ndarray, num_classes: int) -> bool:
    if num_classes == 1 or np.unique(y).size == 1:
        return True  # no constraint
    # An affine change of the features does not change feasibility; centring and scaling
    # to unit size keeps HiGHS's absolute tolerances meaningful.
    h = h - h.mean(axis=0)
    scale = np.max(np.abs(h))
    if scale > 0:
        h = h / scale
    g = _constraint_matrix(h, y, num_classes)
    res = scipy.optimize.linprog(
        np.zeros(g.shape[1]), A_ub=-g, b_ub=-np.ones(g.shape[0]),
        bounds=(None, None), method="highs",
    )
    if res.status == 0:
        return True
    if res.status == 2:
        return False
    raise _status_error(res)


def _margin_one(h: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    if num_classes == 1 or np.unique(y).size == 1:
        return float("inf")  # no constraint: t is unbounded
    g = _constraint_matrix(h, y, num_classes)
    nv = g.shape[1]
    # variables x = (vec [W b], t); maximise t subject to G x_Wb - t >= 0, |W|, |b| <= 1.
    a_ub = scipy.sparse.hstack([-g, np.ones((g.shape[0], 1))], format="csr")
    c = np.zeros(nv + 1)
    c[-1] = -1.0
    res = scipy.optimize.linprog(
        c, A_ub=a_ub, b_ub=np.zeros(g.shape[0]),
        bounds=[(-1.0, 1.0)] * nv + [(None, None)], method="highs",
    )
    if res.status != 0:
        raise _status_error(res)
    return float(res.x[-1]) + 0.0  # no -0.0


def _batched(features: Any, labels: Any, num_classes: int, one) -> Any:
    h = np.asarray(features)
    if h.ndim not in (2, 3):
        raise ValueError(
            f"features must be a 2-D (N, p) array or a batch (B, N, p), got shape {h.shape}"
        )
    batch = h if h.ndim == 3 else h[None]
    y_all = np.asarray(labels)
    if h.ndim == 3 and y_all.ndim == 2:
        if y_all.shape[0] != batch.shape[0]:
            raise ValueError(
                f"labels must have shape (N,) or (B, N) = ({batch.shape[0]}, "
                f"{batch.shape[1]}) for features of shape {h.shape}, got shape {y_all.shape}"
            )
        ys = list(y_all)
    else:
        ys = [labels] * batch.shape[0]
    out = []
    for hb, yb in zip(batch, ys):
        hj, yj, k = _check_inputs(hb, yb, num_classes, allow_empty=True)
        out.append(one(np.asarray(hj, dtype=np.float64), np.asarray(yj), k))
    return out[0] if h.ndim == 2 else np.asarray(out)


def linearly_separable(
    features: Float[Any, "*B N p"], labels: Int[Any, "*B N"], num_classes: int
) -> bool | np.ndarray:
    """Exact test of multiclass linear separability by the linear program (LP) of the
    module docstring: feasible iff there are W (K x p), b (K) with
    (w_{y_i} - w_k) . h_i + (b_{y_i} - b_k) >= 1 for all i, k != y_i.

    Solved by `scipy.optimize.linprog(method="highs")` with free bounds (None, None) and a
    zero objective (a feasibility problem with N (K - 1) sparse constraints in K (p + 1)
    unknowns), on host NumPy arrays in float64, after centring and scaling the features
    (which does not change feasibility). Not jit-able; for a traceable screen see
    `ncm_error` and `min_margin`.

    **Arguments:**
    - `features`: (N, p), or a batch (B, N, p) solved one by one.
    - `labels`: (N,) (shared by a batch) or (B, N), in 0..K-1.
    - `num_classes`: K. One class (or labels that use only one class) is separable.

    **Returns:** True/False, or a bool array of shape (B,) for a batch. Raises a
    RuntimeError if HiGHS neither finds a solution nor proves infeasibility.
    """
    return _batched(features, labels, num_classes, _separable_one)


def separation_margin(
    features: Float[Any, "*B N p"], labels: Int[Any, "*B N"], num_classes: int
) -> float | np.ndarray:
    """The continuous version of the separability LP: the maximal margin

        t* = max t  s.t.  (w_{y_i} - w_k) . h_i + (b_{y_i} - b_k) >= t  for all i, k != y_i,
                          every entry of W and b in [-1, 1],

    solved by `scipy.optimize.linprog(method="highs")` (t free). t* >= 0 (W = 0, b = 0 is
    feasible), and t* > 0 iff the features are linearly separable (scale a margin-1
    solution into the box, and conversely). t* is in the units of the features as given
    (the box is not rotation-invariant, so t* is not either; its sign is). HiGHS decides
    to about 1e-7: treat t* below ~1e-6 (relative to the feature scale) as 0.

    **Arguments:** as for `linearly_separable`.

    **Returns:** t* as a float, or an array of shape (B,) for a batch; inf when only one
    class occurs (no constraint).
    """
    return _batched(features, labels, num_classes, _margin_one)


# ------------------------------------------------------------------ fast jit-able screen


@eqx.filter_jit
def _ncm_error(h, y, num_classes):
    s = _class_stats(h, y, num_classes, "samples")
    m = s.shifted_means  # both relative to the sample mean
    # -|h - mu_k|^2 up to a per-sample constant: the nearest-class-mean "logits"
    z = 2 * s.shifted @ m.T - jnp.sum(m**2, axis=-1)
    err = jnp.mean((margins(z, y) <= 0).astype(h.dtype))
    return _nan_unless(jnp.all(s.counts > 0) & s.finite, err)


def ncm_error(
    features: Float[Array, "N p"], labels: Int[Array, " N"], num_classes: int
) -> Float[Array, ""]:
    """Nearest-class-mean training error: the fraction of samples i that are not strictly
    nearer (Euclidean) to their own class mean mu_{y_i} than to every other class mean
    (a tie counts as an error).

    A sufficient screen for separability: the NCM classifier is affine,
    argmax_k (2 mu_k . h - |mu_k|^2), so error 0 implies linear separability (the converse
    fails: separable data can have NCM error > 0). Cost O(N p K); jit- and vmap-able
    (K static). Every class needs a sample (ValueError naming the empty classes on
    concrete labels, NaN under `jit`); non-finite features: ValueError on concrete input,
    NaN under `jit`. 0 for K = 1.
    """
    h, y, k = _check_inputs(features, labels, num_classes, allow_empty=False)
    return _ncm_error(h, y, k)
