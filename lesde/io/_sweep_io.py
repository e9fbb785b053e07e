"""Reading sweep results (`sweep.nc`)."""

from pathlib import Path

from ._netcdf import open_result, ResultError

RESULT_NAME = "sweep.nc"
"""The file of the results in the output folder of a sweep."""


def read_sweep(path: str | Path):
    """Read a sweep result (`sweep.nc` of `lesde sweep` or `run_sweep`) into memory.

    Raises `ResultError` naming the file for: a missing file; a file that is not a
    complete netCDF file (truncated, or another format); a netCDF file that is not a
    sweep result (no per-member `status` with a `seed` dimension, e.g. a training log or
    a fit). Returns the Dataset."""
    path = Path(path)
    if path.is_dir():
        raise ResultError(f"{path} is a folder: name the sweep result in it ({path / RESULT_NAME})")
    ds = open_result(path)
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
