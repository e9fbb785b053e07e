"""Pictures of sweep results: phase diagrams with the theory's transition lines, and the
spring-block model's load curves over the noise-friction plane."""

from pathlib import Path

import numpy as np
import yaml


def _params_on(ds, dim: str) -> list[str]:
    """The paths of the parameters swept along a grid dimension, its own first (a
    result of an older lesde names a zipped dimension 'a+b' after its parameters)."""
    if "+" in dim or "path" not in ds[dim].attrs:
        return dim.split("+")
    others = [c for c in ds.coords if c != dim and ds[c].dims == (dim,) and "path" in ds[c].attrs]
    return [ds[dim].attrs["path"]] + [ds[c].attrs["path"] for c in others]


def _by_path(ds, path: str):
    """The coordinate of the parameter at `path`."""
    for name in ds.coords:
        if ds[name].attrs.get("path") == path:
            return ds[name]
    return ds[path]


def theory_lines(ds) -> dict[str, float]:
    """Where the spec puts a transition, per swept dimension: alpha = beta when one of
    them is swept and the other is a constant, or where they cross when both are swept
    together; r = 1 for a power-law exponent."""
    config = yaml.safe_load(ds.attrs.get("config", "{}")) or {}
    impact = (config.get("model") or {}).get("impact") or {}
    per_param = {"impact.alpha.r": 1.0, "impact.beta.r": 1.0}
    for swept, other in (("alpha", "beta"), ("beta", "alpha")):
        value = impact.get(other)
        if isinstance(value, dict) and isinstance(value.get("constant"), (int, float)):
            value = value["constant"]
        if isinstance(value, (int, float)):
            per_param[f"impact.{swept}"] = float(value)
    lines = {}
    for dim in _grid_dims(ds):
        params = _params_on(ds, dim)
        if {"impact.alpha", "impact.beta"} <= set(params):  # where alpha and beta cross
            a = np.asarray(_by_path(ds, "impact.alpha"))
            gap = a - np.asarray(_by_path(ds, "impact.beta"))
            order = np.argsort(gap)
            if gap.min() <= 0 <= gap.max():
                lines[dim] = float(np.interp(0.0, gap[order], a[order]))
        elif params[0] in per_param:
            lines[dim] = per_param[params[0]]
    return lines


def _is_log(values) -> bool:
    v = np.asarray(values, dtype=float)
    return v.size > 2 and bool(np.all(v > 0)) and np.allclose(np.diff(np.log(v)), np.log(v[1] / v[0]))


def _grid_dims(ds):
    return [d for d in ds["status"].dims if d != "seed"]


def _scalar_metrics(ds) -> list[str]:
    """Metrics with one value per member (and save time): not the vector ones."""
    allowed = set(ds["status"].dims) | {"time"}
    return [v for v in ds.data_vars if v != "status" and set(ds[v].dims) <= allowed]


FIGURE_FORMATS = ("png", "pdf", "svg")
"""The formats a figure is written in, chosen by the file's extension."""

DEFAULT_DPI = 110
"""Dots per inch of a raster (PNG) figure unless a `dpi` is given."""


