"""`lesde boundary`: a phase boundary located by a batched bracket search, its width and
finite-size scaling, written to a netCDF file with a figure and a summary."""

import sys
from pathlib import Path

import jax
import numpy as np
import xarray as xr
import yaml

from .. import __version__
from ..boundary import (
    CELL_STATUS, finite_size_scaling, GAP_NAME, locate_boundary, transition_width,
)
from ..io import (
    check_output_dir, INTERRUPTED, output_lock, remove_stale, versions, write_netcdf,
)
from ..io._atomic import write_json
from ..metrics import load_curve, metric_attrs, metrics_fn
from ..models import mean_field_gains, SpringBlockMap
from ..plot import close, plot_boundary
from ..solve import STATUS_NAMES
from ._boundary_config import BoundaryConfig
from ._cf import describe
from ._config import is_map, load_config
from ._report import checked, REFUSED, warn

RESULT = "boundary.nc"
PICTURE = "boundary.png"
SUMMARY = "summary.json"

THEORY_GRADIENTS = ("identity", "projected")
"""Gradient models for which the spec puts the boundary at alpha = beta (as the horizon
grows): the class means separate at the rate (alpha - beta) / K."""


def _attrs(ds, config: BoundaryConfig) -> dict:
    """CF attributes of the variables of a boundary result."""
    from ..io import flag_attrs

    x = ds.attrs["inner_path"]
    label = "α - β" if ds.attrs["inner"] == "alpha_minus_beta" else x
    metric = metric_attrs(config.boundary.order.metric)
    order = f"{metric['long_name']} ({config.boundary.order.reduce} over seeds)"
    if config.boundary.order.reduce == "fraction":
        order = f"fraction of seeds ({ds.attrs['order']})"
    level = f"{ds.attrs['level']:g}"
    probe_level = f"{ds.attrs['probe_level']:.4g}"
    out = {
        "critical": {"long_name": f"critical {label}"},
        "critical_low": {"long_name": f"critical {label}, lower end of the {level} confidence interval"},
        "critical_high": {"long_name": f"critical {label}, upper end of the {level} confidence interval"},
        "critical_theory": {"long_name": f"critical {label} of the theory"},
        "cell_status": {"long_name": "status of the cell", **flag_attrs(CELL_STATUS)},
        "rounds": {"long_name": "last round that probed the cell"},
        "num_probes": {"long_name": "probes of the cell"},
        "bracket_low": {"long_name": f"lower end of the final bracket of {label}"},
        "bracket_high": {"long_name": f"upper end of the final bracket of {label}"},
        "direction": {"long_name": "direction of the order parameter along the inner axis (+1 increasing, -1 decreasing, 0 unknown)"},
        "probe": {"long_name": "probe, in the order probed"},
        "probe_x": {"long_name": f"{label} of the probe"},
        "probe_mean": {"long_name": order, "units": metric["units"] if config.boundary.order.reduce == "mean" else "1"},
        "probe_low": {"long_name": f"lower end of the {probe_level} confidence interval of the probe",
                      "units": metric["units"] if config.boundary.order.reduce == "mean" else "1"},
        "probe_high": {"long_name": f"upper end of the {probe_level} confidence interval of the probe",
                       "units": metric["units"] if config.boundary.order.reduce == "mean" else "1"},
        "probe_se": {"long_name": "standard error of the probe",
                     "units": metric["units"] if config.boundary.order.reduce == "mean" else "1"},
        "probe_round": {"long_name": "round of the probe (-1: no probe)"},
        "probe_status": {
            "long_name": "worst status of the members of the probe",
            **flag_attrs({"no_probe": -1, **{n.replace(" ", "_"): c for c, n in STATUS_NAMES.items()}}),
        },
        "width": {"long_name": f"width of the transition in {label} ({ds.attrs.get('width_method', '')})"},
        "width_se": {"long_name": "standard error of the width"},
        "center": {"long_name": f"centre of the fitted logistic in {label}"},
        "exponent": {"long_name": "finite-size scaling exponent of the width"},
        "exponent_se": {"long_name": "standard error of the exponent"},
        "prefactor": {"long_name": "prefactor A of the power law width = A size^exponent"},
        "prefactor_se": {"long_name": "standard error of the prefactor"},
        "points": {"long_name": "widths in the power-law fit"},
        "critical_exponent": {"long_name": f"exponent of the power law critical {label} = A T^exponent"},
        "critical_exponent_se": {"long_name": "standard error of the exponent of the critical value"},
        "critical_prefactor": {"long_name": f"prefactor A of the power law critical {label} = A T^exponent"},
    }
    for name in ds.data_vars:
        if name.startswith("critical_") and "path" in ds[name].attrs and name not in out:
            out[name] = {"long_name": f"{ds[name].attrs['path']} at the critical point"}
    for v in out.values():
        v.setdefault("units", "1")
    return out


