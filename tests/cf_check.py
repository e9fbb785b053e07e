"""A check of result files against the CF conventions that lesde's files claim
(`Conventions`), with cf_xarray: what a CF reader needs from every variable, coordinate,
flag and global attribute."""

from pathlib import Path

import cf_xarray  # noqa: F401 (the .cf accessor)
import numpy as np
import xarray as xr
from cf_xarray.units import units as cf_units

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def assert_cf(path: str | Path) -> xr.Dataset:
    """Assert that `path` is a netCDF4 file to the CF conventions; return it (decoded)."""
    path = Path(path)
    assert path.read_bytes()[:8] == HDF5_SIGNATURE, f"{path} is not netCDF4 (HDF5)"
    with xr.open_dataset(path, decode_cf=False) as raw:
        raw = raw.load()
    assert raw.attrs["Conventions"].startswith("CF-1."), raw.attrs.get("Conventions")
    for key in ("title", "history", "source"):
        assert isinstance(raw.attrs.get(key), str) and raw.attrs[key], f"{path}: global {key}"
    assert raw.attrs["source"].startswith("lesde ")
    for dim in raw.dims:
        assert str(dim).isidentifier(), f"{path}: dimension {dim!r} is not an identifier"
    for name, var in raw.variables.items():
        where = f"{path.name}: {name}"
        assert isinstance(var.attrs.get("long_name"), str) and var.attrs["long_name"], where
        cf_units(var.attrs["units"])  # raises for units that are not CF (udunits) units
        if name in raw.dims:  # a coordinate variable: no missing values, monotonic
            assert "_FillValue" not in var.attrs, f"{where}: a coordinate with _FillValue"
            values = np.asarray(var.values)
            if values.size > 1 and values.dtype.kind in "fiu":
                d = np.diff(values.astype(float))
                assert (d > 0).all() or (d < 0).all(), f"{where}: not monotonic"
        if "flag_values" in var.attrs:
            values = np.atleast_1d(var.attrs["flag_values"])
            meanings = var.attrs["flag_meanings"].split()
            assert len(values) == len(meanings) == len(set(meanings)), where
            assert values.dtype == var.dtype, f"{where}: flag_values {values.dtype} vs {var.dtype}"
    ds = xr.load_dataset(path)
    for name, var in ds.data_vars.items():
        if "flag_meanings" in var.attrs:  # cf_xarray decodes the flags
            first = var.attrs["flag_meanings"].split()[0]
            assert (ds[name].cf == first).dtype == bool
    return ds
