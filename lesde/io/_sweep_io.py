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
        fingerprint=fingerprint_of(data),
        progress=progress,
        attrs={"config": yaml.safe_dump(data, sort_keys=False), **versions()},
        ts=s.save_times,
        metric_dims=METRIC_DIMS,
    )
    if jax.process_index() == 0:  # several processes: the first one writes
        tmp = out / f".{RESULT_NAME}.partial"
        ds.to_netcdf(tmp, engine="scipy")
        os.replace(tmp, result)
        if not keep_chunks:
            shutil.rmtree(out / "chunks", ignore_errors=True)
    return ds