def mean_field_boundary(config: BoundaryConfig, ds) -> np.ndarray | None:
    """The mean-field prediction of the spec for a spring-block map (Variant A) whose
    order parameter is the mean load-curve curvature: in every cell, where the curvature
    of `lesde.models.mean_field_gains` after the cell's horizon in steps crosses the
    threshold along the inner axis (NaN where it does not cross in the range). Only the
    shaking may change along the inner axis (else None: no prediction)."""
    o = config.boundary.order
    if not is_map(config.model) or o.metric != "curvature" or o.reduce != "mean":
        return None
    from ..boundary import InnerAxis
    from ..solve import Grid

    inner = config.boundary.axis()
    grid = Grid(config.boundary.outer)
    horizons = config.boundary.horizons or [config.solve.t1]
    derived = {k: d.function() for k, d in (config.boundary.derived or {}).items()}
    out = np.full((grid.num_cells, len(horizons)), np.nan)

    def chain(cell, x):
        """(fixed fields, shakings) of the models of one cell at the coordinates x."""
        fixed, noise = None, []
        for xi in x:
            p = {k: float(v) for k, v in grid.params(np.asarray(cell)).items()}
            p.update({k: float(v) for k, v in inner.params(np.asarray(xi)).items()})
            p.update({k: float(f(dict(p))) for k, f in derived.items()})
            m = config.build(p)
            if not isinstance(m, SpringBlockMap):
                return None
            f = (m.num_blocks, float(m.chain.stiffness), float(m.friction.mu_fwd),
                 float(m.friction.mu_back), float(m.chain.load), float(m.eta), m.chain.control)
            if fixed is not None and f != fixed:
                return None
            fixed = f
            noise.append(float(m.noise))
        return fixed, np.asarray(noise)

    def curvature(fixed, noise, steps):
        L, k, a, b, load, eta, control = fixed
        d = mean_field_gains(L, stiffness=k, noise=noise, mu_fwd=a, mu_back=b, load=load,
                             eta=eta, steps=steps, control=control)
        return np.asarray(load_curve(d).curvature) - o.threshold

    for cell in range(grid.num_cells):
        for h, t in enumerate(horizons):
            x = np.linspace(inner.lo, inner.hi, 101)
            got = chain(cell, x)
            if got is None or not (got[1] > 0).all():
                return None
            c = curvature(got[0], got[1], int(round(t)))
            flips = np.flatnonzero(np.sign(c[:-1]) != np.sign(c[1:]))
            if not flips.size:
                continue
            i = flips[0]
            fine = np.linspace(x[i], x[i + 1], 51)
            got = chain(cell, fine)
            c = curvature(got[0], got[1], int(round(t)))
            j = np.flatnonzero(np.sign(c[:-1]) != np.sign(c[1:]))
            j = j[0] if j.size else 0
            out[cell, h] = fine[j] - c[j] * (fine[j + 1] - fine[j]) / (c[j + 1] - c[j])
    shape = grid.shape + ((len(horizons),) if config.boundary.horizons is not None else ())
    return out.reshape(shape)


def theory_boundary(config: BoundaryConfig, ds):
    """(values, description) of the theory's boundary per cell, or (None, '')."""
    if ds.attrs["inner"] == "alpha_minus_beta" and getattr(config.model, "gradient", None) in THEORY_GRADIENTS:
        return np.zeros(ds["critical"].shape), "α = β (the spec, as T grows)"
    mf = mean_field_boundary(config, ds)
    if mf is not None:
        return mf, "mean field (mean_field_gains), same steps"
    return None, ""


