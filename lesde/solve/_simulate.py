"""`lesde.simulate`: integrate any lesde model with diffrax."""

import itertools
import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from .._checks import as_float_array, check_finite, check_shape, is_concrete, show
from .._tsit5 import UnrolledTsit5
from ..models._base import AbstractDynamics, AbstractMap
from ._brownian import FoldInBrownianPath
from ._health import (
    DIVERGED, health_code, INACCURATE, mask_unhealthy, member_status, STATUS_NAMES, SUCCESS,
)
from ._layout import (
    PackedTerm, UnpackedPath, choose_layout, packed_brownian_shape, packed_drift, unpack_saved,
)

SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "sea": diffrax.SEA,
    "shark": diffrax.ShARK,
    "sra1": diffrax.SRA1,
    "tsit5": UnrolledTsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
}

BROWNIAN = ("fold_in", "virtual_tree")



class Trajectory(eqx.Module):
    """The result of `lesde.simulate`.

    - `ts`: the save times, shape (T,).
    - `ys`: the state at each save time, shape (T, *state), or whatever the `fn`
      reduction returned, stacked over the T save times. Values returned by `fn` are
      NaN (inexact leaves) at the save times where `valid` is False; saved states are
      returned as computed.
    - `status`: 0 success; 1 diverged (a non-finite state at a save time or at t1);
      2 the solver failed (e.g. max_steps reached); 3 inaccurate (at a save time the
      state's dynamic range swamped its precision, see `lesde.solve.PRECISION_BITS`
      and the model's `resolution_scale`, or a value of `fn` was non-finite while the
      state was finite); per member under vmap. `lesde.solve.STATUS_NAMES` names them.
    - `valid`: per save time, whether the state and the saved values passed these
      checks, shape (T,).
    - `result`: diffrax's own result code.
    - `num_steps`: steps taken.
    """

    ts: Float[Array, " T"]
    ys: PyTree
    status: Int[Array, ""]
    valid: Bool[Array, " T"]
    result: diffrax.RESULTS
    num_steps: Int[Array, ""]

    @property
    def succeeded(self) -> Array:
        return self.status == SUCCESS

    @property
    def diverged(self) -> Array:
        return self.status == DIVERGED

    @property
    def inaccurate(self) -> Array:
        return self.status == INACCURATE

    def status_names(self) -> np.ndarray:
        """The status of each member as a string ('success', 'diverged', ...)."""
        return np.vectorize(STATUS_NAMES.get)(np.asarray(self.status))


def _solver(solver, model: AbstractDynamics) -> diffrax.AbstractSolver:
    if solver is None:
        return model.default_solver()
    if isinstance(solver, str):
        if solver.lower() not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}")
        return SOLVERS[solver.lower()]()
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be a name or a diffrax solver, got {solver!r}")
    return solver


def _levy_area(solver) -> type:
    need = getattr(solver, "minimal_levy_area", diffrax.AbstractBrownianIncrement)
    if issubclass(diffrax.BrownianIncrement, need):
        return diffrax.BrownianIncrement
    if issubclass(diffrax.SpaceTimeLevyArea, need):
        return diffrax.SpaceTimeLevyArea
    raise ValueError(
        f"solver {type(solver).__name__} needs Levy area {need.__name__}, which lesde's "
        "Brownian paths do not provide"
    )


def _grid(t0, t1, dt) -> int:
    for name, v in (("t0", t0), ("t1", t1), ("dt", dt)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name} must be a Python number, got {show(v)}")
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    if t1 <= t0:
        raise ValueError(f"t1 must be > t0, got t0 = {t0}, t1 = {t1}")
    n = (t1 - t0) / dt
    steps = round(n)
    if steps < 1 or abs(n - steps) > 1e-6 * max(1.0, n):
        raise ValueError(
            f"(t1 - t0) / dt must be a whole number of steps, got (t1 - t0) / dt = {n} "
            f"(t0 = {t0}, t1 = {t1}, dt = {dt})"
        )
    return steps


