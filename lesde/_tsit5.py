"""Tsit5 with its stages written out, the LE-ODE's default solver (below models/, which
names it as the LE-ODE's default, and solve/, which exports it as
`lesde.solve.UnrolledTsit5`)."""

import diffrax
import jax
import jax.numpy as jnp
import jax.tree_util as jtu


def _combine(y, coeffs, ks):
    """y + sum_j coeffs[j] k_j (leaf-wise over pytrees; zero coefficients skipped)."""
    terms = [(float(c), k) for c, k in zip(coeffs, ks) if c != 0]
    if not terms:
        return y

    def leaf(y_leaf, *k_leaves):
        out = y_leaf
        for (c, _), k in zip(terms, k_leaves):
            out = out + jnp.asarray(c, k.dtype) * k
        return out

    return jtu.tree_map(leaf, y, *(k for _, k in terms))


class UnrolledTsit5(diffrax.Tsit5):
    r"""Tsitouras' 5(4) Runge-Kutta method (diffrax's `Tsit5`: the same tableau, error
    estimate, first-same-as-last stage and 5th-order dense interpolation) with its seven
    stages written out in the step instead of run by diffrax's checkpointed stage loop.

    One step from (t0, y0) with h = t1 - t0 and k_i = h f(t0 + c_i h, Y_i):

        Y_1 = y0,  Y_i = y0 + sum_{j < i} a_ij k_j,
        y1 = y0 + sum_i b_i k_i,  error = sum_i (b_i - b*_i) k_i,

    with f(t1, y1) carried to the next step (FSAL). For ordinary differential equations
    only (a single drift term). On the small states of the LE-ODE the stage loop's
    bookkeeping dominates the reverse pass; written out, a reverse-mode gradient through
    a solve costs about 30-40% less (`benchmarks/bench_fit.py`). Results agree with
    `diffrax.Tsit5` to rounding.
    """

    def init(self, terms, t0, t1, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        tab = self.tableau
        control = terms.contr(t0, t1)
        f0 = jax.lax.cond(
            made_jump, lambda: terms.vf(t0, y0, args), lambda: solver_state
        )
        ks = [terms.prod(f0, control)]
        h = t1 - t0
        f = f0
        for a_i, c_i in zip(tab.a_lower, tab.c):
            yi = _combine(y0, a_i, ks)
            f = terms.vf(t0 + float(c_i) * h, yi, args)
            ks.append(terms.prod(f, control))
        # Tsit5 is first-same-as-last: the last stage is taken at (t1, y1), so y1 is its
        # input and f (its vector field) starts the next step.
        y1 = _combine(y0, tab.b_sol, ks)
        y_error = _combine(jtu.tree_map(jnp.zeros_like, y0), tab.b_error, ks)
        k = jtu.tree_map(lambda *xs: jnp.stack(xs), *ks)
        dense_info = dict(y0=y0, y1=y1, k=k)
        return y1, y_error, dense_info, f, diffrax.RESULTS.successful
