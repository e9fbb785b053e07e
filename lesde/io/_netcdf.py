"""Result files: netCDF4 to the CF conventions, written atomically, and read back whatever
command wrote them.

Every result of lesde (a sweep, a run of `lesde simulate` or `lesde spring`, a fit, a
training grid, a trajectory log) is an `xarray.Dataset` written by `write_netcdf`:

- netCDF4 (HDF5, through h5netcdf), each data variable compressed (zlib, level 4),
  integer types kept as they are (int64 stays int64);
- every variable and coordinate has `long_name` and `units` (CF units; "1" for a
  dimensionless number, which model quantities of lesde are), every dimension name is an
  identifier, coordinates have no fill value;
- a status variable has `flag_values` and `flag_meanings` (`flag_attrs`);
- global attributes: `Conventions` ("CF-1.10"), `title`, `history` (when and by which
  command line it was written), `source` (the lesde version), and what the writer adds
  (the config as YAML, the library versions, the precision).

`open_result` reads any of them, and result files of earlier versions of lesde
(netCDF3) as well.
"""

import datetime
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._atomic import _atomic_write

CONVENTIONS = "CF-1.10"
"""The version of the CF conventions that result files follow."""

RESULT_FILES = ("sweep.nc", "trajectory.nc", "fit.nc", "separation.nc")
"""The result file of each command's output folder: `lesde sweep`, `lesde simulate` and
`lesde spring`, `lesde fit`, `lesde train` (experiment separation)."""

COMMON_ATTRS: dict[str, dict[str, str]] = {
    "seed": {"long_name": "seed index", "units": "1"},
    "time": {"long_name": "training time t", "units": "1"},
    "trial": {"long_name": "trial", "units": "1"},
    "step": {"long_name": "SGD step", "units": "1"},
    "eval_step": {"long_name": "SGD step of the validation", "units": "1"},
    "class": {"long_name": "class", "units": "1"},
    "block": {"long_name": "block l", "units": "1"},
    "spring": {"long_name": "spring l", "units": "1"},
    "class_row": {"long_name": "class of the impacted sample", "units": "1"},
    "class_col": {"long_name": "class of the updated sample", "units": "1"},
}
"""`long_name` and `units` of the dimensions that several kinds of results share."""


FILE_ATTRS = ("Conventions", "title", "history", "source")
"""The global attributes that `write_netcdf` writes itself (replacing any given)."""


class ResultError(ValueError):
    """A result file that cannot be read as what it should be."""


def flag_attrs(meanings: Mapping[str, int], dtype=np.int32) -> dict:
    """CF attributes of a variable of flags: `flag_values` (of the variable's `dtype`)
    and `flag_meanings` (the names, blank-separated, in the same order).

    Example: `flag_attrs({"success": 0, "diverged": 1})` ->
    `{"flag_values": array([0, 1]), "flag_meanings": "success diverged"}`."""
    for name in meanings:
        if not name.isidentifier():
            raise ValueError(f"a flag meaning must be a single word, got {name!r}")
    return {
        "flag_values": np.asarray(list(meanings.values()), dtype=dtype),
        "flag_meanings": " ".join(meanings),
    }


def annotate(ds, attrs: Mapping[str, Mapping]):
    """Add `attrs[name]` (e.g. `long_name`, `units`) to the variables and coordinates of
    `ds` that are named in `attrs` and do not have them yet (`flag_values` are given the
    variable's type); returns a new Dataset (shallow copy; `ds` is left as it is)."""
    ds = ds.copy()
    for name in list(ds.variables):
        given = dict(attrs.get(name) or {})
        if "flag_values" in given:
            given["flag_values"] = np.asarray(given["flag_values"], dtype=ds[name].dtype)
        if given:
            ds[name].attrs = {**given, **ds[name].attrs}
    return ds


def _history() -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    argv = list(sys.argv)
    if argv and argv[0]:
        argv[0] = Path(argv[0]).name
    return f"{stamp}: {shlex.join(argv)}"


def _check_cf(ds) -> None:
    for name in ds.dims:
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"the dimension name {name!r} is not an identifier")
    for name, var in ds.variables.items():
        for attr in ("long_name", "units"):
            value = var.attrs.get(attr)
            if not isinstance(value, str) or not value:
                raise ValueError(f"variable {name!r} has no {attr} (attributes: {dict(var.attrs)})")
        if "flag_values" in var.attrs:
            values = np.atleast_1d(var.attrs["flag_values"])
            if len(values) != len(str(var.attrs.get("flag_meanings", "")).split()):
                raise ValueError(f"variable {name!r}: flag_values and flag_meanings differ in length")
            if values.dtype != var.dtype:
                raise ValueError(
                    f"variable {name!r}: flag_values are {values.dtype}, the variable {var.dtype}"
                )