def _check_ts(ts, t0, t1):
    ts = as_float_array("ts", ts)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(f"ts must be a non-empty 1-D array of times, got shape {ts.shape}")
    if is_concrete(ts):
        a = np.asarray(ts)
        check_finite("ts", a)
        if (np.diff(a) < 0).any():
            raise ValueError(f"ts must be non-decreasing, got {show(a)}")
        tol = 1e-6 * max(1.0, abs(t1))
        if a[0] < t0 - tol or a[-1] > t1 + tol:
            raise ValueError(f"ts must lie in [t0, t1] = [{t0}, {t1}], got {show(a)}")
        ts = jnp.clip(ts, t0, t1)
    return ts


def simulate(
    model: AbstractDynamics,
    *,
    t1: float,
    dt: float,
    key: PRNGKeyArray | None = None,
    t0: float = 0.0,
    y0: Any = None,
    ts: Any = None,
    fn: Callable[[Any, Array, AbstractDynamics], PyTree] | None = None,
    solver: str | diffrax.AbstractSolver | None = None,
    brownian: str | diffrax.AbstractBrownianPath = "fold_in",
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = None,
    progress: bool = False,
    grid_saves: bool = False,
    layout: str = "auto",
) -> Trajectory:
    r"""Integrate `model` from t0 to t1 with diffrax and return a `Trajectory`.

    Solves dX = f(t, X) dt + g(t) dW (Ito; g = 0 for ODE models) on the fixed grid
    t_i = t0 + i dt, i = 0..(t1 - t0)/dt. Works under `jax.jit`, `jax.vmap` and
    `jax.grad`: vmap a function that builds the model from array parameters and calls
    `simulate` to solve a whole batch in one compiled computation (one compilation per
    batch shape; parameters must be arrays, not Python floats).

    **Arguments:**
    - `model`: an `LESDE`, `LEODE`, `SpringBlockSDE` or any `AbstractDynamics`; or a
      discrete map (`SpringBlockMap`, any `AbstractMap`), iterated by a `lax.scan`: time
      then counts map steps, so `dt` must be 1, `t1` is the number of steps, `ts` are
      whole step numbers, and `solver`, `brownian`, `stepsize_controller`, `adjoint`
      and `max_steps` do not apply (step n draws its noise from `fold_in(key, n)`).
    - `t1`, `dt`, `t0`: the horizon and step (Python numbers; (t1 - t0)/dt whole).
    - `key`: JAX random key; split into the initial-state key and the Brownian key. Needed
      when the model has noise or `y0` is not given.
    - `y0`: initial state of shape `model.state_shape`; default a draw of
      `model.initial_state`.
    - `ts`: times to save at (default: t1 only). Off-grid times are interpolated.
    - `fn`: reduction `fn(t, X, model) -> PyTree` computed inside the solve at each save
      time and saved instead of X (keeps memory at O(metrics), not O(N p)).
    - `solver`: a diffrax solver or its name: 'euler', 'heun', 'midpoint', 'sea',
      'shark', 'sra1' (additive noise), 'tsit5' (`UnrolledTsit5`, diffrax's Tsit5 with
      its stages written out, which halves the cost of reverse-mode gradients on small
      states), 'dopri5', 'dopri8'. Default: the model's `default_solver()` ('euler',
      or 'tsit5' for the LE-ODE).
    - `brownian`: 'fold_in' (default; `FoldInBrownianPath`, fixed steps, fast and
      reverse-differentiable) or 'virtual_tree' (`diffrax.VirtualBrownianTree` with
      tolerance dt/2; needed for adaptive step sizes, much slower), or a Brownian path
      of the model's `brownian_shape()` (e.g. one path shared by solves at several dt).
    - `stepsize_controller`: default `diffrax.ConstantStepSize()`; adaptive controllers
      need an ODE or `brownian='virtual_tree'`, and then `dt` is the first step.
    - `adjoint`: how reverse-mode gradients are computed. Default, with fixed steps:
      `diffrax.RecursiveCheckpointAdjoint(checkpoints=number of steps)`, which stores the
      state at every step (the memory of a reverse-mode `lax.scan`, no recomputation);
      pass `RecursiveCheckpointAdjoint(checkpoints=c)` with fewer checkpoints to trade
      memory for recomputation (c ~ sqrt(2 steps) costs about one extra forward pass).
    - `max_steps`: default the number of grid steps (fixed steps) or 100000 (adaptive).
    - `progress`: show a tqdm progress bar.
    - `grid_saves`: with fixed steps and save times `ts` (concrete) that all lie on the
      step grid, keep the state after every step and read the save times off it
      (then apply `fn` there) instead of diffrax's search-and-interpolate over save
      times in every step. Costs memory for every step's state (as a reverse-mode
      pass does anyway) and makes reverse-mode gradients cheaper on small states;
      the fits use it. Ignored where the save times are off the grid.
    - `layout`: how a state with per-sample rows (an LESDE's; the model's
      `sample_classes`) is laid out in memory during the solve (the model and `fn`
      always see X as (N, p)): 'natural' (N, p); 'class-major' (K, p, n), for
      balanced classes with sorted labels; 'sample-minor' (p, N); 'auto' (default)
      takes the one with the longest minor axis (see `lesde.solve.choose_layout`). With
      few features a long minor axis makes the solve several times faster on CPU. The
      Brownian increments are drawn in that layout: the law of the solution is the same
      in every layout, the draws are not. A given Brownian path keeps 'natural'.

    **Returns:** a `Trajectory`. Members that diverge (non-finite state) or whose solver
    fails are flagged in `status`; nothing is raised, so one bad member of a vmapped
    batch does not stop the others.
    """
    if isinstance(model, AbstractMap):
        if layout != "auto":
            raise ValueError(f"layout does not apply to a discrete map, got {layout!r}")
        return _iterate_checked(model, t1, dt, key, t0, y0, ts, fn, solver, brownian,
                                stepsize_controller, adjoint, max_steps)
    if not isinstance(model, AbstractDynamics):
        raise ValueError(
            f"model must be a lesde model (LESDE, LEODE, SpringBlockSDE, SpringBlockMap, "
            f"...), got {model!r}"
        )
    num_steps = _grid(t0, t1, dt)
    solver = _solver(solver, model)
    if not isinstance(brownian, diffrax.AbstractBrownianPath) and brownian not in BROWNIAN:
        raise ValueError(
            f"unknown brownian {brownian!r}; choose one of {list(BROWNIAN)} or pass a "
            "diffrax Brownian path"
        )
    if stepsize_controller is None:
        stepsize_controller = diffrax.ConstantStepSize()
    adaptive = not isinstance(stepsize_controller, diffrax.ConstantStepSize)
    stochastic = model.brownian_shape() is not None
    fold_in = isinstance(brownian, FoldInBrownianPath) or (
        isinstance(brownian, str) and brownian == "fold_in"
    )
    if isinstance(brownian, FoldInBrownianPath) and (
        brownian.dt != float(dt) or brownian.grid_t0 != float(t0)
        or brownian.num_steps < num_steps
    ):
        raise ValueError(
            f"the FoldInBrownianPath's grid (t0 = {brownian.grid_t0}, dt = {brownian.dt}, "
            f"num_steps = {brownian.num_steps}) does not cover the solve's grid (t0 = {t0}, "
            f"dt = {dt}, num_steps = {num_steps})"
        )
    if adaptive and stochastic and fold_in:
        raise ValueError(
            "brownian='fold_in' needs fixed steps (stepsize_controller="
            "diffrax.ConstantStepSize()); pass brownian='virtual_tree' for adaptive steps"
        )
    if max_steps is None:
        max_steps = 100_000 if adaptive else num_steps
    elif isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {show(max_steps)}")
    own_path = isinstance(brownian, diffrax.AbstractBrownianPath)
    if ((stochastic and not own_path) or y0 is None) and key is None:
        raise ValueError("key is required: the model has noise (and no Brownian path is "
                         "given) or y0 is not given")
    y0 = _check_y0_fn(model, y0, fn)
    if ts is not None:
        ts = _check_ts(ts, t0, t1)
    if is_concrete(model):
        model.check_on_grid(np.linspace(t0, t1, num_steps + 1))
    if key is None:
        key = jax.random.key(0)  # unused: deterministic model with given y0
    levy = _levy_area(solver) if stochastic else diffrax.BrownianIncrement
    on_grid = _grid_index(ts, t0, dt, num_steps) if grid_saves and not adaptive else None
    layout = choose_layout(
        model, layout, user_path=isinstance(brownian, diffrax.AbstractBrownianPath)
    )
    return _solve(
        model, y0, key, None if on_grid else ts, fn, solver, float(t0), float(t1), float(dt),
        num_steps, brownian, levy, stepsize_controller, adjoint, max_steps, progress, on_grid,
        layout,
    )


