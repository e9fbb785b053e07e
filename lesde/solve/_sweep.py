"""Batched parameter sweeps: a grid of parameter settings x seeds, solved as one
compiled computation in chunks, sharded over the visible devices, resumable."""

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._checks import check_batch, check_positive_int, show
from .._json import dump_json
from ._health import STATUS_NAMES
from ..models._base import AbstractMap
from ._simulate import _grid, simulate
from ._store import ChunkStore

SEED_DIM = "seed"
TIME_DIM = "time"


def dim_name(path: str) -> str:
    """The identifier that names a parameter's coordinate (and its axis's dimension) in
    a sweep result: the path with every run of other characters than letters, digits
    and '_' made one '_', e.g. 'impact.schedule.value[0,1]' -> 'impact_schedule_value_0_1',
    so that `ds.sel(impact_schedule_value_0_1=0.1)` works; the path itself is the
    coordinate's attribute `path`."""
    name = re.sub(r"\W+", "_", path).strip("_")
    return name if name and not name[0].isdigit() else f"p_{name}"


class Grid:
    """A grid of parameter settings: the product of axes, each axis one or more
    parameters zipped together (equal lengths) along one dimension.

    **Arguments:**
    - `axes`: a sequence of mappings {parameter name: 1-D values}. A mapping with
      several entries zips them along one dimension. Each dimension is named after the
      first parameter of its axis, as an identifier (`dim_name`).
    - `derived`: {name: f} of parameters computed from the others, e.g.
      `{"noise": lambda p: p["ratio"] * p["mu_fwd"]}`: f takes the mapping of the axis
      values of a set of cells (NumPy arrays) and returns the derived values of those
      cells. Every derived value must be finite (checked on every cell here).

    Cell c of the grid (row-major over the axes, last axis fastest) has the parameter
    values `grid.params(c)`, derived parameters included.

    Example: a spring-block sweep of the noise relative to the friction,

        Grid([{"friction.mu_fwd": [0.1, 0.2]}, {"ratio": [0.5, 1.0, 2.0]}],
             derived={"noise": lambda p: p["ratio"] * p["friction.mu_fwd"]})
    """

    def __init__(
        self,
        axes: Sequence[Mapping[str, Any]],
        derived: Mapping[str, Callable[[dict[str, np.ndarray]], Any]] | None = None,
    ):
        if isinstance(axes, Mapping):
            axes = [{k: v} for k, v in axes.items()]
        self.axes: list[dict[str, np.ndarray]] = []
        seen = set()
        for i, axis in enumerate(axes):
            if not isinstance(axis, Mapping) or not axis:
                raise ValueError(f"axes[{i}] must be a non-empty mapping, got {show(axis)}")
            cols = {}
            for name, values in axis.items():
                if name in seen:
                    raise ValueError(f"parameter {name!r} is swept on more than one axis")
                seen.add(name)
                v = _axis_values(name, values)
                if v.ndim != 1 or v.size == 0:
                    raise ValueError(
                        f"axis values of {name!r} must be a non-empty 1-D list, got shape {v.shape}"
                    )
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"axis values of {name!r} must be finite, got {show(v)}")
                cols[name] = v
            lengths = {len(v) for v in cols.values()}
            if len(lengths) != 1:
                raise ValueError(
                    f"zipped parameters {list(cols)} must have equal lengths, got "
                    f"{[len(v) for v in cols.values()]}"
                )
            self.axes.append(cols)
        self.derived: dict[str, Callable] = {}
        for name, f in (derived or {}).items():
            if name in seen:
                raise ValueError(f"parameter {name!r} is both on an axis and derived")
            if not callable(f):
                raise ValueError(f"derived parameter {name!r} must be a callable of the axis values, got {show(f)}")
            seen.add(name)
            self.derived[name] = f
        idents: dict[str, str] = {}
        for name in self.names:
            other = idents.setdefault(dim_name(name), name)
            if other != name:
                raise ValueError(
                    f"parameters {other!r} and {name!r} would both be named "
                    f"{dim_name(name)!r} in the result"
                )
        if self.derived:  # every derived value must be finite, in every cell
            values = self.params(np.arange(self.num_cells))
            for name in self.derived:
                bad = ~np.isfinite(values[name])
                if bad.any():
                    c = int(np.argmax(bad))
                    raise ValueError(
                        f"derived parameter {name!r} is {values[name][c]} in {self.describe(c)}; "
                        "derived values must be finite"
                    )

    @property
    def dims(self) -> list[str]:
        """The name of each axis's dimension: `dim_name` of its first parameter."""
        return [dim_name(next(iter(axis))) for axis in self.axes]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(next(iter(axis.values()))) for axis in self.axes)

    @property
    def num_cells(self) -> int:
        return int(np.prod(self.shape, dtype=int)) if self.axes else 1

    @property
    def names(self) -> list[str]:
        """The parameters on the axes, then the derived ones."""
        return [name for axis in self.axes for name in axis] + list(self.derived)

    def params(self, cells: np.ndarray) -> dict[str, np.ndarray]:
        """Parameter values of the given cell indices, derived parameters included."""
        cells = np.asarray(cells)
        idx = np.unravel_index(cells, self.shape) if self.axes else ()
        out = {
            name: values[i] for axis, i in zip(self.axes, idx) for name, values in axis.items()
        }
        axes = dict(out)
        with np.errstate(all="ignore"):  # a non-finite value is refused by name in __init__
            for name, f in self.derived.items():
                out[name] = np.broadcast_to(np.asarray(f(axes), dtype=float), cells.shape)
        return out


    def describe(self, cell: int) -> str:
        """'cell c (name = value, ...)', for error messages."""
        values = ", ".join(f"{k} = {float(v):g}" for k, v in self.params(np.asarray(cell)).items())
        return f"cell {cell} ({values})" if values else f"cell {cell}"