def _plain(attrs: Mapping) -> dict:
    """Attributes as HDF5 stores them: a subclass of str (numpy.str_, a version string)
    as a plain str."""
    return {k: str(v) if isinstance(v, str) else v for k, v in attrs.items()}


def write_netcdf(path: str | Path, ds, *, title: str, history: str | None = None) -> Path:
    """Write `ds` to `path` as a netCDF4 file to the CF conventions (see the module),
    under a temporary name renamed when complete: a file at `path` is always whole.

    **Arguments:**
    - `ds`: the Dataset; every variable and coordinate must already have `long_name` and
      `units` (`annotate`), or ValueError names the one that has not.
    - `title`: a line that says what the file holds (global attribute `title`).
    - `history`: the line recorded in `history`; default: the time (UTC) and the command
      line of this process.

    **Returns:** the path.

    Example:

        ds = annotate(ds, {"loss": {"long_name": "training loss", "units": "1"}})
        write_netcdf("out/loss.nc", ds, title="training loss of 8 seeds")
    """
    from .. import __version__

    path = Path(path)
    _check_cf(ds)
    ds = ds.copy()
    ds.attrs = {
        "Conventions": CONVENTIONS,
        "title": title,
        "history": history if history is not None else _history(),
        "source": f"lesde {__version__}",
        **{k: v for k, v in ds.attrs.items() if k not in FILE_ATTRS},
    }
    ds.attrs = _plain(ds.attrs)
    for var in ds.variables.values():
        var.attrs = _plain(var.attrs)
    encoding = {}
    for name, var in ds.variables.items():
        if name in ds.coords:
            if var.dtype.kind in "fiu":
                encoding[name] = {"_FillValue": None}
        elif var.dtype.kind in "fiub" and var.ndim:
            encoding[name] = {"zlib": True, "complevel": 4}
    _atomic_write(path, lambda p: ds.to_netcdf(p, engine="h5netcdf", encoding=encoding))
    return path


def _result_path(path: Path) -> Path:
    if path.is_dir():
        found = [path / name for name in RESULT_FILES if (path / name).is_file()]
        if len(found) == 1:
            return found[0]
        if found:
            raise ResultError(f"{path} holds several results ({', '.join(f.name for f in found)}): name one")
        old = sorted(p.name for p in path.glob("*.npz"))
        raise ResultError(
            f"{path} holds no result file ({', '.join(RESULT_FILES)})"
            + (f"; it holds {', '.join(old)}: see below" if old else "")
            + (f"\n{_npz_message(path / old[0])}" if old else "")
        )
    if path.suffix == ".npz":
        raise ResultError(_npz_message(path))
    if not path.is_file():
        raise ResultError(f"no such file: {path}")
    return path


def _npz_message(path: Path) -> str:
    return (
        f"{path} is a NumPy archive written by lesde 0.1 before runs were written as netCDF; "
        "it is not a result file of this version: read its arrays with numpy.load, or run "
        "the command again to write trajectory.nc"
    )


def open_result(path: str | Path):
    """Read a result of lesde into memory: `sweep.nc`, `trajectory.nc` (`lesde simulate`,
    `lesde spring`), `fit.nc`, `separation.nc` or a trajectory log (`.nc`), or the output
    folder of a command (its one result file). Files of earlier versions (netCDF3) are
    read too.

    **Returns:** the `xarray.Dataset`, with the attributes of the file (`title`,
    `history`, the config, the versions).

    **Raises:** `ResultError` naming the file: missing, not netCDF (a damaged or
    truncated file, an old `.npz` archive: with what to do), or a folder with no result
    or several.

    Example: `ds = lesde.open_result("results/phase_transition")`.
    """
    import xarray as xr

    path = _result_path(Path(path))
    try:
        return xr.load_dataset(path)  # netCDF4 (h5netcdf) or netCDF3 (scipy), by content
    except Exception as e:  # each backend raises its own types (OSError, ValueError, ...)
        raise ResultError(
            f"{path} is not a readable netCDF file ({type(e).__name__}: {e}); a result that "
            "was cut short is never renamed to its final name, so this file is damaged or of "
            "another kind: run the command again to write it"
        ) from None