def run_boundary(config: BoundaryConfig, *, progress: bool = True):
    """Locate the boundary of `config` (`lesde.boundary.locate_boundary`), measure the
    width of the transition in every cell (`transition_width`), its finite-size
    scaling over the horizons when there are several (`finite_size_scaling` along
    'time') and the theory's boundary where the spec gives one (alpha = beta for the
    identity and projected models along alpha - beta; the mean-field crossing of the
    load-curve curvature for the spring-block map). Returns one Dataset, with the CF
    attributes of the result file."""
    b = config.boundary
    data = config.model_dump(mode="json")
    ds = locate_boundary(
        config.build,
        b.axis(),
        order=config.order(),
        fn=metrics_fn([b.order.metric], config.registry),
        t1=config.solve.t1,
        dt=config.solve.dt,
        tol=b.tol,
        outer=b.outer,
        derived={k: d.function() for k, d in (b.derived or {}).items()},
        seeds=b.seeds,
        seed=config.solve.seed,
        solver=None if is_map(config.model) else config.solve.solver,
        horizons=b.horizons,
        points=b.points,
        initial=b.initial,
        level=b.level,
        chunk_size=b.chunk_size,
        progress=progress,
        attrs={"config": yaml.safe_dump(data, sort_keys=False), **versions()},
    )
    w = transition_width(ds, method=b.width.method, thresholds=b.width.thresholds)
    ds = ds.assign({k: w[k] for k in w.data_vars})
    ds.attrs.update({f"{k}": v for k, v in w.attrs.items()})
    if b.horizons is not None and len(b.horizons) >= 2:
        fss = finite_size_scaling(w, "time")
        ds = ds.assign({k: fss[k] for k in fss.data_vars})
        ds.attrs["scaling_dim"] = "time"
        if ds.attrs["inner"] == GAP_NAME:  # how the boundary approaches alpha = beta
            gap = xr.Dataset({"width": ds["critical"]})
            fit = finite_size_scaling(gap, "time", weighted=False)
            ds = ds.assign({f"critical_{k}": fit[k] for k in ("exponent", "exponent_se", "prefactor")})
    theory, text = theory_boundary(config, ds)
    if theory is not None:
        ds["critical_theory"] = (ds["critical"].dims, np.asarray(theory, dtype=float))
        ds.attrs["theory"] = text
    return describe(ds, _attrs(ds, config))


def _table(ds) -> str:
    """One line per cell: its setting, the critical value and interval, its status."""
    names = {v: k for k, v in CELL_STATUS.items()}
    crit = ds["critical"]
    lines = []
    for idx in np.ndindex(*crit.shape):
        sel = dict(zip(crit.dims, idx))
        where = ", ".join(_setting(ds, d, i) for d, i in sel.items())
        c = ds.isel(sel)
        status = names[int(c["cell_status"])]
        if status == "located":
            text = (f"{float(c['critical']):.4g} [{float(c['critical_low']):.4g}, "
                    f"{float(c['critical_high']):.4g}]")
            if "width" in c and np.isfinite(float(c["width"])):
                text += f", width {float(c['width']):.3g} ± {float(c['width_se']):.2g}"
            if "critical_theory" in c and np.isfinite(float(c["critical_theory"])):
                text += f", theory {float(c['critical_theory']):.4g}"
        else:
            text = "-"
        lines.append(f"  {where}: {text} ({status}, {int(c['num_probes'])} probes)")
    return "\n".join(lines)