def _grid_index(ts, t0, dt, num_steps) -> tuple[int, ...] | None:
    """The step numbers of the save times if every one is a grid time t0 + i dt (to
    1e-9 of a step), else None."""
    if ts is None or not is_concrete(ts):
        return None
    i = (np.asarray(ts, dtype=np.float64) - t0) / dt
    idx = np.rint(i)
    if np.abs(i - idx).max() > 1e-9 * max(1.0, num_steps) or idx.min() < 0 or idx.max() > num_steps:
        return None
    return tuple(int(k) for k in idx)


def _default_adjoint(controller, num_steps):
    if isinstance(controller, diffrax.ConstantStepSize):
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=num_steps)
    return diffrax.RecursiveCheckpointAdjoint()


@eqx.filter_jit
def _solve(
    model, y0, key, ts, fn, solver, t0, t1, dt, num_steps, brownian, levy,
    controller, adjoint, max_steps, progress, on_grid, layout,
):
    init_key, bm_key = jax.random.split(key)
    if y0 is None:
        y0 = model.initial_state(init_key)
    y0 = layout.pack(y0)
    drift = packed_drift(model, layout)
    shape = model.brownian_shape()
    if shape is None:
        terms = drift
    else:
        packed = packed_brownian_shape(layout, shape)
        if isinstance(brownian, diffrax.AbstractBrownianPath):
            path = brownian
        elif brownian == "fold_in":
            path = FoldInBrownianPath(packed, bm_key, t0, dt, num_steps, levy_area=levy)
        else:
            path = diffrax.VirtualBrownianTree(
                t0, t1, tol=dt / 2, shape=packed, key=bm_key, levy_area=levy
            )
        if path is not brownian:
            path = UnpackedPath(path, layout, shape)
        terms = diffrax.MultiTerm(drift, PackedTerm(model.noise_term(path), layout))

    def finite(t, y, args):
        return jnp.all(jnp.isfinite(y))

    unpack = layout.unpack

    def checked(t, x):
        """fn's values (or the state) at a save time and the save's health code."""
        values = x if fn is None else fn(t, x, model)
        return values, health_code(model, x, None if fn is None else values)

    save_fn = lambda t, y, args: checked(t, unpack(y))  # noqa: E731
    if on_grid is not None:  # save times on the grid: every step's state, then gather
        user = diffrax.SubSaveAt(t0=True, steps=True)
    elif ts is None:
        user = diffrax.SubSaveAt(t1=True, fn=save_fn)
    else:
        user = diffrax.SubSaveAt(ts=ts, fn=save_fn)
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(t1=True, fn=finite), user])
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0,
        t1,
        dt,
        y0,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=_default_adjoint(controller, num_steps) if adjoint is None else adjoint,
        max_steps=max_steps,
        throw=False,
        progress_meter=diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter(),
    )
    is_finite, saved = sol.ys
    save_ts = sol.ts[1]
    if on_grid is not None:
        index = jnp.asarray(on_grid)
        save_ts = t0 + dt * index.astype(save_ts.dtype)
        saved = jax.vmap(checked)(save_ts, unpack_saved(layout, saved[index]))
    saved, codes = saved
    ok = sol.result == diffrax.RESULTS.successful
    return Trajectory(
        ts=save_ts,
        ys=saved if fn is None else mask_unhealthy(saved, codes),
        status=member_status(codes, ok, is_finite[-1]),
        valid=codes == 0,
        result=sol.result,
        num_steps=sol.stats["num_steps"],
    )


