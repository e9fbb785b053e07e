"""Running a sweep config to a netCDF file, resumably."""

import os
import shutil
from pathlib import Path

import jax
import yaml

from ..metrics import METRIC_DIMS, metrics_fn
from ..solve import fingerprint_of, sweep
from ._config import is_map, SweepConfig
from ._results import versions

RESULT_NAME = "sweep.nc"


def run_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    *,
    chunk_size: int | None = None,
    progress: bool = True,
    keep_chunks: bool = False,
):
    """Solve the sweep of `config` and write `out_dir/sweep.nc` (netCDF, xarray).

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
        lambda params: config.model.build(params),
        s.grid_axes(),
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
    ds = ds[[*config.metrics, "status"]]  # in the config's order (tables, pictures)
    if jax.process_index() == 0:  # several processes: the first one writes
        tmp = out / f".{RESULT_NAME}.partial"
        ds.to_netcdf(tmp, engine="scipy")
        os.replace(tmp, result)
        if not keep_chunks:
            shutil.rmtree(out / "chunks", ignore_errors=True)
    return ds


class ResultError(ValueError):
    """A result file that cannot be read as what it should be."""


def read_sweep(path: str | Path):
    """Read a sweep result (`sweep.nc` of `lesde sweep` or `run_sweep`) into memory.

    Raises `ResultError` naming the file for: a missing file; a file that is not a
    complete netCDF file (truncated, or another format); a netCDF file that is not a
    sweep result (no per-member `status` with a `seed` dimension, e.g. a training log or
    a fit). Returns the Dataset."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise ResultError(f"no such file: {path}")
    try:
        with xr.open_dataset(path, engine="scipy") as ds:
            ds = ds.load()
    except Exception as e:  # scipy's reader raises TypeError, ValueError, OSError, ...
        raise ResultError(
            f"{path} is not a readable netCDF file ({type(e).__name__}: {e}); a sweep result "
            "that was cut short is never renamed to sweep.nc, so this file is damaged or of "
            "another kind: rerun the sweep to write it again"
        ) from None
    if "status" not in ds.data_vars or "seed" not in ds["status"].dims:
        kind = (
            "a training log" if "logits" in ds.data_vars
            else "a fit result" if "impact" in ds.data_vars and "model" in ds.data_vars
            else "not a sweep result"
        )
        raise ResultError(
            f"{path} is {kind}: a sweep result has a per-member 'status' over a 'seed' "
            f"dimension; this file has variables {sorted(ds.data_vars)}"
        )
    return ds
