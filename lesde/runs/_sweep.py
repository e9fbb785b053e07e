"""`lesde sweep`: a sweep config solved to a netCDF file, resumably."""

import shutil
import sys
from pathlib import Path

import jax
import yaml

from .. import __version__
from ..io import (
    check_output_dir, INTERRUPTED, output_lock, OutputError, remove_stale, versions, write_netcdf,
)
from ..io._sweep_io import RESULT_NAME
from ..metrics import METRIC_DIMS, metrics_fn
from ..plot import _params_on, close, plot_load_curves, plot_phase_diagram
from ..solve import fingerprint_of, status_counts, sweep
from ._cf import describe
from ._config import ConfigError, is_map, load_config, SweepConfig
from ._report import flagged_warning, warn


def run_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    *,
    chunk_size: int | None = None,
    progress: bool = True,
    keep_chunks: bool = False,
):
    """Solve the sweep of `config` and write `out_dir/sweep.nc` (netCDF4 to the CF
    conventions, `lesde.io.write_netcdf`).

    Finished chunks are kept in `out_dir/chunks/` while the sweep runs; running the same
    command again after an interruption resumes from them (a different config in the
    same directory is refused). The result file is written under a temporary name and
    renamed when complete; then the chunks are removed (unless `keep_chunks`).
    Returns the Dataset.
    """
    out = Path(out_dir)
    data = config.model_dump(mode="json")
    result = out / RESULT_NAME
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        if result.exists():
            result.unlink()  # being replaced: no longer complete
    s = config.sweep
    ds = sweep(
        lambda params: config.build(params),
        s.grid(),
        t1=config.solve.t1,
        dt=config.solve.dt,
        fn=metrics_fn(config.metrics, config.registry),
        seeds=s.seeds,
        seed=config.solve.seed,
        solver=None if is_map(config.model) else config.solve.solver,
        chunk_size=chunk_size or s.chunk_size,
        store=out / "chunks",
        fingerprint=fingerprint_of(
            {**data, **{k: versions()[k] for k in ("precision", "version_lesde")}}
        ),
        progress=progress,
        attrs={"config": yaml.safe_dump(data, sort_keys=False), **versions()},
        ts=s.save_times,
        metric_dims=METRIC_DIMS,
    )
    ds = describe(ds[[*config.metrics, "status"]])  # in the config's order (tables, pictures)
    if jax.process_index() == 0:  # several processes: the first one writes
        write_netcdf(result, ds, title=f"lesde sweep: {config.model.describe()}, {s.num_cells} cells x {s.seeds} seeds")
        if not keep_chunks:
            shutil.rmtree(out / "chunks", ignore_errors=True)
    return ds


SWEEP_PICTURES = ("phase_diagram.png", "load_curves.png")


def sweep_command(
    config: str | Path,
    out: str | Path,
    *,
    chunk_size: int | None = None,
    distributed: bool = False,
    progress: bool = True,
) -> int:
    """`lesde sweep`: solve every cell x seed of the sweep of the YAML file `config`
    and write sweep.nc and phase_diagram.png (load_curves.png for a spring-block grid)
    to the folder `out`; rerunning after an interruption resumes. `distributed`: call
    `jax.distributed.initialize()` first (run the same command on every host).

    **Returns:** the exit status: 0 every member healthy, 1 members flagged, 2 a bad
    config or output folder, 130 interrupted (finished chunks kept).
    """
    source = config
    try:
        config = load_config(source, schema=SweepConfig)
    except (ConfigError, ValueError) as e:
        print(f"lesde sweep: {e}", file=sys.stderr)
        return 2
    if distributed:
        jax.distributed.initialize()  # the cluster (SLURM, MPI, ...) names the processes
    if jax.process_index() != 0:  # only the first process checks, writes and reports
        run_sweep(config, out, chunk_size=chunk_size, progress=False)
        return 0
    try:
        out = check_output_dir(out)
    except OutputError as e:
        print(f"lesde sweep: {e}", file=sys.stderr)
        return 2
    with output_lock(out, "lesde sweep"):
        remove_stale(out, (RESULT_NAME,) + SWEEP_PICTURES)  # replaced: not from this run
        try:
            return _sweep_into(config, out, chunk_size, progress)
        except KeyboardInterrupt:
            print(
                f"lesde sweep: interrupted; the finished chunks are kept in {out / 'chunks'}/: "
                "run the same command again to resume", file=sys.stderr,
            )
            return INTERRUPTED


def _sweep_into(config, out: Path, chunk_size, progress: bool) -> int:
    s = config.sweep
    print(
        f"lesde {__version__}: sweep of the {config.model.describe()} over "
        f"{' x '.join('+'.join(a) for a in s.axes)} = {s.num_cells} cells x {s.seeds} seeds on "
        f"{len(jax.devices())} {jax.default_backend()} device(s), "
        f"{'float64' if jax.config.jax_enable_x64 else 'float32'}"
    )
    try:
        ds = run_sweep(config, out, chunk_size=chunk_size, progress=progress)
    except ValueError as e:
        print(f"lesde sweep: {e}", file=sys.stderr)
        return 2
    png = out / SWEEP_PICTURES[0]
    close(plot_phase_diagram(ds, path=png))
    pictures = str(png)
    if "gains" in ds.data_vars and len(s.shape) >= 2:
        curves = out / SWEEP_PICTURES[1]
        close(plot_load_curves(ds, path=curves))
        pictures += f" and {curves}"
    scalar = [m for m in config.metrics if set(ds[m].dims) <= set(ds["status"].dims) | {"time"}]
    first = ds[scalar[0] if scalar else "status"].mean("seed", skipna=False)
    when = ""
    if "time" in first.dims:
        first = first.isel(time=-1)
        when = f" at t = {float(ds['time'][-1]):g}"
    for dim in first.dims:  # name each dimension by its parameter's path
        params = _params_on(ds, dim)
        label = params[0] + (" (zipped)" if len(params) > 1 else "")
        first = first.drop_vars([c for c in first.coords if c != dim and dim in first[c].dims])
        first = first.rename({dim: label})
    print(f"{first.name} (mean over seeds; NaN where a seed is flagged){when}:")
    table = first.to_pandas() if first.ndim <= 2 else first.to_dataframe()
    print(table.to_string(float_format="%.4g") if hasattr(table, "to_string") else table)
    counts = ", ".join(f"{n} {name}" for name, n in status_counts(ds["status"]).items())
    print(
        f"{ds.attrs['num_members']} members ({counts}), "
        f"{ds.attrs['wall_time_s_this_run']:.1f} s; results in {out / 'sweep.nc'}, "
        f"pictures in {pictures}"
    )
    warning = flagged_warning("sweep", ds["status"].values)
    warn(warning)
    return 1 if warning else 0