def _check_y0_fn(model, y0, fn):
    """Check `fn` and `y0` (shape `model.state_shape`, finite); return y0 as an array."""
    if fn is not None and not callable(fn):
        raise ValueError(f"fn must be callable fn(t, X, model), got {show(fn)}")
    if y0 is not None:
        y0 = as_float_array("y0", y0)
        check_shape("y0", y0, model.state_shape)
        check_finite("y0", y0)
    return y0


def _iterate_checked(model, t1, dt, key, t0, y0, ts, fn, *unused):
    names = ("solver", "brownian", "stepsize_controller", "adjoint", "max_steps")
    defaults = (None, "fold_in", None, None, None)
    for name, value, default in zip(names, unused, defaults):
        if value is not default and not (isinstance(value, str) and value == default):
            raise ValueError(
                f"{name} does not apply to a discrete map ({type(model).__name__}); got "
                f"{name} = {show(value)}"
            )
    if dt != 1:
        raise ValueError(
            f"a discrete map ({type(model).__name__}) is iterated in whole steps: dt must "
            f"be 1 and t1 the number of steps, got dt = {show(dt)}"
        )
    steps = _grid(t0, t1, dt)
    if t0 != 0:
        raise ValueError(f"a discrete map starts at step t0 = 0, got t0 = {show(t0)}")
    if ts is None:
        save = (steps,)
    else:
        if not is_concrete(ts):
            raise ValueError("ts of a discrete map must be concrete step numbers, not traced")
        a = np.asarray(ts, dtype=float)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"ts must be a non-empty 1-D array of steps, got shape {a.shape}")
        check_finite("ts", a)
        if np.any(np.abs(a - np.round(a)) > 1e-9) or a[0] < 0 or a[-1] > steps or (
            np.diff(a) < 0
        ).any():
            raise ValueError(
                f"ts of a discrete map must be non-decreasing whole step numbers in "
                f"[0, {steps}], got {show(a)}"
            )
        save = tuple(int(round(v)) for v in a)
    y0 = _check_y0_fn(model, y0, fn)
    if key is None:
        raise ValueError("key is required: the map is random")
    return _iterate(model, y0, key, save, fn)


