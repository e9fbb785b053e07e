"""Boundaries of a model's phase diagram: the bracket search of `bracket_search` on
members built from a base model, solved by `lesde.solve.MemberSolver` (one compilation
for the whole search)."""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_int
from .._json import dump_json
from ..models._base import AbstractMap
from ..solve import check_cells, dim_name, Grid, MemberSolver, STATUS_NAMES
from ..solve._simulate import _grid
from ..solve._sweep import auto_chunk_size
from ._order import OrderParameter
from ._search import _check_search, bracket_search, CELL_STATUS, grid_points

GAP = ("impact.alpha", "impact.beta")
"""An inner axis that moves alpha and beta together is measured by alpha - beta, the
quantity whose sign decides separability (as the phase diagrams draw it)."""

GAP_NAME = "alpha_minus_beta"
"""The name of the inner coordinate alpha - beta in a result."""


class InnerAxis:
    """The inner axis of a boundary search: a straight segment in parameter space, each
    parameter going linearly from its start to its stop value together (zipped), measured
    by one coordinate x: alpha - beta when the axis moves exactly `impact.alpha` and
    `impact.beta`, else its first parameter.

    **Arguments:**
    - `segment`: {parameter: (start, stop)}; the coordinate must differ between the
      ends.

    Example: `InnerAxis({"impact.alpha": (-0.1, 0.1), "impact.beta": (0.05, -0.05)})`
    measures x = alpha - beta from -0.15 to 0.15.
    """

    def __init__(self, segment: Mapping[str, Sequence[float]]):
        if not isinstance(segment, Mapping) or not segment:
            raise ValueError(f"inner: a non-empty mapping {{parameter: [start, stop]}}, got {segment!r}")
        ends = {}
        for name, v in segment.items():
            try:
                a = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                a = None
            if a is None or a.shape != (2,) or not np.isfinite(a).all():
                raise ValueError(f"inner.{name}: [start, stop], two finite numbers, got {v!r}")
            ends[name] = a
        self.ends = ends
        self.is_gap = set(ends) == set(GAP)
        self.name = GAP_NAME if self.is_gap else dim_name(next(iter(ends)))
        self.path = "impact.alpha - impact.beta" if self.is_gap else next(iter(ends))
        x0, x1 = self._x(ends)
        if x0 == x1:
            raise ValueError(
                f"inner: the coordinate {self.path} is {x0:g} at both ends of the segment; it "
                "must change along the inner axis"
            )
        self.start, self.stop = float(x0), float(x1)

    def _x(self, values):
        if self.is_gap:
            return values[GAP[0]] - values[GAP[1]]
        return values[next(iter(values))]

    @property
    def lo(self) -> float:
        return min(self.start, self.stop)

    @property
    def hi(self) -> float:
        return max(self.start, self.stop)

    def params(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The value of every parameter of the axis where the coordinate is x."""
        u = (np.asarray(x, dtype=float) - self.start) / (self.stop - self.start)
        return {k: a[0] + u * (a[1] - a[0]) for k, a in self.ends.items()}


def locate_boundary(
    build: Callable[[dict[str, jax.Array]], Any],
    inner: InnerAxis | Mapping[str, Sequence[float]],
    *,
    order: OrderParameter,
    fn: Callable,
    t1: float,
    dt: float,
    tol: float,
    outer: Grid | Sequence[Mapping[str, Any]] | None = None,
    derived: Mapping[str, Callable[[dict[str, np.ndarray]], Any]] | None = None,
    seeds: int = 16,
    seed: int = 0,
    solver: Any = None,
    horizons: Sequence[float] | None = None,
    points: int = 1,
    initial: int = 5,
    level: float = 0.95,
    chunk_size: int | None = None,
    progress: bool = True,
    attrs: Mapping[str, Any] | None = None,
):
    r"""Locate a phase boundary: for every cell of the outer axes (and every horizon),
    where the order parameter crosses its threshold along the inner axis, by the batched
    bracket search of `bracket_search` (see there for the method and the confidence
    interval). All brackets advance together: each round's probes of all cells are one
    batch of members, solved by `lesde.solve.MemberSolver` in chunks of one fixed size,
    so the whole search compiles once.

    A probe of a cell at coordinate x is `seeds` members of `build(params)`, params the
    cell's outer values, the inner axis's parameters at x and the derived parameters;
    member s of probe j has the key `member_key(seed, j, s)`. A probe with a flagged
    member at its horizon (its metric NaN) is no measurement: its cell is `flagged`.

    **Arguments:**
    - `build`: params -> model, as for `lesde.solve.sweep` (called under `vmap`).
    - `inner`: the `InnerAxis`, or its segment {parameter: (start, stop)}.
    - `order`: the `OrderParameter`; `fn(t, X, model)` must return its metric.
    - `t1`, `dt`, `solver`: as for `lesde.simulate`.
    - `tol`: the width of the final brackets, in the inner coordinate.
    - `outer`: the outer axes (a `Grid` without derived parameters, or its axes), or
      None for one cell.
    - `derived`: {name: f(values)} of parameters computed from the outer and inner
      names (as `Grid`'s `derived`).
    - `seeds`: members per probe; `seed`: the base seed.
    - `horizons`: times at which to locate the boundary (each a cell of its own, a
      dimension 'time' of the result); the members are solved to t1 and saved there.
      Default: t1 only.
    - `points`, `initial`, `level`: as for `bracket_search`.
    - `chunk_size`: members per compiled call (default: one round's probes, `points`
      per cell, within a quarter of the device memory).
    - `progress`: a progress bar over the rounds; `attrs`: attributes of the result.

    **Returns:** an `xarray.Dataset` over the outer dimensions (and 'time'): `critical`
    (the located value of the inner coordinate), `critical_low` and `critical_high`
    (its confidence interval), `cell_status` (`CELL_STATUS`), `rounds`, `num_probes`,
    `bracket_low`, `bracket_high`, `direction`, the parameters of the inner axis at the
    critical value (`critical_<name>`), and over a further dimension 'probe' the probes
    in the order probed (`probe_x`, `probe_mean`, `probe_low`, `probe_high`, `probe_se`,
    `probe_round`, `probe_status`). Attributes: the order parameter, the tolerance,
    levels, `members_solved`, `wall_time_s`, `grid_members` (members of the grid with
    the same resolution: `grid_points` x cells x seeds, one solve serving all horizons)
    and `compilations`.

    Example (the identity model's boundary along alpha - beta at two noise levels):

        def build(p):
            return lesde.LESDE(lesde.LocallyElastic(p["impact.alpha"], p["impact.beta"]),
                               "identity", lesde.Classes.balanced(3, 50),
                               noise=lesde.Noise(independent=p["sigma"]))
        ds = locate_boundary(
            build, {"impact.alpha": (-0.1, 0.1), "impact.beta": (0.05, -0.05)},
            outer=[{"sigma": [0.05, 0.2]}], order=OrderParameter("ncm_error", 1 / 3),
            fn=lesde.metrics.metrics_fn(["ncm_error"]), t1=100.0, dt=0.5, tol=0.005)
        ds["critical"]  # alpha - beta where the mean NCM error crosses 1/3
    """
    import xarray as xr

    inner = inner if isinstance(inner, InnerAxis) else InnerAxis(inner)
    tol, points, initial, level = _check_search(tol, points, initial, level)
    seeds = check_positive_int("seeds", seeds)
    if not isinstance(order, OrderParameter):
        raise ValueError(f"order must be an OrderParameter, got {order!r}")
    if not callable(build) or not callable(fn):
        raise ValueError("build and fn must be callables")
    grid = outer if isinstance(outer, Grid) else Grid(outer or [])
    if grid.derived:
        raise ValueError("give derived parameters to locate_boundary's `derived`, not to the outer Grid")
    clash = set(inner.ends) & set(grid.names)
    if clash:
        raise ValueError(f"parameters {sorted(clash)} are on the inner axis and an outer axis")
    derived = dict(derived or {})
    for name, f in derived.items():
        if name in inner.ends or name in grid.names or not callable(f):
            raise ValueError(f"derived parameter {name!r} must be a new name and a callable, got {f!r}")
    times = None
    if horizons is not None:
        times = np.asarray(horizons, dtype=float).ravel()
        if times.size == 0 or not np.isfinite(times).all() or (times <= 0).any() \
                or (np.diff(times) <= 0).any() or times[-1] > float(t1) * (1 + 1e-12):
            raise ValueError(f"horizons must be increasing times in (0, t1 = {t1:g}], got {horizons!r}")
    H = 1 if times is None else times.size
    G = grid.num_cells
    C = G * H

    def params_at(cells: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
        values = {k: np.asarray(v, dtype=float) for k, v in grid.params(np.asarray(cells) // H).items()}
        values.update(inner.params(x))
        base = dict(values)
        with np.errstate(all="ignore"):
            for name, f in derived.items():
                values[name] = np.broadcast_to(np.asarray(f(base), dtype=float), np.shape(x)).copy()
        return values

    # every model of the first round (the ends of the range and the points between) is
    # checked before anything is compiled: a bad value is named with its cell
    first = np.linspace(inner.lo, inner.hi, initial)
    cells0 = np.repeat(np.arange(C), initial)
    x0 = np.tile(first, C)
    check = params_at(cells0, x0)
    for name in derived:
        bad = ~np.isfinite(check[name])
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"derived parameter {name!r} is {check[name][i]} at {_where(check, i)}; "
                             "derived values must be finite")
    axis = Grid([{k: v for k, v in check.items()}])
    probe_model = _safe_build(build, {k: jnp.asarray(v[0]) for k, v in check.items()}, check)
    steps = _grid(0.0, t1, dt) if not isinstance(probe_model, AbstractMap) else None
    check_cells(build, axis, None if steps is None else np.linspace(0.0, float(t1), steps + 1))

    per_round = C * points * seeds
    if chunk_size is None:
        chunk_size = min(per_round, auto_chunk_size(probe_model, jax.devices()))
    chunk_size = check_positive_int("chunk_size", chunk_size)
    ms = MemberSolver(build, fn, t1=t1, dt=dt, solver=solver, seed=seed, ts=times,
                      chunk_size=min(chunk_size, max(per_round, C * initial * seeds)))
    counts = {code: 0 for code in STATUS_NAMES}

    def evaluate(cells, x, ids):
        n = len(cells)
        p = params_at(cells, x)
        rep = {k: np.repeat(v, seeds) for k, v in p.items()}
        metrics, status = ms.solve(rep, np.repeat(ids, seeds), np.tile(np.arange(seeds), n))
        if order.metric not in metrics:
            raise ValueError(f"fn does not return the order parameter's metric {order.metric!r}; it returns {sorted(metrics)}")
        v = np.asarray(metrics[order.metric], dtype=float)
        if times is not None:
            v = v.reshape(n * seeds, H, -1)[np.arange(n * seeds), np.repeat(np.asarray(cells) % H, seeds)]
        if v.ndim != 1 and not (v.ndim == 2 and v.shape[1] == 1):
            raise ValueError(f"the order parameter's metric {order.metric!r} must be a scalar per member, got shape {v.shape[1:]}")
        v = v.reshape(n, seeds)
        st = status.reshape(n, seeds)
        if times is None:
            v = np.where(st != 0, np.nan, v)
        for code in counts:
            counts[code] += int((st == code).sum())
        return v, np.where(np.isnan(v), np.maximum(st, 1), 0)

    out = bracket_search(evaluate, np.full(C, inner.lo), inner.hi, order=order, tol=tol,
                         points=points, initial=initial, level=level, progress=progress)

    shape = grid.shape + ((H,) if times is not None else ())
    dims = grid.dims + (["time"] if times is not None else [])
    coords: dict[str, Any] = {}
    for dim, ax in zip(grid.dims, grid.axes):
        for name, values in ax.items():
            coords[dim_name(name)] = (dim, values, {"path": name})
    if times is not None:
        coords["time"] = times
    data = {}
    for k, v in out.items():
        if isinstance(v, np.ndarray) and v.shape[:1] == (C,):
            data[k] = (dims + (["probe"] if v.ndim == 2 else []), v.reshape(shape + v.shape[1:]))
    crit = out["critical"]
    for name, values in inner.params(crit).items():
        data[f"critical_{dim_name(name)}"] = (dims, values.reshape(shape), {"path": name})
    ds = xr.Dataset(data, coords=coords)
    ds = ds.assign_coords(probe=np.arange(ds.sizes["probe"]))
    ds["cell_status"].attrs["meaning"] = ", ".join(f"{v} = {k}" for k, v in CELL_STATUS.items())
    for k in ("critical", "critical_low", "critical_high", "bracket_low", "bracket_high", "probe_x"):
        ds[k].attrs["path"] = inner.path
    width = inner.hi - inner.lo
    ds.attrs.update({
        "inner": inner.name,
        "inner_path": inner.path,
        "inner_segment": dump_json({k: v.tolist() for k, v in inner.ends.items()}, indent=None).strip(),
        "inner_lo": inner.lo,
        "inner_hi": inner.hi,
        "order_metric": order.metric,
        "order_reduce": order.reduce,
        "order_threshold": float(order.threshold),
        "order": order.describe(),
        "tol": tol,
        "level": level,
        "probe_level": float(out["probe_level"]),
        "points": points,
        "initial": initial,
        "seeds": seeds,
        "max_rounds": int(out["max_rounds"]),
        "members_solved": int(out["members_solved"]),
        "member_status_counts": dump_json({STATUS_NAMES[k]: n for k, n in counts.items() if n}, indent=None).strip(),
        "wall_time_s": round(float(out["wall_time_s"]), 3),
        "grid_points": grid_points(width, tol),
        "grid_members": grid_points(width, tol) * G * seeds,
        "chunk_size": ms.chunk_size,
        "solver_calls": ms.calls,
        "num_devices": len(ms.devices),
        "backend": jax.default_backend(),
    })
    if order.below is not None:
        ds.attrs["order_below"] = float(order.below)
    if order.above is not None:
        ds.attrs["order_above"] = float(order.above)
    if attrs:
        ds.attrs.update(attrs)
    return ds


def _where(values: Mapping[str, np.ndarray], i: int) -> str:
    return ", ".join(f"{k} = {float(v[i]):g}" for k, v in values.items())


def _safe_build(build, params, values):
    try:
        return build(params)
    except KeyError as e:
        raise ValueError(
            f"build reads the parameter {e.args[0]!r}, which the search does not set; it sets "
            f"{list(values)}"
        ) from None
    except ValueError as e:
        raise ValueError(f"{_where(values, 0)}: {e}") from None