def _axis_values(name: str, values: Any) -> np.ndarray:
    """The values of one axis as floats; non-numeric values (strings, booleans, None,
    nested lists of unequal length) are refused, naming the parameter."""
    if isinstance(values, (list, tuple)):  # [True, 1.0] would become [1.0, 1.0]
        flag = next((v for v in values if isinstance(v, (bool, np.bool_))), None)
        if flag is not None:
            raise ValueError(f"axis values of {name!r} must be numbers, got {bool(flag)!r} in {show(values)}")
    try:
        raw = np.asarray(values)
    except ValueError as e:
        raise ValueError(f"axis values of {name!r} must be a 1-D list of numbers, got {show(values)}") from e
    if raw.dtype == bool or not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        bad = next((v for v in np.ravel(raw) if isinstance(v, (bool, np.bool_)) or not isinstance(
            v, (int, float, np.integer, np.floating))), raw.flat[0] if raw.size else None)
        bad = bad.item() if isinstance(bad, np.generic) else bad
        raise ValueError(f"axis values of {name!r} must be numbers, got {bad!r} in {show(values)}")
    return raw.astype(float)


def check_cells(build: Callable[[dict[str, jax.Array]], Any], grid: "Grid", times: Any = None) -> None:
    """Build the model of every cell of `grid` at once (one `vmap`) and check every value
    before anything is compiled (see `lesde._checks.check_batch`): a bad value in any
    cell raises a ValueError naming the cell, its parameters, the field and the value.
    `times`: the solver's time grid, for checks of time-dependent inputs (callables of
    t). A name that `build` reads but the grid does not have is refused by name."""

    def one(params):
        model = _build(build, params, grid, "every cell")
        if times is not None and hasattr(model, "check_on_grid"):
            model.check_on_grid(times)

    check_batch(one, grid.params(np.arange(grid.num_cells)), grid.describe)