def advance_and_save(x, save: tuple[int, ...], advance: Callable, save_at: Callable):
    """Advance the state `x` to each step count in `save` (non-decreasing), with
    `advance(x, start, length)` taking `length` steps from step `start`, and save
    `save_at(n, x)` there (n the traced step count). Runs of equal gaps between saves are
    one nested `jax.lax.scan`, so evenly spaced saves compile once whatever their number.
    Returns the final state (after the last save) and the saves stacked along a leading
    axis."""
    gaps = np.diff(np.asarray((0,) + tuple(save)))
    runs = [(int(gap), len(list(same))) for gap, same in itertools.groupby(gaps)]
    outs, done = [], 0
    for gap, count in runs:
        def segment(x, k, gap=gap, base=done):
            start = base + k * gap
            x = advance(x, start, gap) if gap else x
            return x, save_at(start + gap, x)

        x, out = jax.lax.scan(segment, x, jnp.arange(count))
        outs.append(out)
        done += gap * count
    return x, jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *outs)


@eqx.filter_jit
def _iterate(model, y0, key, save, fn):
    """Iterate the map to each step count in `save` (non-decreasing), saving fn(n, X, model)
    (or X). Runs of equal gaps between saves are one nested scan, so evenly spaced saves
    compile once whatever their number."""
    init_key, noise_key = jax.random.split(key)
    x = model.initial_state(init_key) if y0 is None else y0.astype(jnp.result_type(float))

    def save_fn(t, x):
        values = x if fn is None else fn(t, x, model)
        return values, health_code(model, x, None if fn is None else values)

    def advance(x, start, length):
        def body(x, n):
            return model.step(n, x, jax.random.fold_in(noise_key, n)), None

        x, _ = jax.lax.scan(body, x, start + jnp.arange(length))
        return x

    x, (ys, codes) = advance_and_save(
        x, save, advance, lambda n, x: save_fn(n.astype(x.dtype), x))
    return Trajectory(
        ts=jnp.asarray(save, jnp.result_type(float)),
        ys=ys if fn is None else mask_unhealthy(ys, codes),
        status=member_status(codes, jnp.asarray(True), jnp.all(jnp.isfinite(x))),
        valid=codes == 0,
        result=diffrax.RESULTS.successful,
        num_steps=jnp.asarray(save[-1]),
    )