def figure_format(path: str | Path) -> str:
    """The format of the figure file `path` from its extension ('png', 'pdf', 'svg');
    a ValueError naming the formats for any other extension."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise ValueError(
            f"{path}: a figure is written as {', '.join('.' + f for f in FIGURE_FORMATS)} "
            f"(chosen by the extension), got {Path(path).suffix or 'no extension'}"
        )
    return fmt


def _save(fig, path, dpi: float | None = None) -> None:
    """Write the figure in the format of `path`'s extension (`figure_format`), at `dpi`
    (default `DEFAULT_DPI`), under a temporary name, then rename it into place; the
    folder is created if missing."""
    path = Path(path)
    fmt = figure_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    fig.savefig(tmp, format=fmt, dpi=dpi or DEFAULT_DPI)
    tmp.replace(path)


def close(fig) -> None:
    """Release a figure once saved: pyplot keeps every figure it made until it is
    closed, so a program that draws many (a loop of sweeps) would grow without it."""
    import matplotlib.pyplot as plt

    plt.close(fig)


GAP = ("impact.alpha", "impact.beta")
"""A dimension that sweeps alpha and beta together is drawn against alpha - beta, the
quantity whose sign decides separability."""


def _is_gap(ds, dim) -> bool:
    return dim != "time" and set(_params_on(ds, dim)) == set(GAP)


def _coord(ds, dim):
    """A dimension's values: those of its first parameter (alpha - beta for a dimension
    that zips them)."""
    if _is_gap(ds, dim):
        return np.asarray(_by_path(ds, GAP[0]).values) - np.asarray(_by_path(ds, GAP[1]).values)
    return np.asarray(_by_path(ds, _params_on(ds, dim)[0]).values)


def _name(var, default: str | None = None) -> str:
    """The human-readable name of a variable or coordinate: its `long_name` (else
    `default`, else the metric registry's name for it), with its units unless
    dimensionless."""
    from .metrics import metric_attrs

    name = var.attrs.get("long_name") or default or metric_attrs(str(var.name))["long_name"]
    units = var.attrs.get("units", "1")
    return name if units in ("1", "") else f"{name} [{units}]"


def _param_name(ds, path: str) -> str:
    """The human-readable name of the swept parameter at `path`: the `long_name` of its
    coordinate, else `lesde.models.parameter_name` (results of earlier versions)."""
    from .models import parameter_name

    try:
        return _name(_by_path(ds, path), parameter_name(path))
    except KeyError:
        return parameter_name(path)


def _setting(ds, dim, i) -> str:
    """'name = value' of entry i of a grid dimension (or of the save time)."""
    if dim == "time":
        return f"t = {float(ds['time'][i]):.3g}"
    name = "α - β" if _is_gap(ds, dim) else _param_name(ds, _params_on(ds, dim)[0])
    return f"{name} = {_coord(ds, dim)[i]:.3g}"


def _label(ds, dim):
    """A dimension's axis label: the human-readable name of its parameter (and of those
    zipped with it); alpha - beta where alpha and beta are zipped."""
    if _is_gap(ds, dim):
        return "α - β (intra- minus inter-class impact)"
    first, *rest = _params_on(ds, dim)
    base = first.split("[")[0]  # entries of the same array: their indices only
    rest = [r[len(base):] if r.startswith(base + "[") else _param_name(ds, r) for r in rest]
    name = _param_name(ds, first)
    return name if not rest else f"{name}\n(zipped with {', '.join(rest)})"


def plot_phase_diagram(
    ds, metrics: list[str] | None = None, path: str | Path | None = None, *,
    dpi: float | None = None,
):
    """Heat maps of the seed-mean of each metric over the last two swept dimensions (one
    row per setting of any further dimensions and save time, each metric on one colour
    scale for all its rows, its colour bar labelled with its name), or curves for a
    one-dimensional sweep, with the theoretical transition drawn as a dashed line. A
    cell with a flagged member (status != 0, its metrics NaN) is left blank, and where
    any member is flagged the fraction of flagged members is shown as the last panel.
    Saves it to `path` if given, in the format of its
    extension (PNG, PDF or SVG: `figure_format`; the folder is created) at `dpi`, and
    returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = _grid_dims(ds)
    if not dims:
        raise ValueError("the dataset has no swept dimension to plot")
    names = metrics or _scalar_metrics(ds)
    unknown = [n for n in names if n not in ds.data_vars]
    if unknown:
        raise ValueError(f"metrics {unknown} are not in the dataset; it has {list(ds.data_vars)}")
    # a cell with a flagged seed (NaN) stays blank: its mean would not be a measurement
    panels = {n: ds[n].mean("seed", skipna=False) for n in names}
    titles = {n: _name(ds[n]) for n in names}
    if bool((ds["status"] != 0).any()):
        panels["fraction flagged"] = (ds["status"] != 0).mean("seed")
        titles["fraction flagged"] = "fraction of members flagged"
    lines = theory_lines(ds)
    theory = ", ".join(dict.fromkeys(
        "theory: r = 1" if _params_on(ds, d)[0].endswith(".r") else "theory: α = β" for d in lines
    ))

    def coord(dim):
        return _coord(ds, dim)

    def label(dim):
        return _label(ds, dim)

    def line_at(dim):
        if dim in lines and _is_gap(ds, dim):
            return 0.0  # alpha = beta
        return lines.get(dim)

    def scale(name, da):
        """(norm, colour map, ticks) of a metric, one for all its rows: categories
        (`flag_meanings`) on a diverging map with their names as ticks; values of both
        signs on a diverging map centred at 0; positive values spanning more than three
        decades on a log scale; else linear."""
        z = np.asarray(da)
        z = z[np.isfinite(z)]
        if not z.size:
            return None, None, None
        attrs = ds[name].attrs if name in ds.data_vars else {}
        if "flag_meanings" in attrs:
            values = np.atleast_1d(attrs["flag_values"]).astype(float)
            half = max(np.abs(values).max(), 1e-12)
            ticks = (values, attrs["flag_meanings"].split())
            return matplotlib.colors.CenteredNorm(0.0, half), "RdBu_r", ticks
        if z.min() < 0 < z.max():
            return matplotlib.colors.CenteredNorm(0.0, np.abs(z).max()), "RdBu_r", None
        if z.min() > 0 and z.max() / z.min() > 1e3:
            return matplotlib.colors.LogNorm(z.min(), z.max()), None, None
        return matplotlib.colors.Normalize(z.min(), z.max()), None, None

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
                ax.axvline(line_at(x), color="k", ls="--", lw=1, label=theory)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            if _is_log(coord(x)):
                ax.set_xscale("log")
            ax.set_xlabel(label(x))
            ax.set_ylabel(f"{titles[name]} (seed mean)", fontsize=8)
            ax.set_title(titles[name], fontsize=9)
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
        scales = {name: scale(name, da) for name, da in panels.items()}
        for r, sel in enumerate(rows):
            for ax, (name, da) in zip(axes[r], panels.items()):
                z = np.asarray(da.isel({d: i for d, i in sel.items() if d in da.dims}).transpose(y, x))
                norm, cmap, ticks = scales[name]
                mesh = ax.pcolormesh(coord(x), coord(y), z, shading="nearest", norm=norm, cmap=cmap)
                if _is_log(coord(x)):
                    ax.set_xscale("log")
                if _is_log(coord(y)):
                    ax.set_yscale("log")
                bar = fig.colorbar(mesh, ax=ax, label=titles[name])
                if ticks is not None:
                    bar.set_ticks(ticks[0], labels=ticks[1])
                if line_at(x) is not None:
                    ax.axvline(line_at(x), color="k", ls="--", lw=1.2)
                if line_at(y) is not None:
                    ax.axhline(line_at(y), color="k", ls="--", lw=1.2)
                title = titles[name] + "".join(f"\n{_setting(ds, d, i)}" for d, i in sel.items())
                ax.set_title(title, fontsize=9)
                ax.set_xlabel(label(x))
                ax.set_ylabel(label(y))
        drawn = any(line_at(d) is not None for d in (x, y))
        fig.tight_layout(rect=(0, 0.05 if drawn else 0, 1, 1))
        if drawn:  # the theory line, in a legend below the panels (not over the data)
            dash = matplotlib.lines.Line2D([], [], color="k", ls="--", lw=1.2)
            fig.legend([dash], [theory], loc="lower center", fontsize=8, frameon=False)
    if path is not None:
        _save(fig, path, dpi)
    return fig