def _build(build, params, grid: "Grid", where: str):
    """build(params); a ValueError names `where` (the cell), a KeyError the parameter
    that the grid lacks."""
    try:
        return build(params)
    except KeyError as e:
        if e.args and e.args[0] not in params:
            raise ValueError(
                f"build reads the parameter {e.args[0]!r}, which is not on the grid; the "
                f"grid's parameters are {grid.names}"
            ) from None
        raise
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def member_key(seed: int, cell, seed_index) -> jax.Array:
    """The random key of one member: fold_in(fold_in(key(seed), cell), seed_index), so a
    member's noise does not depend on chunking or devices."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), cell), seed_index)


def sweep(
    build: Callable[[dict[str, jax.Array]], Any],
    grid: Grid | Sequence[Mapping[str, Any]],
    *,
    t1: float,
    dt: float,
    fn: Callable[[Any, jax.Array, Any], Mapping[str, jax.Array]],
    seeds: int = 1,
    seed: int = 0,
    solver: Any = None,
    chunk_size: int | None = None,
    store: str | Path | None = None,
    fingerprint: str = "",
    progress: bool = True,
    attrs: Mapping[str, Any] | None = None,
    ts: Any = None,
    metric_dims: Mapping[str, Sequence[str]] | None = None,
):
    """Solve `build(params)` for every cell of `grid` and every seed, as one compiled
    `jit(vmap(...))` computation applied chunk by chunk; return an `xarray.Dataset`.

    Member m = cell * seeds + s solves `build(grid.params(cell))` with the key
    `member_key(seed, cell, s)` and saves `fn(t1, X(t1), model)` (a mapping of scalars,
    or small arrays, computed inside the solve), so results do not depend on `chunk_size` or on the
    number of devices (up to floating-point rounding: XLA may round differently for
    different batch shapes). Chunks are padded to `chunk_size` (one compilation for the whole
    sweep) and sharded over all visible devices (`jax.sharding.NamedSharding` over a
    one-axis `Mesh`; the chunk size is rounded up to a multiple of the device count).

    Several hosts: call `jax.distributed.initialize()` first and run the same program on
    every process; the mesh then spans every process's devices, each chunk's results are
    gathered to every process, and only process 0 writes to `store` (which must be on a
    file system that all processes see, for resuming).

    **Arguments:**
    - `build`: params -> model; called under `vmap` with scalar arrays, one per
      parameter named in the grid.
    - `grid`: a `Grid` or its axes.
    - `t1`, `dt`, `solver`: passed to `lesde.simulate`.
    - `fn`: fn(t, X, model) -> {name: scalar}, the metrics to keep.
    - `seeds`: members per cell; `seed`: the base seed.
    - `chunk_size`: members per compiled call (default: what fits a quarter of the
      device memory, see `auto_chunk_size`); at most the number of members (rounded up
      to a multiple of the device count), whatever is asked.
    - `store`: a directory for finished chunks; rerunning the same sweep with the same
      store resumes, losing at most the chunk that was running. `fingerprint` identifies
      the sweep (e.g. a hash of its config) so a store is never mixed with another one.
    - `progress`: a tqdm progress bar over chunks, with ETA.
    - `attrs`: attributes of the returned Dataset.
    - `ts`: times at which to keep the metrics (default: t1 only); adds a 'time'
      dimension, so one sweep shows the transition at several horizons.
    - `metric_dims`: names of the trailing dimensions of metrics that are arrays
      (default `{name}_dim0`, ...; e.g. `lesde.metrics.METRIC_DIMS`), numbered from 1.

    **Returns:** an `xarray.Dataset` with dimensions (grid dims..., 'seed'[, 'time']), one
    variable per metric and `status` (0 success, 1 diverged, 2 solver failed: see
    `lesde.Trajectory`), the swept and derived parameters as coordinates named
    `dim_name(path)`, each with its path in the attribute `path`.
    """
    import xarray as xr

    from .._progress import progress_bar

    grid = grid if isinstance(grid, Grid) else Grid(grid)
    seeds = check_positive_int("seeds", seeds)
    num_members = grid.num_cells * seeds
    devices = jax.devices()
    if not callable(build) or not callable(fn):
        raise ValueError("build and fn must be callables")
    probe = _build(
        build, {k: jnp.asarray(v) for k, v in grid.params(np.zeros((), int)).items()}, grid,
        grid.describe(0),
    )
    steps = _grid(0.0, t1, dt) if not isinstance(probe, AbstractMap) else None
    check_cells(build, grid, None if steps is None else np.linspace(0.0, float(t1), steps + 1))
    if chunk_size is None:
        chunk_size = min(num_members, auto_chunk_size(probe, devices))
    chunk_size = check_positive_int("chunk_size", chunk_size)
    # never more than the sweep: a larger chunk would be padded with repeated members
    chunk_size = min(chunk_size, num_members)
    chunk_size = -(-chunk_size // len(devices)) * len(devices)

    solver_ = MemberSolver(
        build, fn, t1=t1, dt=dt, solver=solver, seed=seed, ts=ts, chunk_size=chunk_size,
    )

    st = ChunkStore(store, fingerprint, num_members) if store is not None else None
    done_parts = st.load(required=("status",)) if st is not None else []
    done = np.zeros(num_members, bool)
    for part in done_parts:
        done[part["member"]] = True
    todo = np.flatnonzero(~done)
    parts = list(done_parts)
    bar = progress_bar(
        total=num_members, initial=int(done.sum()), unit="member", disable=not progress,
        desc="sweep", smoothing=0.1,
    )
    start = time.perf_counter()
    try:
        for lo in range(0, len(todo), chunk_size):
            members = todo[lo : lo + chunk_size]
            cells, s_idx = np.divmod(members, seeds)
            metrics, status = solver_.solve_chunk(grid.params(cells), cells, s_idx)
            res = {**metrics, "status": status}
            parts.append({"member": members, **res})
            if st is not None:
                st.save(members, res)
            bar.update(len(members))
    finally:
        bar.close()
    elapsed = time.perf_counter() - start

    keys = [k for k in parts[0] if k != "member"]
    flat = {
        k: np.empty((num_members,) + parts[0][k].shape[1:], dtype=parts[0][k].dtype)
        for k in keys
    }
    for part in parts:
        for k in keys:
            flat[k][part["member"]] = part[k]
    shape = grid.shape + (seeds,)
    dims = grid.dims + [SEED_DIM]
    coords: dict[str, Any] = {SEED_DIM: np.arange(seeds)}
    if ts is not None:
        coords[TIME_DIM] = np.asarray(ts, dtype=float)
    for dim, axis in zip(grid.dims, grid.axes):
        for name, values in axis.items():
            coords[dim_name(name)] = (dim, values, {"path": name})
    if grid.derived:  # a derived parameter is a coordinate over the grid's dimensions
        every = grid.params(np.arange(grid.num_cells))
        for name in grid.derived:
            coords[dim_name(name)] = (grid.dims, every[name].reshape(grid.shape), {"path": name})
    data = {}
    for k in keys:
        extra = flat[k].shape[1 + (ts is not None and k != "status"):]
        names = tuple((metric_dims or {}).get(k, ()))
        if len(names) != len(extra):
            names = tuple(f"{k}_dim{j}" for j in range(len(extra)))
        tdim = [TIME_DIM] if ts is not None and k != "status" else []
        data[k] = (dims + tdim + list(names), flat[k].reshape(shape + flat[k].shape[1:]))
        for name, size in zip(names, extra):
            coords.setdefault(name, np.arange(1, size + 1))
    ds = xr.Dataset(data, coords=coords)
    ds["status"].attrs["meaning"] = ", ".join(f"{k} = {v}" for k, v in STATUS_NAMES.items())
    ds.attrs.update(
        {
            "num_members": num_members,
            "chunk_size": chunk_size,
            "num_devices": len(devices),
            "backend": jax.default_backend(),
            "members_solved_this_run": int(len(todo)),
            "wall_time_s_this_run": round(elapsed, 3),
            "parameters": dump_json(grid.names, indent=None).strip(),
        }
    )
    if attrs:
        ds.attrs.update(attrs)
    return ds


def auto_chunk_size(model, devices, fraction: float = 0.25, per_state: int = 24) -> int:
    """Members per chunk that fit in `fraction` of the memory of the devices: each member
    is counted as `per_state` copies of its state (the solver's stages, the Brownian
    increments and XLA's temporaries). Device memory comes from `memory_stats()` where
    the backend reports it (GPUs), else the host's physical memory. At least one member
    per device, at most 4096 per device."""
    state = int(np.prod(model.state_shape)) * jnp.dtype(jnp.result_type(float)).itemsize
    stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        budget = fraction * stats["bytes_limit"] * len(devices)
    else:
        budget = fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    per_device = int(budget // (per_state * state * len(devices)))
    return max(1, min(per_device, 4096)) * len(devices)


class MemberSolver:
    """Solves members given by their parameter values, a fixed number of members per
    compiled call: the batched solve behind `sweep` and `lesde.boundary`.

    Member i solves `build(params_i)` with the key `member_key(seed, ids[i],
    seed_index[i])` and keeps `fn(t, X(t), model)` at t1 (or at each of `ts`), with its
    status (see `lesde.Trajectory`; a flagged member's metrics are NaN). Every call
    pads its members to `chunk_size` (repeating the last one) and shards them over the
    visible devices, so all calls with the same parameter names share one compilation,
    whatever their number of members.

    **Arguments:**
    - `build`, `fn`, `t1`, `dt`, `solver`, `seed`, `ts`: as in `sweep`.
    - `chunk_size`: members per compiled call, rounded up to a multiple of the device
      count.

    Example (two members of one setting, different seeds):

        ms = MemberSolver(build, fn, t1=10.0, dt=0.1, chunk_size=2)
        metrics, status = ms.solve({"alpha": np.array([0.5, 0.5])}, np.array([0, 0]),
                                   np.array([0, 1]))
    """

    def __init__(self, build, fn, *, t1: float, dt: float, solver: Any = None, seed: int = 0,
                 ts: Any = None, chunk_size: int):
        self.devices = jax.devices()
        n = check_positive_int("chunk_size", chunk_size)
        self.chunk_size = -(-n // len(self.devices)) * len(self.devices)
        self.run_chunk = _chunk_function(
            build, fn, float(t1), float(dt), solver, int(seed),
            None if ts is None else tuple(float(t) for t in np.asarray(ts).ravel()),
        )
        self.sharding = NamedSharding(Mesh(np.array(self.devices), ("batch",)), PartitionSpec("batch"))
        self.members_solved = 0
        self.calls = 0

    def solve_chunk(self, params: Mapping[str, np.ndarray], ids: np.ndarray, seed_index: np.ndarray):
        """At most `chunk_size` members in one compiled call: ({name: values}, status),
        NumPy arrays with the members first."""
        ids = np.asarray(ids)
        n = len(ids)
        if not 0 < n <= self.chunk_size:
            raise ValueError(f"a chunk holds 1 to {self.chunk_size} members, got {n}")

        def pad(v):
            v = np.asarray(v)
            return np.concatenate([v, np.repeat(v[-1:], self.chunk_size - n, axis=0)])

        args = jax.device_put(
            ({k: jnp.asarray(pad(v)) for k, v in params.items()},
             jnp.asarray(pad(ids), jnp.int32), jnp.asarray(pad(seed_index), jnp.int32)),
            self.sharding,
        )
        out = self.run_chunk(*args)
        if jax.process_count() > 1:  # each process holds only its devices' shards
            out = multihost_utils.process_allgather(out, tiled=True)
        metrics, status = out
        self.members_solved += n
        self.calls += 1
        return {k: np.asarray(v)[:n] for k, v in metrics.items()}, np.asarray(status)[:n]

    def solve(self, params: Mapping[str, np.ndarray], ids: np.ndarray, seed_index: np.ndarray):
        """Any number of members, chunk by chunk; returns what `solve_chunk` returns."""
        ids, seed_index = np.asarray(ids), np.asarray(seed_index)
        parts = []
        for lo in range(0, len(ids), self.chunk_size):
            sl = slice(lo, lo + self.chunk_size)
            parts.append(self.solve_chunk({k: np.asarray(v)[sl] for k, v in params.items()},
                                          ids[sl], seed_index[sl]))
        metrics = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
        return metrics, np.concatenate([p[1] for p in parts])


@functools.lru_cache(maxsize=16)
def _chunk_function(build, fn, t1, dt, solver, seed, ts):
    """jit(vmap(member)) for one sweep set-up, kept so that running the same sweep again
    in this process (e.g. resuming) does not compile again."""

    def member(params, cell, s):
        model = build(params)
        traj = simulate(
            model, t1=t1, dt=dt, key=member_key(seed, cell, s), fn=fn, solver=solver,
            ts=None if ts is None else np.asarray(ts),  # concrete: maps need whole steps
        )
        return (traj.ys if ts is not None else {k: v[-1] for k, v in traj.ys.items()}), traj.status

    return jax.jit(jax.vmap(member))


def fingerprint_of(obj: Any) -> str:
    """A short stable hash of a JSON-able object (e.g. a sweep config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