def _num(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def _setting(ds, dim: str, i: int) -> str:
    """'path = value' of every parameter on a dimension (zipped ones too), or 't = T'."""
    if dim == "time":
        return f"t = {float(ds['time'][i]):.4g}"
    names = [dim] + [c for c in ds.coords if c != dim and ds[c].dims == (dim,)]
    return ", ".join(f"{ds[c].attrs.get('path', c)} = {float(ds[c][i]):.4g}" for c in names)


def _entry(ds, sel) -> dict:
    """{parameter path (or 'time'): value} of the cell at `sel`."""
    out = {}
    for d, i in sel.items():
        names = [d] + [c for c in ds.coords if c != d and ds[c].dims == (d,)]
        out.update({ds[c].attrs.get("path", c): float(ds[c][i]) for c in names})
    return out


def _summary(ds, config) -> dict:
    names = {v: k for k, v in CELL_STATUS.items()}
    status = ds["cell_status"].values
    counts = {names[c]: int((status == c).sum()) for c in sorted(set(status.ravel().tolist()))}
    cells = []
    crit = ds["critical"]
    for idx in np.ndindex(*crit.shape):
        sel = dict(zip(crit.dims, idx))
        c = ds.isel(sel)
        entry = _entry(ds, sel)
        entry["status"] = names[int(c["cell_status"])]
        for k in ("critical", "critical_low", "critical_high", "width", "width_se", "critical_theory"):
            if k in c:
                v = float(c[k])
                entry[k] = v if np.isfinite(v) else None
        entry["probes"] = int(c["num_probes"])
        cells.append(entry)
    out = {
        "status": "success" if (status == 0).all() else "flagged",
        "cell_status_counts": counts,
        "inner": ds.attrs["inner_path"],
        "order": ds.attrs["order"],
        "tol": ds.attrs["tol"],
        "level": ds.attrs["level"],
        "members_solved": ds.attrs["members_solved"],
        "grid_members": ds.attrs["grid_members"],
        "grid_points": ds.attrs["grid_points"],
        "member_saving": round(ds.attrs["grid_members"] / max(ds.attrs["members_solved"], 1), 3),
        "wall_time_s": ds.attrs["wall_time_s"],
        "cells": cells,
        **versions(),
    }
    if "theory" in ds.attrs:
        out["theory"] = ds.attrs["theory"]
    if "exponent" in ds:
        e = ds["exponent"]
        out["scaling"] = []
        for idx in np.ndindex(*e.shape):
            sel = dict(zip(e.dims, idx))
            entry = _entry(ds, sel)
            for k in ("exponent", "exponent_se", "prefactor", "points", "critical_exponent",
                      "critical_exponent_se", "critical_prefactor"):
                if k in ds:
                    v = float(ds[k].isel(sel))
                    entry[k] = (int(v) if k == "points" else v) if np.isfinite(v) else None
            out["scaling"].append(entry)
    return out


def boundary_command(config, out, *, progress: bool = True) -> int:
    """`lesde boundary`: locate the boundary of the YAML config `config` and write
    boundary.nc (netCDF4, CF), boundary.png and summary.json (last: its presence marks
    a complete run) to the folder `out`.

    **Returns:** the exit status: 0 every cell located, 1 complete with cells not
    located (not bracketed, non-monotone or flagged members), 2 a bad config or output
    folder (refused before any compute), 130 interrupted (no summary.json).
    """
    source = config
    ready = checked("boundary", lambda: (load_config(source, schema=BoundaryConfig), check_output_dir(out)))
    if ready is None:
        return REFUSED
    config, out = ready
    with output_lock(out, "lesde boundary"):
        remove_stale(out, (SUMMARY, RESULT, PICTURE))  # replaced: not from this run
        try:
            return _boundary_into(config, out, progress)
        except KeyboardInterrupt:
            print("lesde boundary: interrupted; no result was written", file=sys.stderr)
            return INTERRUPTED


def _boundary_into(config: BoundaryConfig, out: Path, progress: bool) -> int:
    b = config.boundary
    axis = b.axis()
    print(
        f"lesde {__version__}: boundary of the {config.model.describe()} along {axis.path} in "
        f"[{axis.lo:.4g}, {axis.hi:.4g}] (tol {b.tol:g}), where {config.order().describe()}; "
        f"{config.num_cells} cells x {b.seeds} seeds per probe on {len(jax.devices())} "
        f"{jax.default_backend()} device(s), {'float64' if jax.config.jax_enable_x64 else 'float32'}"
    )
    try:
        ds = run_boundary(config, progress=progress)
    except ValueError as e:
        print(f"lesde boundary: {e}", file=sys.stderr)
        return 2
    write_netcdf(out / RESULT, ds, title=f"lesde boundary: {config.model.describe()}, {ds.attrs['order']}")
    close(plot_boundary(ds, path=out / PICTURE))
    summary = _summary(ds, config)
    print(f"critical {axis.path} [{ds.attrs['level']:g} interval]:")
    print(_table(ds))
    if "exponent" in ds:
        for entry in summary["scaling"]:
            where = ", ".join(f"{k} = {v:.4g}" for k, v in entry.items()
                              if k not in ("points",) and "exponent" not in k and "prefactor" not in k)
            e, se = entry["exponent"], entry["exponent_se"]
            line = (f"width ~ T^nu{' at ' + where if where else ''}: nu = {_num(e, '.3g')} ± "
                    f"{_num(se, '.2g')} ({entry['points']} widths)")
            if "critical_exponent" in entry:
                line += (f"; critical ~ T^mu: mu = {_num(entry['critical_exponent'], '.3g')} ± "
                         f"{_num(entry['critical_exponent_se'], '.2g')}")
            print(line)
    print(
        f"{summary['members_solved']} members in {summary['wall_time_s']:.1f} s; the grid of the "
        f"same resolution ({summary['grid_points']} points) needs {summary['grid_members']} "
        f"({summary['member_saving']:.3g}x); results in {out / RESULT}, picture in {out / PICTURE}"
    )
    write_json(out / SUMMARY, summary)
    bad = {k: v for k, v in summary["cell_status_counts"].items() if k != "located"}
    if bad:
        warn(f"lesde boundary: cells not located: {', '.join(f'{n} {k}' for k, n in bad.items())}")
        return 1
    return 0
