"""Reading sweep results (`sweep.nc`)."""

from pathlib import Path

RESULT_NAME = "sweep.nc"
"""The file of the results in the output folder of a sweep."""


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
