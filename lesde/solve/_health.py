"""Numerical health of a solve, per member and save time, computed inside the solve.

A member's result is either right or flagged. At each save time the solve records a
health code: the state is finite; the state's dynamic range has not swamped its
floating-point precision; the saved values are finite. The member's status is the
worst of its save times, and the values saved where the health is not perfect are NaN.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

SUCCESS = 0
DIVERGED = 1
SOLVER_FAILED = 2
INACCURATE = 3
STATUS_NAMES = {
    SUCCESS: "success",
    DIVERGED: "diverged",
    SOLVER_FAILED: "solver failed",
    INACCURATE: "inaccurate",
}
"""The status of a member: 0 success; 1 diverged (a non-finite state); 2 the solver
failed (e.g. max_steps reached); 3 inaccurate (the state's dynamic range swamped its
precision, or a saved value is non-finite while the state is finite)."""

PRECISION_BITS = 10
r"""Bits of precision that the finest scale of the state must keep: a save is inaccurate
where eps max|X| > 2^-PRECISION_BITS s, with s the model's `resolution_scale(X)` and eps
the machine epsilon of X's dtype (1.2e-7 in float32, 2.2e-16 in float64).

The rounding unit u = eps max|X| is then at most 2^-10 ~ 1e-3 of s, so a quantity at the
finest scale (a centred class mean, a within-class deviation) carries a rounding error of
about 1e-3 of s, and a second moment such as s^2 about 1e-6. The errors of the steps
accumulate on top: under exponential growth only the last e-fold of steps counts (about
one u), over N steps of a state that does not grow about sqrt(N / 12) u. The tests
compare float32 runs with float64 runs of the same dynamics and draws: the saves that
pass agree to 1e-3 of s, and the unflagged error grows past 1e-2 within a few e-folds
of the first flagged save."""

# Bits of the per-save health code (saved as a float: diffrax fills the saves after a
# solver failure with inf, which no valid code equals).
_NONFINITE_STATE, _IMPRECISE, _NONFINITE_VALUES = 1.0, 2.0, 4.0


def health_code(model: Any, x: Array, values: PyTree) -> Float[Array, ""]:
    """The health of one saved state `x` (in the model's own layout) and the values
    saved from it: 0 healthy, else a sum of 1 (non-finite state), 2 (eps max|X| above
    2^-PRECISION_BITS of `model.resolution_scale(x)`) and 4 (a non-finite value in an
    inexact leaf of `values`). Not differentiated (its input is stop_gradient-ed)."""
    x = jax.lax.stop_gradient(x)
    eps = jnp.finfo(x.dtype).eps
    finite = jnp.all(jnp.isfinite(x))
    largest = jnp.max(jnp.abs(x))
    scale = model.resolution_scale(x)
    precise = eps * largest * 2.0**PRECISION_BITS <= scale
    leaves = [
        jnp.all(jnp.isfinite(jax.lax.stop_gradient(v)))
        for v in jax.tree_util.tree_leaves(values)
        if jnp.issubdtype(jnp.result_type(v), jnp.inexact)
    ]
    values_finite = jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
    return (
        jnp.where(finite, 0.0, _NONFINITE_STATE)
        + jnp.where(precise | ~finite, 0.0, _IMPRECISE)
        + jnp.where(values_finite | ~finite, 0.0, _NONFINITE_VALUES)
    ).astype(jnp.float32)


def member_status(codes: Float[Array, " T"], solver_ok: Array, final_finite: Array) -> Int[Array, ""]:
    """The member's status from its save codes, whether the solver succeeded and whether
    the state at t1 is finite: solver failed > diverged > inaccurate > success."""
    diverged = ~final_finite | jnp.any(jnp.remainder(codes, 2.0) == _NONFINITE_STATE)
    inaccurate = jnp.any(codes != 0)
    status = jnp.where(inaccurate, INACCURATE, SUCCESS)
    status = jnp.where(diverged, DIVERGED, status)
    return jnp.where(solver_ok, status, SOLVER_FAILED).astype(jnp.int32)


def mask_unhealthy(values: PyTree, codes: Float[Array, " T"]) -> PyTree:
    """The saved values with every inexact leaf set to NaN at the save times whose code
    is not 0 (leaves have the save times as their leading axis; integer and boolean
    leaves are kept as they are)."""
    ok = codes == 0

    def mask(v):
        v = jnp.asarray(v)
        if not jnp.issubdtype(v.dtype, jnp.inexact):
            return v
        return jnp.where(ok.reshape(ok.shape + (1,) * (v.ndim - 1)), v, jnp.nan)

    return jax.tree_util.tree_map(mask, values)


def status_counts(status: Any) -> dict[str, int]:
    """{status name: number of members} of an array of statuses, for the names present."""
    s = np.asarray(status).ravel()
    return {name: int((s == code).sum()) for code, name in STATUS_NAMES.items() if (s == code).any()}
