"""Per-step training logs of real networks: the trajectory-log Dataset, its netCDF file,
and the CSV layout of the LE-SDE authors.

A training run trains T independent trials of a network with SGD (batch size 1) for S
steps on K classes. Its log is an `xarray.Dataset` (a "lesde trajectory log") with

- dims `trial` (T), `step` (S), `class` (K), `eval_step` (E, possibly 0);
- coords `trial` (the trial ids, strictly increasing integers), `step` (the step
  numbers: strictly increasing integers >= 0; row t holds the state *before* update t),
  `class` = 0..K-1, `eval_step` (the steps at which validation was measured, strictly
  increasing integers >= 0);
- data vars `sample` (trial, step) int32, the index of the drawn training sample;
  `label` (trial, step) int32, its training label (possibly corrupted); `logits`
  (trial, step, class) float32, its K logits before the update; `train_loss`
  (trial, step) float32, its loss before the update; `val_loss` and `val_acc`
  (trial, eval_step) float32;
- attrs `lesde_log` = "trajectory" (the format marker), `num_classes` = K, and any
  str/int/float attrs of the caller (config, versions).

The CSV layout has one row per step per trial, header
``trial,itr,smp,y,y_logit0,...,y_logit{K-1},tr_loss,val_loss,val_acc``; `itr` is the
step number, `val_loss`/`val_acc` are filled on the rows of eval steps and empty
elsewhere. An eval step that is not a step (the evaluation after the last update) has a
validation-only row per trial: its itr, empty training cells, and the validation values.

Files are written under a temporary name in the same directory and renamed when
complete, so a file at the target path is always a complete log. A CSV file written
row by row as a run goes (`lesde.io.TrajectoryLogger`) can be read while it grows or
after the run was killed: `read_csv` drops a last row cut short by the kill (with a
`LogWarning`), and reads a file whose trials were cut at different steps when told
which part to keep (`ragged`).
"""

import os
import re
import warnings
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import xarray as xr

from .._checks import check_increasing
from ._netcdf import annotate, COMMON_ATTRS, FILE_ATTRS, write_netcdf
from ._atomic import _atomic_write

MARKER = "trajectory"
_EMPTY_EVAL = "lesde_empty_eval"  # in a .nc file only: the log has no eval steps
_RESERVED = ("lesde_log", "num_classes", _EMPTY_EVAL)
_INT32 = np.iinfo(np.int32)
_DIMS = {
    "sample": ("trial", "step"),
    "label": ("trial", "step"),
    "logits": ("trial", "step", "class"),
    "train_loss": ("trial", "step"),
    "val_loss": ("trial", "eval_step"),
    "val_acc": ("trial", "eval_step"),
}
_INT_VARS = ("sample", "label")
_FLOAT_VARS = ("logits", "train_loss", "val_loss", "val_acc")
_CF_ATTRS = {
    **COMMON_ATTRS,
    "sample": {"long_name": "index of the drawn training sample", "units": "1"},
    "label": {"long_name": "training label of the drawn sample", "units": "1"},
    "logits": {"long_name": "logits of the drawn sample before the update", "units": "1"},
    "train_loss": {"long_name": "training loss of the drawn sample before the update", "units": "1"},
    "val_loss": {"long_name": "validation loss", "units": "1"},
    "val_acc": {"long_name": "validation accuracy", "units": "1"},
    # optional variables of `lesde train` (trajectories)
    "features": {"long_name": "logits of every training sample at the snapshot", "units": "1"},
    "snapshot_step": {"long_name": "SGD step of the snapshot", "units": "1"},
    "train_sample": {"long_name": "training sample", "units": "1"},
    "train_labels": {"long_name": "training label of the sample", "units": "1"},
    "impact": {"long_name": "tangent-kernel impact matrix", "units": "1"},
    "impact_ratio": {"long_name": "local-elasticity ratio of the tangent-kernel impact", "units": "1"},
    "impact_step": {"long_name": "SGD step of the tangent-kernel measurement", "units": "1"},
}
_CSV_FIXED = ("trial", "itr", "smp", "y")
_CSV_TAIL = ("tr_loss", "val_loss", "val_acc")


class LogError(ValueError):
    """A trajectory log (in memory or in a file) does not follow the format."""


class LogWarning(UserWarning):
    """A log file was read with rows left out, each named: a last row cut short (a run
    killed while writing it) or, when asked for with `ragged`, the rows of a run whose
    trials were cut at different steps."""


Ragged = Literal["error", "common_steps", "complete_trials"]
_RAGGED = ("error", "common_steps", "complete_trials")


# ---------------------------------------------------------------------------------
# Building and checking


