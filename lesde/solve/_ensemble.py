r"""`lesde.simulate_ensemble`: one model from a batch of initial states, with the
trials on the minor axis of the state.

An ensemble of B trials of a small model (the LE-ODE of K = 3 class means has 9
numbers) solved as `jax.vmap` over `simulate` stores the batch as (B, *state): every
vector operation of a step then runs along the state's own short minor axis, and the
step costs microseconds whatever B. The trial-minor layout stores it as (*state, B),

    z[..., b] = X_b,   dz/dt = f'(t, z),   f'(t, z)[..., b] = f(t, z[..., b]),

with f' the model's `trial_minor_drift` (the LE-ODE computes it row by row along the
trials), and steps it with Euler in a `jax.lax.fori_loop`:

    z_{i+1} = z_i + dt f'(t_i, z_i),   t_i = t0 + i dt.

Each trial's arithmetic is that of `simulate` with `solver='euler'` (to rounding: sums
over the short axes may be taken in another order), the trials never mix, and the save
times, the status of each member and the masking of unhealthy saves are those of
`jax.vmap` over `simulate`.
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._checks import as_float_array, check_finite, is_concrete
from ..models._base import AbstractDynamics, AbstractMap
from ._health import health_code, mask_unhealthy, member_status
from ._layout import choose_layout
from ._simulate import (
    _check_ts, _check_y0_fn, _grid, _grid_index, _solver, advance_and_save, simulate,
    Trajectory,
)

ENSEMBLE_LAYOUTS = ("auto", "vmap", "trial-minor")


def _trial_minor_refusal(model, solver, saves_on_grid, options) -> str | None:
    """Why the trial-minor path cannot solve this ensemble (None if it can)."""
    name = type(model).__name__
    if isinstance(model, AbstractMap):
        return f"{name} is a discrete map; the trial-minor path integrates ODEs"
    if model.brownian_shape() is not None:
        return (f"{name} has noise; the trial-minor path integrates ODEs (models whose "
                "brownian_shape() is None)")
    chosen = _solver(solver, model)
    if not isinstance(chosen, diffrax.Euler):
        return (f"the trial-minor path steps with Euler: pass solver='euler' (got "
                f"{type(chosen).__name__}" + (f", the default of {name})" if solver is None
                                                else ")"))
    if options:
        return (f"the options {sorted(options)} apply to simulate's solve only; the "
                "trial-minor path takes none")
    if not saves_on_grid:
        return "the trial-minor path saves at grid times t0 + i dt only; ts are not all on it"
    return None


def choose_ensemble_layout(
    model: Any,
    num_trials: int,
    layout: str = "auto",
    *,
    solver: str | diffrax.AbstractSolver | None = None,
    saves_on_grid: bool = True,
    options: tuple[str, ...] = (),
) -> str:
    """The path `simulate_ensemble` takes for `num_trials` trials of `model`: 'vmap'
    (`jax.vmap` over `simulate`, the batch as (B, *state)) or 'trial-minor' (the batch
    as (*state, B), Euler in a loop).

    'auto' picks 'trial-minor' when it applies (an ODE model, `solver` Euler, save
    times on the step grid (`saves_on_grid`), no further `simulate` options named in
    `options`) and the batch is longer than the minor axis `simulate` gives one member
    (`lesde.solve.choose_layout`: p for the LE-ODE, up to N for an LE-SDE without
    noise), else 'vmap'. A forced 'trial-minor' that does not apply raises a ValueError
    that says why.
    """
    if layout not in ENSEMBLE_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {list(ENSEMBLE_LAYOUTS)}")
    if layout == "vmap":
        return "vmap"
    refusal = _trial_minor_refusal(model, solver, saves_on_grid, options)
    if layout == "trial-minor":
        if refusal is not None:
            raise ValueError(f"layout 'trial-minor' does not apply: {refusal}")
        return "trial-minor"
    if refusal is not None:
        return "vmap"
    packed = choose_layout(model).packed_shape
    member_minor = packed[-1] if packed else 1
    return "trial-minor" if num_trials > member_minor else "vmap"


def simulate_ensemble(
    model: AbstractDynamics,
    y0s: Any,
    *,
    t1: float,
    dt: float,
    t0: float = 0.0,
    ts: Any = None,
    fn: Callable[[Any, Array, AbstractDynamics], PyTree] | None = None,
    solver: str | diffrax.AbstractSolver | None = None,
    key: PRNGKeyArray | None = None,
    layout: str = "auto",
    **options: Any,
) -> Trajectory:
    r"""Solve `model` from each of a batch of initial states: the same result as
    `jax.vmap` over `lesde.simulate(model, y0=y0, ...)`, computed with the trials on
    the minor axis of the state where that is faster.

    For each trial b, X_b(t0) = y0s[b] and dX_b = f(t, X_b) dt on the grid
    t_i = t0 + i dt (Euler: X_b(t_{i+1}) = X_b(t_i) + dt f(t_i, X_b(t_i))). With B
    trials of a small state (the LE-ODE's K x p) the trial-minor layout (*state, B) runs
    every vector operation along the B trials, several times faster on CPU than B
    members of (K, p) vmapped (see `choose_ensemble_layout`).

    **Arguments:**
    - `model`: any `AbstractDynamics` (the trial-minor path needs an ODE: no noise);
      shared by all trials (vmap `simulate` yourself to batch model parameters).
    - `y0s`: initial states, shape (B, *model.state_shape), finite.
    - `t1`, `dt`, `t0`, `ts`, `fn`: as for `simulate` (`fn(t, X, model)` sees one
      trial's X).
    - `solver`: as for `simulate` (default: the model's `default_solver()`, 'tsit5' for
      the LE-ODE); the trial-minor path steps with Euler, so pass 'euler' for it.
    - `key`: for the 'vmap' path of a model with noise: trial b uses
      `jax.random.split(key, B)[b]`.
    - `layout`: 'auto' (default), 'vmap' or 'trial-minor'; see `choose_ensemble_layout`.
    - `options`: further arguments of `simulate` (`brownian`, `stepsize_controller`,
      `adjoint`, `max_steps`, `grid_saves`, ...), for the 'vmap' path.

    **Returns:** a `Trajectory` whose every field has a leading trial axis B, as from
    `jax.vmap` over `simulate`: `ts` (B, T), `ys` (B, T, *state) or `fn`'s values,
    `status` (B,), `valid` (B, T), `result` (B,), `num_steps` (B,). A trial that
    diverges is flagged in its own `status` and does not affect the others.

    **Example:**

        model = lesde.LEODE(lesde.LocallyElastic(lesde.PowerLaw(0.05, 0.5),
                                                 lesde.PowerLaw(0.02, 0.5)), "projected", 3)
        y0s = 0.05 * jax.random.normal(jax.random.key(0), (500, 3, 3))
        traj = lesde.simulate_ensemble(model, y0s, t1=1e4, dt=1.0, solver="euler")
        traj.ys[:, -1]  # (500, 3, 3): each trial's state at t1
    """
    if not isinstance(model, (AbstractDynamics, AbstractMap)):
        raise ValueError(
            f"model must be a lesde model (LESDE, LEODE, SpringBlockSDE, ...), got {model!r}"
        )
    y0s = as_float_array("y0s", y0s)
    shape = tuple(model.state_shape)
    if y0s.ndim != len(shape) + 1 or tuple(y0s.shape[1:]) != shape:
        raise ValueError(
            f"y0s must have shape (trials, *state_shape) = (B, {', '.join(map(str, shape))}),"
            f" got shape {tuple(y0s.shape)}"
        )
    if y0s.shape[0] == 0:
        raise ValueError("y0s must hold at least one trial, got 0")
    check_finite("y0s", y0s)
    num_trials = int(y0s.shape[0])
    if isinstance(model, AbstractMap):
        num_steps, save = None, None
    else:
        num_steps = _grid(t0, t1, dt)
        if ts is None:
            save = (num_steps,)
        else:
            ts = _check_ts(ts, t0, t1)
            save = _grid_index(ts, t0, dt, num_steps)
    path = choose_ensemble_layout(
        model, num_trials, layout, solver=solver, saves_on_grid=save is not None,
        options=tuple(options),
    )
    if path == "vmap":
        keys = None if key is None else jr.split(key, num_trials)

        def member(y0, k):
            return simulate(model, t1=t1, dt=dt, t0=t0, y0=y0, key=k, ts=ts, fn=fn,
                            solver=solver, **options)

        return jax.vmap(member)(y0s, keys)
    _check_y0_fn(model, None, fn)
    if is_concrete(model):
        model.check_on_grid(np.linspace(t0, t1, num_steps + 1))
    return _trial_minor(model, y0s, fn, float(t0), float(dt), save, num_steps)


@eqx.filter_jit
def _trial_minor(model, y0s, fn, t0, dt, save, num_steps):
    """Euler on the state z = y0s moved to (*state, B), saving at the step numbers in
    `save` (non-decreasing). Runs of equal gaps between saves are one nested loop, so
    evenly spaced saves compile once whatever their number."""
    B = y0s.shape[0]
    z = jnp.moveaxis(y0s, 0, -1)
    dtype = z.dtype

    def checked(t, x):
        values = x if fn is None else fn(t, x, model)
        return values, health_code(model, x, None if fn is None else values)

    def saved(t, z):
        return jax.vmap(checked, in_axes=(None, 0))(t, jnp.moveaxis(z, -1, 0))

    def advance(z, start, length):
        # a static trip count: the loop is a scan, so reverse-mode gradients pass
        def step(j, z):
            t = t0 + dt * (start + j).astype(dtype)
            return z + dt * model.trial_minor_drift(t, z)

        return jax.lax.fori_loop(0, length, step, z)

    z, (values, codes) = advance_and_save(
        z, save, advance, lambda n, z: saved(t0 + dt * n.astype(dtype), z))
    if save[-1] < num_steps:
        z = advance(z, save[-1], num_steps - save[-1])
    values = jax.tree_util.tree_map(lambda v: jnp.swapaxes(v, 0, 1), values)  # (B, T, ...)
    codes = codes.T  # (B, T)
    save_ts = t0 + dt * jnp.asarray(save, dtype)
    final_finite = jnp.all(jnp.isfinite(z).reshape(-1, B), axis=0)
    status = jax.vmap(member_status, in_axes=(0, None, 0))(codes, jnp.asarray(True), final_finite)
    return Trajectory(
        ts=jnp.broadcast_to(save_ts, (B, len(save))),
        ys=values if fn is None else jax.vmap(mask_unhealthy)(values, codes),
        status=status,
        valid=codes == 0,
        result=jax.tree_util.tree_map(
            lambda v: jnp.broadcast_to(v, (B,)), diffrax.RESULTS.successful
        ),
        num_steps=jnp.full((B,), num_steps, jnp.int32),
    )
