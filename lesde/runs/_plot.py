"""`lesde plot`: the pictures of a sweep result file."""

import sys
from pathlib import Path

from ..io import check_output_file, read_sweep
from ..plot import _grid_dims, close, figure_format, plot_load_curves, plot_phase_diagram


def plot_command(
    result: str | Path,
    out: str | Path | None = None,
    *,
    metrics: list[str] | None = None,
    dpi: float | None = None,
) -> int:
    """`lesde plot`: draw the phase diagram of the sweep result `result` (sweep.nc) to
    `out` (default: next to the result, .png; .pdf and .svg by the extension; a missing
    folder is created), and its load-curve grid for a spring-block sweep (next to it,
    `<name>_load_curves` in the same format). `metrics`: the metrics to draw (default:
    all); `dpi`: the resolution of a PNG (default `lesde.plot.DEFAULT_DPI`).

    **Returns:** the exit status: 0 written, 2 a bad result file, output or metric.
    """
    path = Path(result)
    out = Path(out) if out else path.with_suffix(".png")
    try:
        if out.is_dir():
            check_output_file(out)  # refused, with an example of a file name
        figure_format(out)
        if dpi is not None and not dpi > 0:
            raise ValueError(f"--dpi must be > 0, got {dpi}")
        ds = read_sweep(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        check_output_file(out)
    except (ValueError, OSError) as e:
        print(f"lesde plot: {e}", file=sys.stderr)
        return 2
    written = [out]
    try:
        close(plot_phase_diagram(ds, metrics=metrics, path=out, dpi=dpi))
        if "gains" in ds.data_vars and len(_grid_dims(ds)) >= 2:  # spring-block sweep
            written.append(out.with_name(f"{out.stem}_load_curves{out.suffix}"))
            close(plot_load_curves(ds, path=written[-1], dpi=dpi))
    except ValueError as e:
        print(f"lesde plot: {e}", file=sys.stderr)
        return 2
    print(f"written {', '.join(map(str, written))}")
    return 0
