"""`lesde plot`: the pictures of a sweep result file."""

import sys
from pathlib import Path

from ..io import check_output_file, read_sweep
from ..plot import _grid_dims, plot_load_curves, plot_phase_diagram


def plot_command(
    result: str | Path, out: str | Path | None = None, *, metrics: list[str] | None = None
) -> int:
    """`lesde plot`: draw the phase diagram of the sweep result `result` (sweep.nc) to
    `out` (default: next to the result, .png), and its load-curve grid for a
    spring-block sweep. `metrics`: the metrics to draw (default: all).

    **Returns:** the exit status: 0 written, 2 a bad result file, output or metric.
    """
    path = Path(result)
    out = Path(out) if out else path.with_suffix(".png")
    try:
        ds = read_sweep(path)
        check_output_file(out)
    except ValueError as e:
        print(f"lesde plot: {e}", file=sys.stderr)
        return 2
    written = [out]
    try:
        plot_phase_diagram(ds, metrics=metrics, path=out)
        if "gains" in ds.data_vars and len(_grid_dims(ds)) >= 2:  # spring-block sweep
            written.append(out.with_name(f"{out.stem}_load_curves.png"))
            plot_load_curves(ds, path=written[-1])
    except ValueError as e:
        print(f"lesde plot: {e}", file=sys.stderr)
        return 2
    print(f"written {', '.join(map(str, written))}")
    return 0

