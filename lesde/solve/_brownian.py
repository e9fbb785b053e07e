"""A fast, deterministic, differentiable Brownian path for fixed time steps."""

import math
from typing import Any

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._checks import check_positive_int


class FoldInBrownianPath(diffrax.AbstractBrownianPath):
    r"""Brownian motion on the fixed grid t_i = t0 + i dt, i = 0..num_steps.

    The increment over step i is drawn from the key `jax.random.fold_in(key, i)`:

        W(t_{i+1}) - W(t_i) = sqrt(dt) Z_i,   Z_i ~ N(0, I) from fold_in(key, i)

    With `levy_area=diffrax.SpaceTimeLevyArea` the space-time Levy area of the step is
    H_i = sqrt(dt / 12) Z'_i, with Z'_i independent of Z_i (as diffrax's paths do), for
    the stochastic Runge-Kutta solvers SEA, ShARK and SRA1.

    Unlike `diffrax.UnsafeBrownianPath`, the increments are a deterministic function of
    the step index (not of floating-point times), so the path is reproducible and can be
    differentiated in reverse mode with diffrax's default `RecursiveCheckpointAdjoint`
    (the forward pass is recomputed with the same noise). Unlike
    `diffrax.VirtualBrownianTree`, one step costs one normal draw of the state's size.

    Only increments over one grid step may be asked for: the step index is
    round((t0 - grid_t0) / dt), and the time points of `evaluate(t0, t1)` must be
    consecutive grid points. Use it with `diffrax.ConstantStepSize` (or `StepTo` on this
    grid); for adaptive steps use `diffrax.VirtualBrownianTree`.

    **Arguments:**
    - `shape`: a tuple of ints, or a PyTree of `jax.ShapeDtypeStruct`, the shape of W.
    - `key`: a JAX random key.
    - `t0`, `dt`, `num_steps`: the grid.
    - `levy_area`: `diffrax.BrownianIncrement` (default) or `diffrax.SpaceTimeLevyArea`.
    """

    shape: PyTree[jax.ShapeDtypeStruct] = eqx.field(static=True)
    levy_area: type[diffrax.BrownianIncrement | diffrax.SpaceTimeLevyArea] = eqx.field(
        static=True
    )
    key: PRNGKeyArray
    grid_t0: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)

    def __init__(
        self,
        shape: Any,
        key: PRNGKeyArray,
        t0: float,
        dt: float,
        num_steps: int,
        levy_area: type = diffrax.BrownianIncrement,
    ):
        if isinstance(shape, tuple) and all(isinstance(s, int) for s in shape):
            shape = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
        for leaf in jtu.tree_leaves(shape):
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise ValueError(f"Brownian path dtypes must be floating, got {leaf.dtype}")
        if levy_area not in (diffrax.BrownianIncrement, diffrax.SpaceTimeLevyArea):
            raise ValueError(
                "levy_area must be diffrax.BrownianIncrement or diffrax.SpaceTimeLevyArea, "
                f"got {levy_area!r}"
            )
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive finite number, got {dt!r}")
        self.shape = shape
        self.key = key
        self.grid_t0 = float(t0)
        self.dt = float(dt)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.levy_area = levy_area

    @property
    def t0(self):
        return self.grid_t0

    @property
    def t1(self):
        return self.grid_t0 + self.num_steps * self.dt

    def step_index(self, t0) -> Array:
        """The grid index i with t_i closest to `t0`."""
        return jnp.round((t0 - self.grid_t0) / self.dt).astype(jnp.int32)

    def evaluate(
        self, t0, t1=None, left: bool = True, use_levy: bool = False
    ) -> PyTree[Array] | diffrax.AbstractBrownianIncrement:
        """Increment W(t1) - W(t0) over one grid step (see the class docstring)."""
        del left
        if t1 is None:
            raise ValueError(
                "FoldInBrownianPath gives increments over one grid step only: call "
                "evaluate(t0, t1) with consecutive grid points"
            )
        t0 = eqxi.nondifferentiable(t0, name="t0")
        t1 = eqxi.nondifferentiable(t1, name="t1")
        key = jr.fold_in(self.key, self.step_index(t0))
        leaves, treedef = jtu.tree_flatten(self.shape)
        keys = jr.split(key, len(leaves)) if len(leaves) > 1 else [key]
        sqrt_dt = math.sqrt(self.dt)
        ws, hs = [], []
        for k, leaf in zip(keys, leaves):
            if self.levy_area is diffrax.SpaceTimeLevyArea:
                kw, kh = jr.split(k)
                ws.append(jr.normal(kw, leaf.shape, leaf.dtype) * sqrt_dt)
                if use_levy:
                    hs.append(jr.normal(kh, leaf.shape, leaf.dtype) * (sqrt_dt / math.sqrt(12)))
            else:
                ws.append(jr.normal(k, leaf.shape, leaf.dtype) * sqrt_dt)
        w = jtu.tree_unflatten(treedef, ws)
        if not use_levy:
            return w
        dt_arr = jnp.asarray(self.dt, dtype=leaves[0].dtype)
        if self.levy_area is diffrax.SpaceTimeLevyArea:
            return diffrax.SpaceTimeLevyArea(dt=dt_arr, W=w, H=jtu.tree_unflatten(treedef, hs))
        return diffrax.BrownianIncrement(dt=dt_arr, W=w)