def _int_array(name: str, x: Any, ndim: int) -> np.ndarray:
    """`x` as an int64 array of `ndim` dims; float input must hold integral values."""
    a = np.asarray(x)
    if a.ndim != ndim:
        raise LogError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if a.dtype == bool or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise LogError(f"{name} must hold integers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise LogError(f"{name} must hold integers, got {a[idx].item()!r} at index {idx}")
    return a.astype(np.int64)


def _float_array(name: str, x: Any, ndim: int) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim:
        raise LogError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if a.dtype == bool or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise LogError(f"{name} must be numeric, got dtype {a.dtype}")
    return a


def _to_int32(name: str, a: np.ndarray) -> np.ndarray:
    if a.size and (a.min() < _INT32.min or a.max() > _INT32.max):
        i = int(np.argmax((a < _INT32.min) | (a > _INT32.max)))
        raise LogError(f"{name} must fit in int32, got {a.ravel()[i]}")
    return a.astype(np.int32)


def _check_attrs(attrs: Mapping) -> dict:
    """Attrs as plain str/int/float (what any version of the log file stores), or an
    error."""
    out = {}
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise LogError(f"attribute names must be strings, got {key!r}")
        if isinstance(value, (bool, np.bool_)):
            raise LogError(
                f"attribute {key!r} must be a str, int or float, got bool {value!r} "
                "(store it as an int or a str)"
            )
        if isinstance(value, str):
            out[key] = str(value)  # a subclass (numpy.str_, a version string) as a str
        elif isinstance(value, (int, np.integer)):
            if not _INT32.min <= value <= _INT32.max:
                raise LogError(
                    f"attribute {key!r} = {value} does not fit in int32, the integer "
                    "type of the log's attributes (store it as a str)"
                )
            out[key] = int(value)
        elif isinstance(value, (float, np.floating)):
            out[key] = float(value)
        else:
            raise LogError(
                f"attribute {key!r} must be a str, int or float, got "
                f"{type(value).__name__} {value!r}"
            )
    return out


def make_log(
    sample: Any,
    label: Any,
    logits: Any,
    train_loss: Any,
    val_loss: Any = None,
    val_acc: Any = None,
    *,
    steps: Any = None,
    eval_steps: Any = None,
    trials: Any = None,
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """Build a checked trajectory log from arrays.

    `sample`, `label`, `train_loss` have shape (T, S); `logits` (T, S, K), which sets
    K; `val_loss` and `val_acc` (T, E), or both None for a log without validation
    (E = 0). `steps` (S,) defaults to 0..S-1 and `trials` (T,) to 0..T-1.
    `eval_steps` (E,) is required unless E is 0 or E equals S (then the eval steps
    are the steps). Integer arrays given as floats must hold integral values.
    Integers are stored as int32 and floats as float32; `attrs` (str/int/float values)
    are added to the format's own attrs. Raises `LogError` naming the offending input.
    """
    sample = _int_array("sample", sample, 2)
    label = _int_array("label", label, 2)
    logits = _float_array("logits", logits, 3)
    train_loss = _float_array("train_loss", train_loss, 2)
    T, S, K = logits.shape
    if T < 1 or S < 1 or K < 1:
        raise LogError(
            f"logits must have at least one trial, step and class, got shape "
            f"{logits.shape} (trial, step, class)"
        )
    for name, a in (("sample", sample), ("label", label), ("train_loss", train_loss)):
        if a.shape != (T, S):
            raise LogError(
                f"{name} must have shape (trial, step) = {(T, S)} like logits, got "
                f"{a.shape}"
            )
    if (val_loss is None) != (val_acc is None):
        raise LogError(
            "val_loss and val_acc must both be given or both be None, got "
            f"val_loss {'None' if val_loss is None else 'given'} and val_acc "
            f"{'None' if val_acc is None else 'given'}"
        )
    if val_loss is None:
        val_loss = val_acc = np.zeros((T, 0), np.float32)
    val_loss = _float_array("val_loss", val_loss, 2)
    val_acc = _float_array("val_acc", val_acc, 2)
    if val_loss.shape[0] != T or val_acc.shape != val_loss.shape:
        raise LogError(
            f"val_loss and val_acc must have shape (trial, eval_step) = ({T}, E) with "
            f"the same E, got {val_loss.shape} and {val_acc.shape}"
        )
    E = val_loss.shape[1]

    steps = np.arange(S, dtype=np.int64) if steps is None else _int_array("steps", steps, 1)
    if steps.shape != (S,):
        raise LogError(f"steps must have shape ({S},) (one per step), got {steps.shape}")
    if eval_steps is None:
        if E not in (0, S):
            raise LogError(
                f"eval_steps must be given: val_loss has {E} eval steps, neither 0 nor "
                f"the {S} steps"
            )
        eval_steps = steps if E == S else np.zeros(0, np.int64)
    eval_steps = _int_array("eval_steps", eval_steps, 1)
    if eval_steps.shape != (E,):
        raise LogError(
            f"eval_steps must have shape ({E},) like the eval_step axis of val_loss, "
            f"got {eval_steps.shape}"
        )
    trials = np.arange(T, dtype=np.int64) if trials is None else _int_array("trials", trials, 1)
    if trials.shape != (T,):
        raise LogError(f"trials must have shape ({T},) (one per trial), got {trials.shape}")

    attrs = _check_attrs(dict(attrs or {}))
    clash = [k for k in _RESERVED if k in attrs]
    if clash:
        raise LogError(f"attribute {clash[0]!r} is reserved by the log format")
    with np.errstate(over="ignore"):
        ds = xr.Dataset(
            {
                "sample": (_DIMS["sample"], _to_int32("sample", sample)),
                "label": (_DIMS["label"], _to_int32("label", label)),
                "logits": (_DIMS["logits"], logits.astype(np.float32)),
                "train_loss": (_DIMS["train_loss"], train_loss.astype(np.float32)),
                "val_loss": (_DIMS["val_loss"], val_loss.astype(np.float32)),
                "val_acc": (_DIMS["val_acc"], val_acc.astype(np.float32)),
            },
            coords={
                "trial": trials,
                "step": steps,
                "class": np.arange(K, dtype=np.int64),
                "eval_step": eval_steps,
            },
            attrs={"lesde_log": MARKER, "num_classes": K, **attrs},
        )
    return check_log(annotate(ds, _CF_ATTRS))


def _first_bad(ds: xr.Dataset, name: str, bad: np.ndarray) -> str:
    """'trial 3, step 17' (and ', class 2') for the first True entry of `bad`."""
    idx = np.argwhere(bad)[0]
    dims = ds[name].dims
    parts = [f"{d} {ds[d].values[i].item()}" for d, i in zip(dims, idx)]
    return ", ".join(parts) + f": {ds[name].values[tuple(idx)].item()!r}"


def check_log(ds: xr.Dataset) -> xr.Dataset:
    """Check that `ds` is a trajectory log and return it unchanged.

    Checks the format marker, the attrs (str/int/float; `num_classes` = K), the six
    data variables and their dims, the coordinates (`class` = 0..K-1; `trial`, `step`,
    `eval_step` strictly increasing integers, steps >= 0; eval steps need not be
    steps), integer dtypes of `sample` and `label`, labels in 0..K-1, samples >= 0,
    and finite logits, train losses and validation values. Raises `LogError` naming
    the variable and, for values, the first offending trial and step (and class).
    """
    if not isinstance(ds, xr.Dataset):
        raise LogError(f"a trajectory log must be an xarray.Dataset, got {type(ds).__name__}")
    if "lesde_log" not in ds.attrs:
        raise LogError(
            "missing attribute 'lesde_log' (the format marker, 'trajectory'): not a "
            "trajectory log"
        )
    if ds.attrs["lesde_log"] != MARKER:
        raise LogError(
            f"attribute 'lesde_log' must be {MARKER!r}, got {ds.attrs['lesde_log']!r}"
        )
    _check_attrs(ds.attrs)
    for name, dims in _DIMS.items():
        if name not in ds.data_vars:
            raise LogError(f"missing data variable {name!r} with dims {dims}")
        if ds[name].dims != dims:
            missing = [d for d in dims if d not in ds[name].dims]
            what = f"missing dim {missing[0]!r}" if missing else "dims in another order"
            raise LogError(
                f"data variable {name!r} must have dims {dims}, got {ds[name].dims} "
                f"({what})"
            )
    for dim in ("trial", "step", "class", "eval_step"):
        if dim not in ds.coords:
            raise LogError(f"missing coordinate {dim!r} (the {dim} values)")
        if not np.issubdtype(ds[dim].dtype, np.integer):
            raise LogError(f"coordinate {dim!r} must hold integers, got dtype {ds[dim].dtype}")
    T, S, K = ds.sizes["trial"], ds.sizes["step"], ds.sizes["class"]
    if T < 1 or S < 1 or K < 1:
        raise LogError(
            f"a log needs at least one trial, step and class, got trial = {T}, "
            f"step = {S}, class = {K}"
        )
    k = ds.attrs.get("num_classes")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k != K:
        raise LogError(
            f"attribute 'num_classes' must equal the size of dim 'class' ({K}), got {k!r}"
        )
    if not np.array_equal(ds["class"].values, np.arange(K)):
        raise LogError(f"coordinate 'class' must be 0..{K - 1}, got {ds['class'].values.tolist()}")
    for dim in ("trial", "step", "eval_step"):
        check_increasing(f"coordinate {dim!r}", ds[dim].values, nonnegative=dim != "trial",
                         entry=dim, error=LogError)

    for name in _INT_VARS:
        if ds[name].dtype == bool or not np.issubdtype(ds[name].dtype, np.integer):
            raise LogError(f"data variable {name!r} must hold integers, got dtype {ds[name].dtype}")
    for name in _FLOAT_VARS:
        if not np.issubdtype(ds[name].dtype, np.floating):
            raise LogError(f"data variable {name!r} must hold floats, got dtype {ds[name].dtype}")
    label = ds["label"].values
    bad = (label < 0) | (label >= K)
    if bad.any():
        raise LogError(
            f"label must lie in 0..{K - 1} (num_classes = {K}), got at "
            + _first_bad(ds, "label", bad)
        )
    bad = ds["sample"].values < 0
    if bad.any():
        raise LogError("sample must be >= 0, got at " + _first_bad(ds, "sample", bad))
    for name in _FLOAT_VARS:
        bad = ~np.isfinite(ds[name].values)
        if bad.any():
            raise LogError(f"{name} must be finite, got at " + _first_bad(ds, name, bad))
    return ds


# ---------------------------------------------------------------------------------
# Files


def _suffix(path: Path) -> str:
    s = path.suffix.lower()
    if s not in (".nc", ".csv"):
        raise LogError(
            f"cannot tell the format of {str(path)!r} from its suffix {path.suffix!r}: "
            "use .nc (netCDF) or .csv (the authors' CSV layout)"
        )
    return s


def write_log(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a trajectory log to `path`: a netCDF4 file to the CF conventions
    (`lesde.io.write_netcdf`: long names and units, the command line in `history`) for
    a .nc path, the CSV layout (`write_csv`) for a .csv path.

    The log is checked first. Integer variables and coordinates are stored as int32,
    the format's type (`read_log` gives the coordinates back as int64), and attrs are
    str, int32 or float, as in files of earlier versions (netCDF3), which `read_log`
    still reads. A log with no eval steps is stored without `val_loss`, `val_acc` and
    `eval_step` and with the attr `lesde_empty_eval` = 1.
    The file is written under a temporary name and renamed when complete. Returns
    the path.
    """
    path = Path(path)
    if _suffix(path) == ".csv":
        return write_csv(ds, path)
    ds = check_log(ds)
    out = ds.copy()
    for name in list(out.variables):
        if np.issubdtype(out[name].dtype, np.integer):
            kind = "coordinate" if name in out.coords else "data variable"
            out[name] = out[name].copy(data=_to_int32(f"{kind} {name!r}", out[name].values))
    for v in out.variables.values():
        v.encoding = {}
    out.attrs = _check_attrs(ds.attrs)
    if ds.sizes["eval_step"] == 0:
        out = out.drop_vars(["val_loss", "val_acc", "eval_step"])
        out.attrs[_EMPTY_EVAL] = 1
    others = {n: {"long_name": str(n).replace("_", " "), "units": "1"} for n in out.variables}
    write_netcdf(path, annotate(out, {**others, **_CF_ATTRS}), title="lesde trajectory log: per-step training of real networks")
    return path


def read_log(path: str | Path, *, ragged: Ragged = "error") -> xr.Dataset:
    """Read a trajectory log: a .nc file written by `write_log` (loaded into memory,
    the file closed) or a .csv file in the authors' layout (`read_csv`, which also
    takes `ragged`; a .nc file is never ragged). Returns the checked Dataset; raises
    `LogError` for an unknown suffix or a malformed log."""
    path = Path(path)
    _check_ragged(ragged)
    if _suffix(path) == ".csv":
        return read_csv(path, ragged=ragged)
    if not path.is_file():
        raise FileNotFoundError(f"no log file at {str(path)!r}")
    try:
        ds = xr.load_dataset(path)  # netCDF4, or netCDF3 of earlier versions
    except (TypeError, ValueError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LogError(f"{path}: not a readable netCDF file ({first})") from e
    attrs = {}
    for key, value in ds.attrs.items():
        if key in FILE_ATTRS:  # written by write_netcdf, not the log's own
            continue
        if isinstance(value, np.generic):
            value = value.item()
        attrs[key] = value
    if attrs.pop(_EMPTY_EVAL, 0):
        if "trial" not in ds.dims:
            raise LogError(f"{path}: missing dim 'trial'")
        T = ds.sizes["trial"]
        ds = ds.assign(
            val_loss=(_DIMS["val_loss"], np.zeros((T, 0), np.float32)),
            val_acc=(_DIMS["val_acc"], np.zeros((T, 0), np.float32)),
        ).assign_coords(eval_step=np.zeros(0, np.int64))
    ds.attrs = attrs
    for dim in ("trial", "step", "class", "eval_step"):
        if dim in ds.coords and np.issubdtype(ds[dim].dtype, np.integer):
            ds = ds.assign_coords({dim: ds[dim].values.astype(np.int64)})
    ds = annotate(ds, _CF_ATTRS)
    try:
        return check_log(ds)
    except LogError as e:
        raise LogError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------
# The authors' CSV layout


def csv_columns(num_classes: int) -> list[str]:
    """The header of the CSV layout for `num_classes` classes."""
    logit_cols = [f"y_logit{k}" for k in range(num_classes)]
    return [*_CSV_FIXED, *logit_cols, *_CSV_TAIL]


def write_csv(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a trajectory log in the authors' CSV layout.

    One row per trial and step, header
    ``trial,itr,smp,y,y_logit0,...,y_logit{K-1},tr_loss,val_loss,val_acc`` (`itr` is the
    step coordinate). `val_loss`/`val_acc` are written on the rows of eval steps and
    left empty elsewhere. An eval step that is not a step (`lesde.nets.train_sgd`
    evaluates once more after the last update, at eval_step = steps) gets a
    validation-only row in each trial: its `itr` is the eval step, `smp`, `y`, the
    logits and `tr_loss` are empty and only `val_loss`/`val_acc` are filled. Rows are
    ordered by trial, then itr. Floats are written in the shortest form that reads back
    to the same value in their own precision (float32 or float64), so `read_csv` gives
    back every variable and coordinate of the format exactly. Not stored: attrs, and
    variables beyond the format's six (snapshot `features`, `impact`), which the layout
    has no place for. The log is checked first; the file is written under a temporary
    name and renamed when complete. Returns the path.
    """
    import pandas as pd

    path = Path(path)
    ds = check_log(ds)
    steps = ds["step"].values
    evals = ds["eval_step"].values
    pos = np.searchsorted(steps, evals)
    on_step = (pos < steps.size) & (steps[np.minimum(pos, steps.size - 1)] == evals)
    T, S, K = ds.sizes["trial"], ds.sizes["step"], ds.sizes["class"]
    trials = ds["trial"].values
    cols: dict[str, Any] = {
        "trial": np.repeat(trials, S),
        "itr": np.tile(steps, T),
        "smp": pd.array(ds["sample"].values.ravel(), dtype="Int64"),
        "y": pd.array(ds["label"].values.ravel(), dtype="Int64"),
    }
    logits = ds["logits"].values.reshape(T * S, K)
    for k in range(K):
        cols[f"y_logit{k}"] = logits[:, k]
    cols["tr_loss"] = ds["train_loss"].values.ravel()
    for name in ("val_loss", "val_acc"):
        full = np.full((T, S), np.nan, dtype=ds[name].dtype)
        full[:, pos[on_step]] = ds[name].values[:, on_step]
        cols[name] = full.ravel()
    frame = pd.DataFrame(cols, columns=csv_columns(K))
    alone = evals[~on_step]
    if alone.size:  # validation-only rows
        E = alone.size
        empty = {
            "smp": pd.array([pd.NA] * (T * E), dtype="Int64"),
            "y": pd.array([pd.NA] * (T * E), dtype="Int64"),
            **{f"y_logit{k}": np.full(T * E, np.nan, logits.dtype) for k in range(K)},
            "tr_loss": np.full(T * E, np.nan, ds["train_loss"].dtype),
        }
        extra = pd.DataFrame(
            {
                "trial": np.repeat(trials, E), "itr": np.tile(alone, T), **empty,
                "val_loss": ds["val_loss"].values[:, ~on_step].ravel(),
                "val_acc": ds["val_acc"].values[:, ~on_step].ravel(),
            },
            columns=csv_columns(K),
        )
        rank = {t: i for i, t in enumerate(trials)}
        frame = pd.concat([frame, extra], ignore_index=True)
        key = np.lexsort((frame["itr"].to_numpy(), frame["trial"].map(rank).to_numpy()))
        frame = frame.iloc[key]
    _atomic_write(path, lambda p: frame.to_csv(p, index=False, na_rep="", lineterminator="\n"))
    return path


_NAN_WORDS = ("nan", "+nan", "-nan")
_CUT_SHORT = (
    "; the log of a run cut short reads with ragged='common_steps' or "
    "ragged='complete_trials'"
)


def _keep_rectangle(path, ragged, trial, itr, only, lines) -> np.ndarray:
    """The rows (sorted by trial, then itr; (trial, itr) unique) that `ragged` keeps: the
    itr values every trial has ('common_steps') or the trials that have every itr
    value ('complete_trials'), step rows and validation-only rows (`only`) apart. Warns
    (`LogWarning`) with what it leaves out; `LogError` if nothing is left."""
    tids, t_of = np.unique(trial, return_inverse=True)
    T = tids.size
    step = ~only
    if ragged == "common_steps":
        keep = np.zeros(trial.size, bool)
        for rows in (step, only):  # an itr value is kept where every trial has it
            _, v_of, n = np.unique(itr[rows], return_inverse=True, return_counts=True)
            keep[rows] = (n == T)[v_of]
        if not (keep & step).any():
            raise LogError(
                f"{path}: ragged='common_steps': no itr value is shared by every trial "
                f"(trials {tids.tolist()})"
            )
    else:
        n_all = np.unique(itr[step]).size
        full = np.bincount(t_of[step], minlength=T) == n_all
        keep = full[t_of]
        if not full.any():
            raise LogError(
                f"{path}: ragged='complete_trials': no trial has all {n_all} itr values "
                "that the trials have together"
            )
    if not keep.all():
        dropped = np.bincount(t_of[~keep], minlength=T)
        parts = [f"trial {t}: {n} from line {lines[~keep & (trial == t)].min()}"
                 for t, n in zip(tids, dropped) if n]
        what = ", ".join(parts[:5]) + (f", ... ({len(parts)} trials)" if len(parts) > 5 else "")
        kept = np.unique(itr[keep & step])
        if ragged == "common_steps":
            head = f"kept the {kept.size} itr values every trial has ({kept[0]}..{kept[-1]})"
        else:
            head = (f"kept trials {tids[full].tolist()}, which have all {kept.size} itr values "
                    f"({kept[0]}..{kept[-1]}), and left out trials {tids[~full].tolist()}")
        warnings.warn(
            f"{path}: ragged={ragged!r}: {head}; left out {int(dropped.sum())} rows "
            f"({what})",
            LogWarning, stacklevel=3,
        )
    return keep


def _check_ragged(ragged: Any) -> None:
    if not isinstance(ragged, str) or ragged not in _RAGGED:
        raise LogError(f"ragged must be one of {', '.join(map(repr, _RAGGED))}, got {ragged!r}")


def _torn_last_line(path: Path, fields: int) -> tuple[int, int] | None:
    """(line number, fields) of the file's last line if it is a row cut short: it has no
    line end and fewer than `fields` fields (a line of the header is never one); None
    otherwise. Reads the file only if its last byte is not a line end."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        f.seek(0)
        newlines, start, pos = 0, 0, 0  # start: the offset of the last line
        while chunk := f.read(1 << 20):
            n = chunk.count(b"\n")
            if n:
                newlines += n
                start = pos + chunk.rindex(b"\n") + 1
            pos += len(chunk)
        if newlines == 0:  # the header alone
            return None
        f.seek(start)
        have = f.read().count(b",") + 1
    return (newlines + 1, have) if have < fields else None


def read_csv(
    path: str | Path, *, num_classes: int | None = None, ragged: Ragged = "error"
) -> xr.Dataset:
    """Read a log in the authors' CSV layout into a checked trajectory log.

    K is the number of `y_logit` columns, which must be y_logit0..y_logit{K-1}
    (`num_classes`, if given, must agree); columns may come in any order. Rows may come
    in any order; they are sorted by trial, then itr. The trial ids are kept as the
    `trial` coordinate and the itr values become the `step` coordinate; every trial must
    have the same itr values. The eval steps are the itr values whose `val_loss` and
    `val_acc` are filled (in every trial alike; if every row is filled, every step is an
    eval step). A validation-only row (`smp`, `y`, every logit and `tr_loss` empty,
    `val_loss` and `val_acc` filled; `write_csv` writes one per trial for an eval step
    that is not a step, e.g. the evaluation after the last update) adds its itr as an
    eval step only, not as a step; every trial must have the same ones. Blank lines are
    skipped.

    A file being written row by row (`lesde.io.TrajectoryLogger`) can be read at any
    time, also after the run writing it was killed. A last line without its line end
    and with fewer fields than the header is a row cut short by the kill: it is left
    out with a `LogWarning` naming its line (a short line anywhere else, or one that
    ends its line, is refused). `ragged` says what to do when the trials do not all have
    the same itr values, as a run killed part-way leaves them (trials logged one after
    another leave the last one shorter, trials logged step by step may leave some one
    step ahead): 'error' (the default) refuses the file naming the first difference;
    'common_steps' keeps the itr values that every trial has, and the validation-only
    rows that every trial has; 'complete_trials' keeps the trials that have every itr
    value of any trial. Both name what they leave out in a `LogWarning`.

    Raises `LogError` naming the 1-based line of the file and the column for: an unknown
    or duplicated column, a non-numeric cell, an empty cell where a value is required, a
    label `y` that is not an integer in 0..K-1, a non-finite logit or tr_loss, a
    negative smp or itr, a row with only one of val_loss/val_acc, a duplicated
    (trial, itr) row, a trial whose itr values differ from the first trial's, eval
    steps (on step rows or validation-only rows) that differ between trials, a trial
    with validation-only rows and no step rows, and a file of validation-only rows. A
    row with some but not all training cells empty is refused at its first empty cell.
    A missing column is named (it has no line).
    """
    import pandas as pd

    path = Path(path)
    _check_ragged(ragged)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV log at {str(path)!r}")

    def read(**kw):
        try:
            return pd.read_csv(path, header=None, index_col=False, **kw)
        except pd.errors.EmptyDataError:
            raise LogError(f"{path}: line 1: empty file, expected the header") from None
        except pd.errors.ParserError as e:
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
            if m:
                raise LogError(
                    f"{path}: line {m[2]}: {m[3]} fields, but the header (line 1) has "
                    f"{m[1]} columns"
                ) from None
            raise LogError(f"{path}: cannot parse as CSV ({e})") from None

    def fail(line, col, what):
        where = f"line {line}" + (f", column {col!r}" if col is not None else "")
        raise LogError(f"{path}: {where}: {what}")

    first = read(nrows=1, dtype=str, na_filter=False)
    header = [str(h).strip() for h in first.iloc[0].tolist()]
    seen = set()
    for h in header:
        if h in seen:
            fail(1, h, "duplicated column")
        seen.add(h)
    logit_ids = {}
    for h in header:
        m = re.fullmatch(r"y_logit(0|[1-9][0-9]*)", h)
        if m:
            logit_ids[int(m[1])] = h
        elif h not in _CSV_FIXED + _CSV_TAIL:
            fail(1, h, "unknown column (the layout has trial,itr,smp,y,"
                 "y_logit0..y_logit{K-1},tr_loss,val_loss,val_acc)")
    K = len(logit_ids)
    for name in (*_CSV_FIXED, *_CSV_TAIL):
        if name not in seen:
            raise LogError(f"{path}: missing column {name!r}")
    if K == 0:
        raise LogError(f"{path}: missing column 'y_logit0' (no logit columns)")
    for k in range(K):
        if k not in logit_ids:
            raise LogError(
                f"{path}: missing column 'y_logit{k}': the logit columns must be "
                f"y_logit0..y_logit{{K-1}}, got {[logit_ids[i] for i in sorted(logit_ids)]}"
            )
    if num_classes is not None and num_classes != K:
        raise LogError(
            f"{path}: num_classes = {num_classes!r}, but the file has {K} logit columns "
            f"(y_logit0..y_logit{K - 1})"
        )

    torn = _torn_last_line(path, len(header))
    if torn is not None:
        warnings.warn(
            f"{path}: line {torn[0]}: left out the last line, which has {torn[1]} of the "
            f"header's {len(header)} fields and no line end: a row cut short, e.g. by a "
            "run killed while writing it",
            LogWarning, stacklevel=2,
        )
    # Numbers are parsed by pandas; only empty cells become NaN, so a column holding
    # anything else ("nan", words) comes back as strings and is parsed cell by cell.
    data = read(
        skiprows=1, names=header, keep_default_na=False, na_values=[""],
        skip_blank_lines=False, nrows=None if torn is None else torn[0] - 2,
    )
    if len(data) == 0:
        raise LogError(f"{path}: no data rows below the header")
    cells = {}  # column -> (values, empty, "nan" written, text of a cell)
    for h in header:
        col = data[h]
        if col.dtype.kind in "iuf":
            v = col.to_numpy(dtype=np.float64)
            integral = col.dtype.kind in "iu"

            def text(i, v=v, integral=integral):
                x = float(v[i])
                whole = integral or (x.is_integer() and abs(x) < 1e16)
                return str(int(x)) if whole else repr(x)

            empty = np.isnan(v)
            cells[h] = (v, empty, np.zeros(v.shape, bool), text)
        else:
            s = col.astype(object).where(col.notna(), "").astype(str).str.strip()
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
            t = s.to_numpy(dtype=object)
            cells[h] = (v, t == "", s.str.lower().isin(_NAN_WORDS).to_numpy(),
                        lambda i, t=t: t[i])
    blank = np.logical_and.reduce([cells[h][1] for h in header])
    if blank.all():
        raise LogError(f"{path}: no data rows below the header")
    lines = np.arange(2, 2 + len(data))[~blank]
    if blank.any():  # skip blank lines
        kept = np.flatnonzero(~blank)
        cells = {
            h: (v[kept], e[kept], w[kept], lambda i, f=f: f(kept[i]))
            for h, (v, e, w, f) in cells.items()
        }

    # (row, column position, order of the check, line, column, message) of the first
    # bad row of each check; the earliest row is reported
    errors = []

    def note(bad, col, message):
        if bad.any():
            i = int(np.argmax(bad))
            errors.append((i, header.index(col), len(errors), lines[i], col, message(i)))

    # a validation-only row (an eval step that is not a step): every training cell empty,
    # val_loss and val_acc filled
    training = ["smp", "y", *(f"y_logit{k}" for k in range(K)), "tr_loss"]
    eval_only = np.logical_and.reduce([cells[h][1] for h in training])
    eval_only &= ~cells["val_loss"][1] & ~cells["val_acc"][1]

    def parse(col, *, required=True):
        v, empty, nan_word, text = cells[col]
        note(np.isnan(v) & ~empty & ~nan_word, col, lambda i: f"non-numeric value {text(i)!r}")
        if required:
            note(empty & ~eval_only, col, lambda i: "empty cell")
        return v, empty, nan_word, text

    def integers(col, low, high, what, why=""):
        v, empty, _, text = parse(col)
        ok = np.isfinite(v)
        whole = ok & (v == np.round(np.where(ok, v, 0)))
        note(~empty & ~whole, col, lambda i: f"{what} {text(i)!r} is not an integer")
        note(whole & ((v < low) | (v > high)), col,
             lambda i: f"{what} {text(i)} is out of range {low}..{high}{why}")
        return np.where(whole, v, 0).astype(np.int64)

    def floats(col, *, required=True):
        v, empty, nan_word, text = parse(col, required=required)
        with np.errstate(over="ignore"):
            v32 = v.astype(np.float32)
        note(~np.isfinite(v32) & (~np.isnan(v) | nan_word), col,
             lambda i: f"value {text(i)!r} is not a finite float32")
        return v, empty

    trial = integers("trial", -(2**53), 2**53, "trial")
    itr = integers("itr", 0, int(_INT32.max), "itr")
    smp = integers("smp", 0, int(_INT32.max), "sample index")
    y = integers("y", 0, K - 1, "label", f" (K = {K} from the y_logit columns)")
    logits = np.stack([floats(f"y_logit{k}")[0] for k in range(K)], axis=1)
    tr_loss = floats("tr_loss")[0]
    val_loss, no_loss = floats("val_loss", required=False)
    val_acc, no_acc = floats("val_acc", required=False)
    note(no_loss & ~no_acc, "val_loss", lambda i: "empty, but val_acc on the same row is not")
    note(no_acc & ~no_loss, "val_acc", lambda i: "empty, but val_loss on the same row is not")
    if errors:
        _, _, _, line, col, message = min(errors)
        fail(line, col, message)

    order = np.lexsort((itr, trial))  # stable: of duplicated rows the first comes first
    trial, itr, lines = trial[order], itr[order], lines[order]
    dup = (trial[1:] == trial[:-1]) & (itr[1:] == itr[:-1])
    if dup.any():
        i = int(np.argmin(np.where(dup, lines[1:], np.iinfo(np.int64).max)))
        fail(lines[i + 1], "itr",
             f"duplicated row for trial {trial[i + 1]}, itr {itr[i + 1]} (first at line "
             f"{lines[i]})")
    only = eval_only[order]
    if ragged != "error":
        keep = _keep_rectangle(path, ragged, trial, itr, only, lines)
        order, trial, itr, lines, only = order[keep], trial[keep], itr[keep], lines[keep], only[keep]
    if only.all():
        fail(lines[0], "smp", "every row is a validation-only row (empty training cells): "
             "the log has no steps")
    # the validation-only rows, then the step rows in the arrays below
    e_trial, e_itr, e_lines = trial[only], itr[only], lines[only]
    e_loss, e_acc = val_loss[order][only], val_acc[order][only]
    order = order[~only]
    trial, itr, lines = trial[~only], itr[~only], lines[~only]
    tids, starts, counts = np.unique(trial, return_index=True, return_counts=True)
    T, S = tids.size, int(counts[0])
    ref = itr[:S]
    if not (counts == S).all() or not (itr.reshape(T, S) == ref).all():
        for t, start, count in zip(tids[1:], starts[1:], counts[1:]):
            mine = itr[start:start + count]
            if count == S and (mine == ref).all():
                continue
            extra = np.setdiff1d(mine, ref)
            lack = np.setdiff1d(ref, mine)
            if extra.size and (not lack.size or extra[0] < lack[0]):
                line = lines[start + np.searchsorted(mine, extra[0])]
                fail(line, "itr",
                     f"trial {t} has itr {extra[0]}, which trial {tids[0]} does not have "
                     f"(every trial must have the same itr values{_CUT_SHORT})")
            line = lines[np.searchsorted(ref, lack[0])]
            fail(line, "itr",
                 f"trial {t} has no row with itr {lack[0]}, which trial {tids[0]} has at "
                 f"this line (every trial must have the same itr values{_CUT_SHORT})")
    has = ~no_loss[order].reshape(T, S)
    differ = (has != has[0]).any(axis=1)
    if differ.any():
        t = int(np.argmax(differ))
        j = int(np.argmax(has[t] != has[0]))
        fail(lines[t * S + j], "val_loss",
             f"trial {tids[t]} {'has' if has[t, j] else 'has no'} validation values at itr "
             f"{ref[j]}, unlike trial {tids[0]} (every trial must be evaluated at the same "
             "itr values)")

    alone = np.unique(e_itr)  # the eval steps that are not steps
    for t in np.unique(e_trial):
        mine = e_itr[e_trial == t]
        first = e_lines[np.argmax(e_trial == t)]
        if t not in tids:
            fail(first, "trial", f"trial {t} has only validation-only rows (no step rows)")
        if mine.size != alone.size or (mine != alone).any():
            lack = np.setdiff1d(alone, mine)
            fail(first, "itr",
                 f"trial {t} has validation-only rows at itr {mine.tolist()}, but other trials "
                 f"at {alone.tolist()}{f' (it lacks {lack.tolist()})' if lack.size else ''}: "
                 "every trial must be evaluated at the same itr values")
    if alone.size and np.unique(e_trial).size != T:
        t = tids[~np.isin(tids, e_trial)][0]
        fail(lines[starts[np.searchsorted(tids, t)]], "itr",
             f"trial {t} has no validation-only row, but other trials have them at itr "
             f"{alone.tolist()}: every trial must be evaluated at the same itr values")

    shape = (T, S)
    ev = has[0]
    eval_steps = np.concatenate([ref[ev], alone])
    pos = np.argsort(eval_steps, kind="stable")
    losses = np.concatenate([val_loss[order].reshape(shape)[:, ev], e_loss.reshape(T, -1)], axis=1)
    accs = np.concatenate([val_acc[order].reshape(shape)[:, ev], e_acc.reshape(T, -1)], axis=1)
    try:
        return make_log(
            smp[order].reshape(shape), y[order].reshape(shape),
            logits[order].reshape(T, S, K), tr_loss[order].reshape(shape),
            losses[:, pos], accs[:, pos],
            steps=ref, eval_steps=eval_steps[pos], trials=tids,
        )
    except LogError as e:  # pragma: no cover - the row checks above come first
        raise LogError(f"{path}: {e}") from None