SHAPE_COLOURS = {-1: "tab:red", 0: "tab:green", 1: "tab:blue"}
"""Load-curve colours by shape code: concave red, linear green, convex blue."""


def plot_load_curves(ds, path: str | Path | None = None, *, tol: float = 0.1, dpi: float | None = None):
    """The phase diagram of the spring-block model as a grid of small load curves.

    For each cell of the last two swept dimensions (x: the last, y: the one before; one
    panel per setting of any further dimensions, and per save time) the seed-mean gains
    d_1..d_L (variable `gains`) are normalised as in `lesde.metrics.load_curve` and drawn
    as the load curve 1 - sum_{j <= l} d_j over l = 0..L (the analogue of D_l / D_0 of
    a network), coloured by the curve's shape: concave red, linear green, convex blue,
    named in a legend (`tol` as in `load_curve`); each column and row is labelled with
    its parameter's value, each axis with its parameter's name. Saves it to `path` if given (as
    `plot_phase_diagram`); returns the Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import load_curve

    if "gains" not in ds.data_vars:
        raise ValueError(
            f"the dataset has no 'gains' variable (a spring-block sweep with metric 'gains'); "
            f"it has {list(ds.data_vars)}"
        )
    dims = _grid_dims(ds)
    if len(dims) < 2:
        raise ValueError(f"load-curve grids need two swept dimensions, got {dims}")
    y, x = dims[-2], dims[-1]
    lead = dims[:-2] + (["time"] if "time" in ds["gains"].dims else [])
    panels = [dict(zip(lead, idx)) for idx in np.ndindex(*[ds.sizes[d] for d in lead])]
    gains = ds["gains"].mean("seed", skipna=False)  # blank where a seed is flagged
    nx, ny = ds.sizes[x], ds.sizes[y]
    fig = plt.figure(figsize=(min(2 + 0.55 * nx, 14) * len(panels), min(1.5 + 0.5 * ny, 14)))
    subs = np.atleast_1d(fig.subfigures(1, len(panels), squeeze=False)[0])
    xs, ys = _coord(ds, x), _coord(ds, y)
    for sub, sel in zip(subs, panels):
        g = gains.isel(sel).transpose(y, x, ...)
        stats = load_curve(np.asarray(g), tol=tol)
        curve = 1 - np.cumsum(np.asarray(stats.gains), axis=-1)
        curve = np.concatenate([np.ones(curve.shape[:-1] + (1,)), curve], axis=-1)
        codes = np.asarray(stats.shape_code)
        colours = [[SHAPE_COLOURS[int(c)] for c in row] for row in codes]
        _curve_grid(sub, curve, colours, xs, ys)
        title = ", ".join(_setting(ds, d, k) for d, k in sel.items())
        sub.supxlabel(_label(ds, x), fontsize=9)
        sub.supylabel(_label(ds, y), fontsize=9)
        sub.suptitle((title + "\n" if title else "") + "load curves (seed means)", fontsize=9)
    shapes = [matplotlib.lines.Line2D([], [], color=c, lw=1.5) for c in SHAPE_COLOURS.values()]
    fig.legend(shapes, ["concave", "linear", "convex"], loc="upper right", fontsize=8, frameon=False)
    if path is not None:
        _save(fig, path, dpi)
    return fig



def _curve_grid(sub, curve, colours, xs, ys) -> None:
    """Small load curves curve[i, j] (y index i, x index j; l = 0..L) in a grid of axes in
    the subfigure `sub`, y growing upwards, each over the straight reference line."""
    ny, nx = curve.shape[:2]
    grid = sub.subplots(ny, nx, sharex=True, sharey=True, squeeze=False)
    for i in range(ny):
        for j in range(nx):
            ax = grid[ny - 1 - i, j]
            ax.plot(curve[i, j], color=colours[i][j], lw=1.2)
            ax.plot([0, curve.shape[-1] - 1], [1, 0], color="0.8", lw=0.6, zorder=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_xlabel(f"{xs[j]:.2g}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{ys[i]:.2g}", fontsize=7)

def plot_spring_run(
    ts, positions, theory: dict | None = None, path: str | Path | None = None,
    time_label: str = "t", *, dpi: float | None = None,
):
    """One spring-block run over seeds: block positions x_l(t) (seed mean, with the
    first seed faint), and the final elongations d_l (mean +- sd over seeds) against the
    spec's prediction when there is one (`theory['elongations']`, target spring
    included). `positions`: (seeds, T, L). Saves it to `path` if given (as
    `plot_phase_diagram`); returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(positions)
    if x.ndim != 3:
        raise ValueError(f"positions must have shape (seeds, T, L), got {x.shape}")
    ts = np.asarray(ts)
    L = x.shape[-1]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = plt.cm.viridis(np.linspace(0, 0.9, L))
    for l in range(L):
        a.plot(ts, x[:, :, l].mean(0), color=colours[l], label=f"x_{l + 1}")
        a.plot(ts, x[0, :, l], color=colours[l], alpha=0.25, lw=0.7)
    a.set_xlabel(time_label)
    a.set_ylabel("block position")
    a.set_title("positions (seed mean; faint: seed 0)", fontsize=9)
    a.legend(fontsize=7, ncol=2)
    d = np.diff(x[:, -1], axis=-1, prepend=0.0)
    blocks = np.arange(1, L + 1)
    b.errorbar(blocks, d.mean(0), yerr=d.std(0), fmt="o-", capsize=3, label="simulated")
    if theory is not None:
        b.plot(blocks, np.asarray(theory["elongations"])[:L], "k--", label=theory["kind"])
    b.axhline(0, color="0.8", lw=0.6)
    b.set_xlabel("spring l")
    b.set_ylabel("elongation d_l at the end")
    b.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_logit_trajectories(
    logs: dict, path: str | Path | None = None, *, window: int = 1, dpi: float | None = None
):
    """Class-mean logit trajectories of trajectory logs, one panel per log (e.g. per
    label-corruption fraction p; `logs` maps a title value to a log).

    In each panel, for each class k (one colour), the solid line is the class-mean own
    logit Xbar_k(t)[k] and the dashed line the mean of its other logits
    mean_{j != k} Xbar_k(t)[j] (`lesde.fit.class_mean_logits`, pooled over `window` steps).
    """
    from .fit import class_mean_logits

    plt = _pyplot()
    n = len(logs)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharex=True)
    for ax, (title, ds) in zip(axes.flat, logs.items()):
        xbar = class_mean_logits(ds, window=window)
        steps = np.asarray(xbar["step"])
        v = np.asarray(xbar)  # (T, K, K)
        k = v.shape[1]
        for c in range(k):
            colour = f"C{c}"
            ax.plot(steps, v[:, c, c], color=colour, lw=1.2, label=f"class {c}")
            others = np.delete(v[:, c, :], c, axis=1).mean(axis=1)
            ax.plot(steps, others, color=colour, lw=1.0, ls="--")
        ax.set_title(str(title), fontsize=9)
        ax.set_xlabel("SGD step")
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("class-mean logit")
    axes[0, 0].legend(fontsize=7, title="solid: own logit\ndashed: other logits", title_fontsize=7)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def plot_validation(logs: dict, path: str | Path | None = None, *, dpi: float | None = None):
    """Validation accuracy and loss against the step, one line per log (median over
    trials, with the band between the 25th and 75th percentiles), and the chance level
    1/K in the accuracy panel's legend."""
    plt = _pyplot()
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    classes = {int(ds.sizes["class"]) for ds in logs.values()}
    if len(classes) == 1:  # the accuracy of a guess, for logs of one number of classes
        (k,) = classes
        acc.axhline(1 / k, color="0.4", ls=":", lw=1, label=f"chance (1/K = {1 / k:.2g})")
    for i, (title, ds) in enumerate(logs.items()):
        steps = np.asarray(ds["eval_step"])
        for ax, name in ((acc, "val_acc"), (loss, "val_loss")):
            q = np.nanpercentile(np.asarray(ds[name]), [25, 50, 75], axis=0)
            ax.plot(steps, q[1], color=f"C{i % 10}", label=str(title))
            ax.fill_between(steps, q[0], q[2], color=f"C{i % 10}", alpha=0.2, lw=0)
    acc.set_ylabel("validation accuracy")
    loss.set_ylabel("validation loss")
    for ax in (acc, loss):
        ax.set_xlabel("SGD step")
        ax.grid(alpha=0.3)
    acc.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def draw_matrix(ax, matrix, *, title: str = "", label: str = "impact", vmax: float | None = None):
    """Draw a signed K x K matrix (an impact matrix E: row = the impacted class, column =
    the class of the updated sample) on `ax` on a diverging colour map centred at 0
    (blue negative, red positive; symmetric range +-`vmax`, default the largest
    |entry|), with the class indices on both axes and a colour bar labelled `label`.
    Returns the image.

    Example: `draw_matrix(ax, ds["impact"].isel(step=-1), title="fitted E at the end")`."""
    import matplotlib

    e = np.asarray(matrix, dtype=float)
    if e.ndim != 2 or e.shape[0] != e.shape[1]:
        raise ValueError(f"a K x K matrix is needed, got shape {e.shape}")
    finite = e[np.isfinite(e)]
    half = float(vmax if vmax is not None else (np.abs(finite).max() if finite.size else 1.0)) or 1.0
    im = ax.imshow(e, cmap="RdBu_r", norm=matplotlib.colors.CenteredNorm(0.0, half))
    k = e.shape[0]
    ticks = np.arange(k) if k <= 12 else np.arange(0, k, max(1, k // 10))
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.set_xlabel("class of the updated sample", fontsize=8)
    ax.set_ylabel("impacted class", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, label=label)
    return im


NORMALISATIONS = ("cell", "panel")
"""How the load curves of a separation figure are scaled to their cells: 'cell' min-max
normalises each cell's curve (the authors' figures), 'panel' draws the measure itself on
one range for all cells of a panel (of one `train_separation` result)."""


def _drawn_curves(ds, epoch, dims: list[str], normalisation: str) -> np.ndarray:
    """The seed-mean load curves of a `train_separation` result at `epoch`, an array over
    `dims` + layer scaled to [0, 1] for drawing (1: the most data fuzziness, at the top of
    a cell):

    - 'cell': each cell's curve min-max normalised on its own, (c_l - min c) / (max c -
      min c) of the seed mean of the members' `curve` (the authors' figures: only the
      shape shows);
    - 'panel': the result's `measure` m_l itself (e.g. log D_tr_l), seed-averaged, on one
      range for all cells, (m_l - min m) / (max m - min m) over every cell and layer: the
      height of a curve then also shows how much the layers separate the data,
      comparable between cells.

    A flat curve ('cell') or a flat figure ('panel') is NaN, not drawn."""
    sel = ds.sel(epoch=epoch)
    if normalisation == "cell":
        d = np.asarray(sel["curve"].mean("seed").transpose(*dims, "layer"), float)
        lo, hi = np.nanmin(d, -1, keepdims=True), np.nanmax(d, -1, keepdims=True)
        return (d - lo) / np.where(hi > lo, hi - lo, np.nan)
    if normalisation == "panel":
        from .nets import MEASURES

        variable, log = MEASURES[ds.attrs["measure"]]
        m = np.log(sel[variable]) if log else sel[variable]
        d = np.asarray(m.mean("seed").transpose(*dims, "layer"), float)
        lo, hi = np.nanmin(d), np.nanmax(d)
        return (d - lo) / (hi - lo) if hi > lo else np.full_like(d, np.nan)
    _check_normalisation(normalisation)


def _check_normalisation(normalisation) -> None:
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {list(NORMALISATIONS)}; got {normalisation!r}")


def _normalisation_words(normalisation: str, measure: str) -> str:
    what = measure.replace("_", " ")
    return (f"min-max normalised load curves of {what} (each cell on its own)"
            if normalisation == "cell" else f"load curves of {what} on one range for all cells of a panel")


def plot_separation_grid(
    ds, path: str | Path | None = None, *, variable: str | None = None, epoch=None,
    normalisation: str = "cell", dpi: float | None = None,
):
    """The spring-block authors' layout for real networks: on the grid of the last two
    swept dimensions of a `train_separation` result (x: the last, y: the one before; one
    panel per setting of any further ones) each cell shows the seed-mean load curve at
    `epoch` (default the last), coloured by the cell's mean test accuracy. By default the
    curve is the result's `curve`, the load curve of the measure whose curvature and
    shape `train_separation` reports (its `measure` attribute), scaled to the cells as
    `normalisation` says ('cell': each min-max normalised, the authors' figures;
    'panel': the measure on one range for all cells; see `NORMALISATIONS`); a `variable`
    such as "D_trace" or "D" draws that sequence instead, normalised as

        (D_l - D_L) / (D_0 - D_L),   l = 0..L-1.
    """
    _check_normalisation(normalisation)
    if variable is None:
        variable = "curve" if "curve" in ds else "D_trace"  # results of earlier versions: D_trace
    plt = _pyplot()
    from matplotlib import cm, colors

    dims = [d for d in ds[variable].dims if d not in ("seed", "epoch", "layer")]
    if len(dims) < 2:
        raise ValueError(f"a separation grid needs two swept dimensions; this result has {dims}")
    ep = ds["epoch"].values[-1] if epoch is None else epoch
    mean_d = ds[variable].sel(epoch=ep).mean("seed")
    acc = ds["test_acc"].sel(epoch=ep).mean("seed")
    y, x = dims[-2], dims[-1]
    lead = dims[:-2]
    panels = [dict(zip(lead, idx)) for idx in np.ndindex(*[ds.sizes[d] for d in lead])]
    drawn = _drawn_curves(ds, ep, dims, normalisation) if variable == "curve" else None
    norm = colors.Normalize(vmin=float(acc.min()), vmax=float(acc.max()) + 1e-9)
    cmap = plt.get_cmap("viridis")
    nx, ny = ds.sizes[x], ds.sizes[y]
    fig = plt.figure(figsize=(min(2.5 + 0.6 * nx, 14) * len(panels), min(1.5 + 0.55 * ny, 14)))
    subs = np.atleast_1d(fig.subfigures(1, len(panels), squeeze=False)[0])
    for sub, sel in zip(subs, panels):
        d = np.asarray(mean_d.isel(sel).transpose(y, x, "layer"))
        a = np.asarray(acc.isel(sel).transpose(y, x))
        if variable == "curve":
            curve = drawn[tuple(sel[k] for k in lead)]  # (y, x, layer)
        else:
            span = d[..., :1] - d[..., -1:]
            curve = (d - d[..., -1:]) / np.where(span != 0, span, 1)
        colours = [[cmap(norm(v)) for v in row] for row in a]
        _curve_grid(sub, curve, colours, np.asarray(ds[x]), np.asarray(ds[y]))
        title = ", ".join(f"{_name(ds[k])} = {np.asarray(ds[k])[i]:.3g}" for k, i in sel.items())
        sub.supxlabel(_name(ds[x]), fontsize=9)
        sub.supylabel(_name(ds[y]), fontsize=9)
        what = (_normalisation_words(normalisation, ds.attrs.get("measure", "")) if variable == "curve"
                else f"load curves of {_name(ds[variable])}")
        sub.suptitle((title + "\n" if title else "") + f"{what}, epoch {ep}", fontsize=9)
        sub.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=sub.axes, label="test accuracy", shrink=0.8)
    if path is not None:
        _save(fig, path, dpi)
    return fig


PANEL_TITLES = {
    "data_noise": "data noise s",
    "learning_rate": "learning rate",
    "dropout": "dropout q",
    "batch_size": "batch size",
}


def plot_noise_nonlinearity(
    panels: dict, path: str | Path | None = None, *, epoch=None, normalisation: str = "cell",
    dpi: float | None = None,
):
    """The spring-block authors' noise-nonlinearity phase diagram of real networks: one
    panel per `train_separation` result in `panels` (title -> Dataset, each swept over
    `negative_slope` and one noise axis of `lesde.nets.NOISE_AXES`). Rows: the leaky
    slope a, 0 (ReLU) at the top to 1 (linear) at the bottom; columns: the noise axis,
    MORE noise to the LEFT (as the paper). Each cell shows the seed-mean min-max
    normalised load curve (`curve`, of the result's `measure`) from the input (top left)
    to the last hidden layer (bottom right), over a grey background of the seed-mean test
    accuracy (black: the panel's lowest, white: its highest, on its colour bar); the
    straight diagonal of a cell is the linear load curve. In each row the cell of the
    highest accuracy is marked with a blue dot and the most linear cell (smallest seed-mean
    |curvature|) is outlined in blue. `normalisation` scales the curves to their cells:
    'cell' (default, the paper's) min-max normalises each, 'panel' draws the measure on
    one range for all cells of a panel (`NORMALISATIONS`); the figure's title says which.
    """
    _check_normalisation(normalisation)
    plt = _pyplot()
    from matplotlib import cm, colors
    from matplotlib.patches import Rectangle

    from .nets import NOISE_AXES

    names = list(panels)
    fig, axes = plt.subplots(1, len(names), figsize=(4.3 * len(names), 4.6), squeeze=False)
    for ax, title in zip(axes[0], names):
        ds = panels[title]
        dims = [d for d in ds["curve"].dims if d not in ("seed", "epoch", "layer")]
        noise = [d for d in dims if d in NOISE_AXES]
        if "negative_slope" not in dims or len(noise) != 1 or len(dims) != 2:
            raise ValueError(f"panel {title!r}: needs the axes negative_slope and one noise axis; has {dims}")
        axis = noise[0]
        ep = ds["epoch"].values[-1] if epoch is None else epoch
        sel = ds.sel(epoch=ep)
        values = np.asarray(ds[axis], float)
        order = np.argsort(-NOISE_AXES[axis][0] * values, kind="stable")  # most noise first
        curve = _drawn_curves(ds, ep, ["negative_slope", axis], normalisation)[:, order]
        acc = np.asarray(sel["test_acc"].mean("seed").transpose("negative_slope", axis))[:, order]
        c = np.asarray(sel["curvature"].mean("seed").transpose("negative_slope", axis))[:, order]
        ny, nx, L = curve.shape
        finite = acc[np.isfinite(acc)]
        norm = colors.Normalize(vmin=float(finite.min()) if finite.size else 0.0,
                                vmax=float(finite.max()) + 1e-9 if finite.size else 1.0)
        ax.imshow(acc, cmap="gray", norm=norm, extent=(0, nx, ny, 0), aspect="auto", interpolation="nearest")
        t = np.linspace(0.1, 0.9, L)
        for i in range(ny):
            for j in range(nx):
                ax.plot(j + t, i + 0.1 + 0.8 * (1 - curve[i, j]), color="red", lw=1.4, solid_capstyle="round")
            if np.isfinite(acc[i]).any():
                b = int(np.nanargmax(acc[i]))
                ax.plot(b + 0.12, i + 0.85, "o", color="tab:blue", ms=3.5)
            if np.isfinite(c[i]).any():
                m = int(np.nanargmin(np.abs(c[i])))
                ax.add_patch(Rectangle((m + 0.03, i + 0.03), 0.94, 0.94, fill=False, ec="tab:blue", lw=1.2))
        for k in range(1, nx):
            ax.axvline(k, color="0.5", lw=0.5)
        for k in range(1, ny):
            ax.axhline(k, color="0.5", lw=0.5)
        ax.set_xlim(0, nx)
        ax.set_ylim(ny, 0)
        ticks = [str(int(v)) if float(v).is_integer() and v >= 1 else f"{v:.2g}" for v in values[order]]
        ax.set_xticks(np.arange(nx) + 0.5, ticks, fontsize=7)
        slopes = np.asarray(ds["negative_slope"], float)
        ax.set_yticks(np.arange(ny) + 0.5, [f"{v:.2g}" for v in slopes], fontsize=7)
        ax.set_xlabel(f"{PANEL_TITLES.get(axis, axis)} (more noise to the left)", fontsize=9)
        ax.set_ylabel("leaky slope a (0: ReLU, 1: linear)", fontsize=9)
        ax.set_title(f"{title}: {ds.attrs.get('dataset', '')}, {ds.sizes['seed']} seeds, epoch {ep}", fontsize=9)
        fig.colorbar(cm.ScalarMappable(norm=norm, cmap="gray"), ax=ax, orientation="horizontal",
                     fraction=0.05, pad=0.16, label="test accuracy")
    measure = panels[names[0]].attrs.get("measure", "")
    fig.suptitle(f"{_normalisation_words(normalisation, measure)}\n"
                 "dot: most accurate cell of a row; box: most linear cell (smallest |curvature|)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def _r2(pred, data) -> float:
    """R^2 of pred against data (each coordinate's own mean) on the finite entries."""
    ok = np.isfinite(data)
    if not ok.any():
        return float("nan")
    mean = np.where(ok, data, 0.0).sum(0) / np.maximum(ok.sum(0), 1)
    ss_tot = float((np.where(ok, data - mean, 0.0) ** 2).sum())
    ss_res = float((np.where(ok, pred - data, 0.0) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def plot_fit(ds, path: str | Path | None = None, *, dpi: float | None = None):
    """The class means of a `lesde fit` result (its fit.nc Dataset): one panel per class
    k (the first 10), with the data's class means Xbar_k(t)[j] as dots and the fitted
    model's as lines, one colour per logit j (the own logit j = k drawn thicker), the
    held-out window shaded; R^2 on the fit and held-out windows per class in the panel
    titles (over the finite data, each coordinate against its own mean) and for all
    classes in the figure title (the report's, from the attrs `r2_fit`, `r2_heldout`,
    when present)."""
    plt = _pyplot()
    data, model = np.asarray(ds["data"]), np.asarray(ds["model"])
    steps = np.asarray(ds["step"], dtype=float)
    held = np.asarray(ds["heldout"], dtype=bool)
    K, p = data.shape[1], data.shape[2]
    n = min(K, 10)
    cols = min(n, 5 if n > 6 else 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, sharex=True)
    for k, ax in zip(range(n), axes.flat):
        for j in range(p):
            own = j == k
            colour = f"C{j % 10}"
            ax.plot(steps, data[:, k, j], ".", color=colour, ms=4.5 if own else 2.5,
                    label=f"logit {j}" if k == 0 and j < 10 else None)
            ax.plot(steps, model[:, k, j], "-", color=colour, lw=2.2 if own else 0.9)
        if held.any():
            ax.axvspan(steps[held].min(), steps[-1], color="0.85", alpha=0.6, lw=0, zorder=0)
        fit_r2 = _r2(model[~held, k], data[~held, k])
        held_r2 = _r2(model[held, k], data[held, k]) if held.any() else float("nan")
        ax.set_title(f"class {k}: R$^2$ fit {fit_r2:.3g}, held-out {held_r2:.3g}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("SGD step")
    for ax in axes[:, 0]:
        ax.set_ylabel("class-mean logit")
    axes[0, 0].legend(fontsize=6, title="dots: data, lines: model\nshaded: held out",
                      title_fontsize=6, ncol=2 if p > 5 else 1)
    overall = _r2(model[~held], data[~held]), _r2(model[held], data[held]) if held.any() else float("nan")
    overall = ds.attrs.get("r2_fit", overall[0]), ds.attrs.get("r2_heldout", overall[1])
    fig.suptitle(
        f"{ds.attrs.get('loss', 'fit')}, fitted until t = {ds.attrs.get('fit_until', float('nan')):g}: "
        f"R$^2$ fit {overall[0]:.3g}, held-out {overall[1]:.3g} (all classes)", fontsize=9,
    )
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def plot_closed_form(ds, path: str | Path | None = None, *, dpi: float | None = None):
    """The closed-form estimates of a `lesde fit` result (its fit.nc Dataset): the
    integrated impacts A_hat, B_hat (top) and the rates alpha_hat, beta_hat (bottom,
    if computed) against the step (`cf_step`), on a log step axis (steps > 0)."""
    plt = _pyplot()
    steps = np.asarray(ds["cf_step"], dtype=float)
    pos = steps > 0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    for ax, names in ((top, ("A_hat", "B_hat")), (bottom, ("alpha_hat", "beta_hat"))):
        for i, name in enumerate(names):
            if name in ds.data_vars:
                ax.plot(steps[pos], np.asarray(ds[name])[pos], color=f"C{i}", label=name)
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes)
    top.set_ylabel("integrated impact")
    bottom.set_ylabel("impact per step")
    bottom.set_xlabel("SGD step")
    top.set_title(f"closed form ({ds.attrs.get('closed_form_estimator', '')} inversion)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def _series(da, x):
    """(label, selection) of every setting of the dimensions of `da` other than `x`."""
    others = [d for d in da.dims if d != x]
    out = []
    for idx in np.ndindex(*[da.sizes[d] for d in others]):
        sel = dict(zip(others, idx))
        label = ", ".join(
            f"t = {float(da['time'][i]):.4g}" if d == "time"
            else f"{da[d].attrs.get('path', d)} = {float(da[d][i]):.3g}" for d, i in sel.items()
        )
        out.append((label, sel))
    return out


def plot_boundary(ds, path: str | Path | None = None, *, dpi: float | None = None):
    """The result of a boundary search (`lesde.boundary.locate_boundary`, `lesde
    boundary`): (left) the critical value of the inner coordinate against the first
    outer dimension (the horizon when it is the only one), one line per setting of the
    others, with its confidence interval as error bars, the theory's boundary dashed
    where the result has one (`critical_theory`), and cells that were not located
    marked by a cross at the bottom, named in the legend; (middle) every cell's probes,
    the order parameter against the inner coordinate with their confidence intervals,
    and the threshold; (right, with a width) the width of the transition against the
    horizon on log-log axes with the fitted power law and its exponent.
    Saves it to `path` if given (as `plot_phase_diagram`); returns the Figure."""
    import matplotlib.ticker  # noqa: F401 (matplotlib.ticker below)

    plt = _pyplot()
    import matplotlib

    if "critical" not in ds:
        raise ValueError(f"not a boundary result: it has no 'critical' variable ({list(ds.data_vars)})")
    crit = ds["critical"]
    outer = [d for d in crit.dims if d != "time"]
    x = outer[0] if outer else ("time" if "time" in crit.dims else None)
    has_width = "width" in ds and "time" in crit.dims and bool(np.isfinite(ds["width"].values).any())
    n = 3 if has_width else 2
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.9))
    label = "α - β" if ds.attrs.get("inner") == "alpha_minus_beta" else ds.attrs.get("inner_path", "x")
    ax = axes[0]
    series = _series(crit, x) if x is not None else [("", {})]
    for i, (name, sel) in enumerate(series):
        c = ds.isel(sel)
        colour = f"C{i % 10}"
        xs = np.asarray(c[x].values, dtype=float) if x is not None else np.zeros(1)
        y = np.atleast_1d(c["critical"].values)
        lo, hi = np.atleast_1d(c["critical_low"].values), np.atleast_1d(c["critical_high"].values)
        ok = np.atleast_1d(c["cell_status"].values) == 0
        ax.errorbar(xs[ok], y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="o-", ms=4,
                    capsize=3, color=colour, label=name or "located")
        if "critical_theory" in c:
            th = np.atleast_1d(c["critical_theory"].values)
            if np.isfinite(th).any():
                ax.plot(xs, th, "--", color=colour, lw=1)
        if (~ok).any():
            ax.plot(xs[~ok], np.full((~ok).sum(), float(ds.attrs.get("inner_lo", 0.0))), "x",
                    color=colour, ms=8)
    if "critical_theory" in ds and np.isfinite(ds["critical_theory"].values).any():
        ax.plot([], [], "k--", lw=1, label=f"theory: {ds.attrs.get('theory', '')}")
    if not (ds["cell_status"] == 0).all():
        ax.plot([], [], "kx", label="not located")
    if x is not None:
        if _is_log(ds[x].values):
            ax.set_xscale("log")
        ax.set_xlabel("horizon t" if x == "time" else _param_name(ds, ds[x].attrs.get("path", x)))
    ax.set_ylabel(f"critical {label}")
    ax.set_title(f"boundary: {ds.attrs.get('order', '')}\n({ds.attrs.get('level', 0.95):g} intervals, "
                 f"tol {ds.attrs.get('tol', float('nan')):g})", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[1]
    flat = [("", {})] if not crit.dims else _series(crit, None)
    for i, (name, sel) in enumerate(flat):
        c = ds.isel(sel)
        px, pm = c["probe_x"].values, c["probe_mean"].values
        pl, ph = c["probe_low"].values, c["probe_high"].values
        ok = np.isfinite(px) & np.isfinite(pm)
        o = np.argsort(px[ok])
        colour = f"C{i % 10}"
        ax.errorbar(px[ok][o], pm[ok][o], yerr=[pm[ok][o] - pl[ok][o], ph[ok][o] - pm[ok][o]],
                    fmt=".-", ms=3, lw=0.7, elinewidth=0.6, color=colour, alpha=0.8)
        if int(c["cell_status"]) == 0:
            ax.axvline(float(c["critical"]), color=colour, lw=0.5, alpha=0.5)
    ax.axhline(ds.attrs.get("order_threshold", np.nan), color="k", ls=":", lw=1, label="threshold")
    ax.set_xlabel(label)
    ax.set_ylabel(ds.attrs.get("order", "order parameter").rsplit(" = ", 1)[0], fontsize=8)
    ax.set_title(f"probes of every cell ({ds.attrs.get('probe_level', 0.95):.3g} intervals)", fontsize=9)
    ax.legend(fontsize=7)
    if has_width:
        ax = axes[2]
        w = ds["width"]
        t = np.asarray(ds["time"].values, dtype=float)
        for i, (name, sel) in enumerate(_series(w, "time")):
            c = ds.isel(sel)
            colour = f"C{i % 10}"
            y, e = c["width"].values, c["width_se"].values
            ax.errorbar(t, y, yerr=np.where(np.isfinite(e), e, 0), fmt="o", ms=4, capsize=3, color=colour)
            if "exponent" in c and np.isfinite(float(c["exponent"])):
                nu, se, a = float(c["exponent"]), float(c["exponent_se"]), float(c["prefactor"])
                tt = np.geomspace(t.min(), t.max(), 20)
                ax.plot(tt, a * tt**nu, "-", color=colour, lw=1,
                        label=f"{name + ': ' if name else ''}ν = {nu:.2f} ± {se:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(t, [f"{v:g}" for v in t])
        ax.set_xlabel("horizon t")
        ax.set_ylabel(f"width of the transition in {label}")
        ax.set_title(f"finite-size scaling: width ~ t^ν ({ds.attrs.get('width_method', '')})", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig
