"""Pictures of sweep results: phase diagrams with the theory's transition lines."""

from pathlib import Path

import numpy as np
import yaml


def theory_lines(ds) -> dict[str, float]:
    """Where the spec puts a transition, per swept parameter: alpha = beta when one of
    them is swept and the other is a constant; r = 1 for a power-law exponent."""
    config = yaml.safe_load(ds.attrs.get("config", "{}")) or {}
    impact = (config.get("model") or {}).get("impact") or {}
    lines = {}
    for swept, other in (("alpha", "beta"), ("beta", "alpha")):
        value = impact.get(other)
        if isinstance(value, dict) and isinstance(value.get("constant"), (int, float)):
            value = value["constant"]
        if isinstance(value, (int, float)):
            lines[f"impact.{swept}"] = float(value)
    for name in ("impact.alpha.r", "impact.beta.r"):
        lines[name] = 1.0
    zipped = "impact.alpha+impact.beta"
    if zipped in ds.dims:  # alpha and beta swept together: the line is where they cross
        a, b = np.asarray(ds["impact.alpha"]), np.asarray(ds["impact.beta"])
        gap = a - b
        order = np.argsort(gap)
        if gap.min() <= 0 <= gap.max():
            lines[zipped] = float(np.interp(0.0, gap[order], a[order]))
    return lines


def _is_log(values) -> bool:
    v = np.asarray(values, dtype=float)
    return v.size > 2 and bool(np.all(v > 0)) and np.allclose(np.diff(np.log(v)), np.log(v[1] / v[0]))


def _grid_dims(ds):
    return [d for d in ds.dims if d not in ("seed", "time")]


def plot_phase_diagram(ds, metrics: list[str] | None = None, path: str | Path | None = None):
    """Heat maps of the seed-mean of each metric over the last two swept dimensions (one
    row per setting of any further dimensions), or curves for a one-dimensional sweep,
    with the theoretical transition drawn as a dashed line. The fraction of members
    that did not succeed is shown as the last panel. Saves a PNG to `path` if given and
    returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = _grid_dims(ds)
    if not dims:
        raise ValueError("the dataset has no swept dimension to plot")
    names = metrics or [v for v in ds.data_vars if v != "status"]
    unknown = [n for n in names if n not in ds.data_vars]
    if unknown:
        raise ValueError(f"metrics {unknown} are not in the dataset; it has {list(ds.data_vars)}")
    panels = {n: ds[n].mean("seed") for n in names}
    panels["fraction failed"] = (ds["status"] != 0).mean("seed")
    lines = theory_lines(ds)

    def coord(dim):
        # a dimension's values; zipped dims ('a+b') show their first parameter
        return np.asarray(ds[dim.split("+")[0]].values)

    def label(dim):
        first, *rest = dim.split("+")
        return first if not rest else f"{first} (zipped with {', '.join(rest)})"

    def line_at(dim):
        return lines.get(dim, lines.get(dim.split("+")[0]))

    def norm(z):
        z = z[np.isfinite(z)]
        if z.size and z.min() > 0 and z.max() / z.min() > 1e3:
            return matplotlib.colors.LogNorm(z.min(), z.max())
        return None

    if len(dims) == 1:
        (x,) = dims
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
        for ax, (name, da) in zip(axes[0], panels.items()):
            if "time" in da.dims:
                for i, t in enumerate(np.asarray(ds["time"])):
                    ax.plot(coord(x), np.asarray(da.isel(time=i)), "o-", ms=3, label=f"t = {t:g}")
            else:
                ax.plot(coord(x), np.asarray(da), "o-")
            if line_at(x) is not None:
                ax.axvline(line_at(x), color="k", ls="--", lw=1, label="theory")
                ax.legend(fontsize=7)
            if _is_log(coord(x)):
                ax.set_xscale("log")
            ax.set_xlabel(label(x))
            ax.set_title(name)
        fig.tight_layout()
    else:
        y, x = dims[-2], dims[-1]
        lead = dims[:-2] + (["time"] if "time" in ds.dims else [])
        rows = [{}] if not lead else [
            dict(zip(lead, idx)) for idx in np.ndindex(*[ds.sizes[d] for d in lead])
        ]
        fig, axes = plt.subplots(
            len(rows), len(panels), figsize=(3.8 * len(panels), 3.2 * len(rows)), squeeze=False
        )
        for r, sel in enumerate(rows):
            for ax, (name, da) in zip(axes[r], panels.items()):
                z = np.asarray(da.isel({d: i for d, i in sel.items() if d in da.dims}).transpose(y, x))
                mesh = ax.pcolormesh(coord(x), coord(y), z, shading="nearest", norm=norm(z))
                if _is_log(coord(x)):
                    ax.set_xscale("log")
                if _is_log(coord(y)):
                    ax.set_yscale("log")
                fig.colorbar(mesh, ax=ax)
                if line_at(x) is not None:
                    ax.axvline(line_at(x), color="w", ls="--", lw=1.2)
                if line_at(y) is not None:
                    ax.axhline(line_at(y), color="w", ls="--", lw=1.2)
                title = name + "".join(
                    f"\n{d} = {np.asarray(ds[d.split('+')[0]])[i]:.3g}" for d, i in sel.items()
                )
                ax.set_title(title, fontsize=9)
                ax.set_xlabel(label(x))
                ax.set_ylabel(label(y))
        fig.tight_layout()
    if path is not None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.partial.png")
        fig.savefig(tmp, dpi=110)
        tmp.replace(path)
    return fig
