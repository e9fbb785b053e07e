"""Logging a training loop of any framework (PyTorch, Flax, NumPy) step by step into a
trajectory log that survives the run being killed."""

import math
import os
import threading
from pathlib import Path
from typing import Any, final, Mapping

import numpy as np

from ._logs import _check_attrs, _RESERVED, _suffix, csv_columns, LogError, read_csv, write_log

_INT32_MAX = int(np.iinfo(np.int32).max)
_INT32_MIN = int(np.iinfo(np.int32).min)
_F32_OVERFLOW = 2.0**128 - 2.0**103  # float64 values from here on round to inf in float32


class _Trial:
    """What the logger knows of one trial: the largest itr it has a row for, the
    validation waiting for the row of its step, and counts and hashes of the step and
    eval-step numbers (to check at close that every trial has the same ones)."""

    __slots__ = ("written", "pending", "n_steps", "first", "last", "steps", "n_evals", "evals")

    def __init__(self):
        self.written = -1  # the largest itr of a row of this trial (-1: none)
        self.pending = None  # (step, val_loss cell, val_acc cell)
        self.n_steps = self.n_evals = 0
        self.first = self.last = None
        self.steps = self.evals = 0  # running hashes of the step / eval-step numbers


@final
class TrajectoryLogger:
    """Write the trajectory log of a training loop of your own, one call per SGD step,
    so that a run killed at any point leaves a log of the steps done so far.

    The file is the LE-SDE authors' CSV layout (`lesde.io.write_csv`, read by
    `read_log`/`read_csv` and `lesde fit`), header
    ``trial,itr,smp,y,y_logit0,...,y_logit{K-1},tr_loss,val_loss,val_acc``, one row per
    `step` call, appended as the run goes:

    - `step(trial, step, sample, label, logits, loss)` logs one SGD step of one trial:
      the index of the drawn training sample, its label, its K logits and its loss,
      all *before* the update of that step (row `step` holds the state before update
      `step`, as in every trajectory log);
    - `validation(trial, step, val_loss, val_acc)` logs the validation of the state
      before update `step`: call it *before* `step(trial, step, ...)`; its values go on
      that step's row. A validation whose step is never logged (the evaluation after
      the last update, at step = the number of steps) becomes a validation-only row.

    Values are numbers or arrays of any framework that `np.asarray` reads (NumPy, JAX;
    a PyTorch tensor is detached and moved to the CPU first): one number for `trial`,
    `step`, `sample`, `label`, `loss`, `val_loss`, `val_acc` (an array of one element,
    e.g. a batch of one, is that number) and K numbers for `logits` (shape (K,) or
    (1, K)). Each call is checked before anything is written, and `LogError` names the
    argument, the trial and step and the value: `trial` and `step` integers in int32
    (steps >= 0), `sample` >= 0, `label` in 0..K-1, floats finite in float32 (stored as
    float32). A non-finite loss or logit (a diverged run) is refused like any other bad
    value, as `check_log` refuses it in a log: the rows before it stay a readable log.
    Within a trial, steps and validations come in increasing step order (a validation
    at step t between `step(trial, t - 1, ...)` and `step(trial, t, ...)`); trials may
    come in any order and interleave (trials one after another, or all trials at each
    step); `read_csv` sorts the rows, so the Dataset is the same.

    Crash safety: rows are buffered and appended to the file with `os.fsync` by
    `flush()`, which the logger calls when `flush_every` rows are waiting and after a
    row with validation values, at the next point where every trial logged so far is
    at the same step (trials logged step by step: after a whole round of trials), or
    after one more row per trial (trials logged one after another); and by `close()`.
    Validations waiting for their step's row are written with it (or at `close()`);
    the rows of a trial are written in increasing step order. A run killed at any
    point (also SIGKILL) leaves every flushed row. A write cut short leaves a last line
    without its line end, which `read_csv` leaves out with a `LogWarning` when it
    lacks fields (a cut inside the last cell of a row, its val_acc, keeps every field
    and is read as written). A run killed while its trials are at different steps
    (trials logged one after another) reads with `read_log(path,
    ragged='complete_trials')` or `ragged='common_steps'`.

    At `close()` (or the end of a ``with`` block) the logger writes the waiting
    validations, flushes, closes the file and checks that every trial has the same
    steps and eval steps (`LogError` naming the first trial that differs; the file
    keeps every row). With `netcdf`, it then converts the CSV file into the netCDF log
    (`write_log`, under a temporary name, renamed when complete; the CSV file is kept)
    and stores `attrs` in it (the CSV layout has no place for them). A ``with`` block
    left by an exception writes and closes the file without checks or conversion, so
    a .nc file is always the log of a finished run.

    **Arguments:**

    - `path`: the log: a .csv file, or a .nc file (the rows go to the .csv file of the
      same name while the run goes, converted at close).
    - `num_classes`: K, the number of logits per step.
    - `attrs`: str/int/float attributes (config, versions) of the netCDF log.
    - `flush_every`: rows buffered before a flush (default 1000; 1 makes every row
      durable at once, at the cost of an fsync per step).
    - `netcdf`: convert to netCDF at close (default: when `path` ends with .nc; with a
      .csv path, the .nc file of the same name).
    - `overwrite`: replace existing files at `path` (and its .csv / .nc); by default
      an existing file is refused (`FileExistsError`).

    One logger writes one file, from one process (threads may share it). `close()`
    returns the path of the finished log (.nc or .csv); `csv_path` is the file written
    as the run goes.

    Example (NumPy; a PyTorch loop is examples/log_pytorch_training.py): a linear
    softmax model trained with SGD, batch size 1, 4 trials one after another,
    validated every 50 steps and after the last update, then fitted:

        import numpy as np
        from lesde.io import TrajectoryLogger

        K, steps, lr = 3, 600, 0.1
        rng = np.random.default_rng(0)
        means = rng.normal(size=(K, 8))
        y, y_val = rng.integers(0, K, 300), rng.integers(0, K, 100)
        x, x_val = means[y] + rng.normal(size=(300, 8)), means[y_val] + rng.normal(size=(100, 8))

        def forward(w, x, y):  # logits, cross-entropy losses
            z = x @ w.T
            lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
            return z, lse - np.take_along_axis(z, y[..., None], -1)[..., 0]

        def evaluate(w):
            z, loss = forward(w, x_val, y_val)
            return loss.mean(), (z.argmax(-1) == y_val).mean()

        with TrajectoryLogger("run.nc", num_classes=K, attrs={"lr": lr}) as log:
            for trial in range(4):
                w = 0.1 * rng.normal(size=(K, 8))
                for t in range(steps):
                    if t % 50 == 0:
                        log.validation(trial, t, *evaluate(w))
                    i = rng.integers(len(y))
                    z, loss = forward(w, x[i], y[i])
                    log.step(trial, t, i, y[i], z, loss)
                    p = np.exp(z - z.max())
                    w -= lr * np.outer(p / p.sum() - np.eye(K)[y[i]], x[i])
                log.validation(trial, steps, *evaluate(w))

    then ``lesde fit run.nc --config fit.yaml --out fit``. Killed part-way, this run
    leaves run.csv with the rows flushed so far; its trials run one after another, so
    ``read_log("run.csv", ragged="complete_trials")`` gives the finished ones (to fit
    them, `write_log` that to a .nc file). A run that logs every trial at each step
    leaves a file that ``lesde fit run.csv`` reads as it is.
    """

    def __init__(
        self,
        path: str | Path,
        num_classes: int,
        *,
        attrs: Mapping | None = None,
        flush_every: int = 1000,
        netcdf: bool | None = None,
        overwrite: bool = False,
    ):
        path = Path(path)
        if _suffix(path) == ".nc":
            if netcdf is False:
                raise LogError(
                    f"netcdf=False, but the path {str(path)!r} is a .nc file (give a .csv "
                    "path to write the CSV log only)"
                )
            self.csv_path, self._nc = path.with_suffix(".csv"), path
        else:
            self.csv_path, self._nc = path, (path.with_suffix(".nc") if netcdf else None)
        if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise LogError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if isinstance(flush_every, (bool, np.bool_)) or not isinstance(flush_every, (int, np.integer)) \
                or flush_every < 1:
            raise LogError(f"flush_every must be an integer >= 1, got {flush_every!r}")
        for name, flag in (("netcdf", netcdf), ("overwrite", overwrite)):
            if flag is not None and not isinstance(flag, bool):
                raise LogError(f"{name} must be True or False, got {flag!r}")
        attrs = _check_attrs(dict(attrs or {}))
        clash = [k for k in _RESERVED if k in attrs]
        if clash:
            raise LogError(f"attribute {clash[0]!r} is reserved by the log format")
        self.num_classes = int(num_classes)
        self.flush_every = int(flush_every)
        self._attrs = attrs
        self._trials: dict[int, _Trial] = {}
        self._buffer: list[str] = []
        self._due = None  # rows buffered when a flush became due
        self._max_step, self._at_max = -1, 0  # the largest step logged, trials at it
        self._rows = 0
        self._lock = threading.Lock()
        self._result = None
        self._fd = None

        for p in (self.csv_path, self._nc):
            if p is not None and (p.exists() or p.is_symlink()) and not overwrite:
                raise FileExistsError(
                    f"{p} exists: give another path, or overwrite=True to replace it"
                )
        if self._nc is not None and overwrite:
            self._nc.unlink(missing_ok=True)  # a stale log must not pass for this run's
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if overwrite else os.O_EXCL)
        self._fd = os.open(self.csv_path, flags, 0o666)
        self._write((",".join(csv_columns(self.num_classes)) + "\n").encode())
        _fsync_dir(self.csv_path.parent)

    # -----------------------------------------------------------------------------
    # Logging

    def _position(self, call: str, trial: Any, step: Any) -> tuple[int, int, str]:
        """The checked trial and step of a `call` on an open logger, and where they are
        (for messages)."""
        self._open(call)
        trial = _integer("trial", trial, "", _INT32_MIN)
        step = _integer("step", step, f" at trial {trial}", 0)
        return trial, step, f" at trial {trial}, step {step}"

    def step(self, trial: Any, step: Any, sample: Any, label: Any, logits: Any, loss: Any) -> None:
        """Log SGD step `step` of trial `trial`: the drawn training sample's index
        `sample`, its label `label` in 0..K-1, its K `logits` and its `loss`, all before
        the update. `step` must exceed the trial's last logged step (and be at least
        the step of a validation logged since). Raises `LogError` naming a bad value;
        nothing is written then."""
        with self._lock:
            trial, step, where = self._position("step", trial, step)
            t = self._trials.get(trial)
            if t is not None:
                if step <= t.written:
                    raise LogError(
                        f"step{where}: trial {trial} has a row at step {t.written} already "
                        "(the steps of a trial must increase)"
                    )
                if t.pending is not None and step < t.pending[0]:
                    raise LogError(
                        f"step{where}: trial {trial} has a validation at step "
                        f"{t.pending[0]}; a validation at step t is of the state before "
                        f"update t, logged just before step(trial, t, ...), so the next "
                        f"step must be >= {t.pending[0]}"
                    )
            sample = _integer("sample", sample, where, 0)
            label = _integer("label", label, where, 0, self.num_classes - 1,
                             f" (num_classes = {self.num_classes})")
            cells = _logits(logits, where, self.num_classes)
            loss = _number("loss", loss, where)
            if t is None:
                t = self._trials[trial] = _Trial()
            val = ","
            if t.pending is not None:
                v, vl, va = t.pending
                t.pending = None
                if v == step:
                    val = f"{vl},{va}"
                else:  # the validation of a step that was never logged
                    self._eval_row(trial, t, v, vl, va)
                self._flush_due()
            self._buffer.append(f"{trial},{step},{sample},{label},{cells},{loss},{val}\n")
            self._rows += 1
            t.written = step
            if val != ",":
                t.n_evals += 1
                t.evals = hash((t.evals, step))
            t.n_steps += 1
            t.steps = hash((t.steps, step))
            if t.first is None:
                t.first = step
            t.last = step
            if step > self._max_step:
                self._max_step, self._at_max = step, 1
            elif step == self._max_step:
                self._at_max += 1
            if self._due is None and len(self._buffer) >= self.flush_every:
                self._due = len(self._buffer)
            if self._due is not None and (
                self._at_max == len(self._trials)  # every trial at the same step
                or len(self._buffer) - self._due >= len(self._trials)
            ):
                self._flush()

    def validation(self, trial: Any, step: Any, val_loss: Any, val_acc: Any) -> None:
        """Log the validation loss and accuracy of trial `trial` at step `step`: of the
        state before update `step`, so before `step(trial, step, ...)` (or after the
        trial's last step, for the evaluation after its last update). `step` must
        exceed the trial's last logged step and its last validation. Raises `LogError`
        naming a bad value; nothing is written then."""
        with self._lock:
            trial, step, where = self._position("validation", trial, step)
            t = self._trials.get(trial)
            if t is not None and step <= t.written:
                hint = (
                    f"; a validation at step t is of the state before update t: log it "
                    f"before step(trial, t, ...), and the validation after update t as "
                    f"step t + 1 = {step + 1}" if step == t.written else ""
                )
                raise LogError(
                    f"validation{where}: trial {trial} has a row at step {t.written} "
                    f"already (validations of a trial come in increasing step order){hint}"
                )
            if t is not None and t.pending is not None and step <= t.pending[0]:
                raise LogError(
                    f"validation{where}: trial {trial} has a validation at step "
                    f"{t.pending[0]} already (validations of a trial come in increasing "
                    "step order)"
                )
            vl = _number("val_loss", val_loss, where)
            va = _number("val_acc", val_acc, where)
            if t is None:
                t = self._trials[trial] = _Trial()
            if t.pending is not None:  # the earlier validation has no step row
                self._eval_row(trial, t, *t.pending)
                self._flush_due()
            t.pending = (step, vl, va)

    def flush(self) -> None:
        """Append the buffered rows to the file and `os.fsync` it (validations waiting
        for their step's row stay waiting)."""
        with self._lock:
            self._open("flush")
            self._flush()

    def close(self) -> Path:
        """Write the waiting validations (as validation-only rows), flush and close the
        file, check that every trial has the same steps and eval steps, and convert to
        netCDF if asked. Returns the path of the log (.nc or .csv). Calling it again
        does nothing and returns the same path."""
        with self._lock:
            if self._result is not None:
                return self._result
            self._finish()
            self._result = self.csv_path
            self._check_complete()
            if self._nc is not None:
                ds = read_csv(self.csv_path, num_classes=self.num_classes)
                ds.attrs.update(self._attrs)
                write_log(ds, self._nc)
                self._result = self._nc
            return self._result

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def path(self) -> Path:
        """The log the finished run leaves: the .nc file if converting, else the CSV."""
        return self.csv_path if self._nc is None else self._nc

    def __enter__(self) -> "TrajectoryLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep every row logged, without checks or conversion
            with self._lock:
                if self._fd is not None:
                    self._finish()
                    self._result = self.csv_path

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"TrajectoryLogger({str(self.path)!r}, num_classes={self.num_classes}, "
                f"{len(self._trials)} trials, {self._rows} rows, {state})")

    # -----------------------------------------------------------------------------
    # Internals (called with the lock held)

    def _open(self, what: str) -> None:
        if self._fd is None:
            raise LogError(f"{what}: the logger of {self.csv_path} is closed")

    def _eval_row(self, trial: int, t: _Trial, step: int, vl: str, va: str) -> None:
        empty = "," * (self.num_classes + 3)  # smp, y, the logits, tr_loss
        self._buffer.append(f"{trial},{step},{empty}{vl},{va}\n")
        self._rows += 1
        t.written = step
        t.n_evals += 1
        t.evals = hash((t.evals, step))

    def _flush_due(self) -> None:
        if self._due is None:
            self._due = len(self._buffer)

    def _flush(self) -> None:
        if self._buffer:
            self._write("".join(self._buffer).encode())
            self._buffer.clear()
        self._due = None

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    def _finish(self) -> None:
        for trial in sorted(self._trials):
            t = self._trials[trial]
            if t.pending is not None:
                self._eval_row(trial, t, *t.pending)
                t.pending = None
        try:
            self._flush()
        finally:
            os.close(self._fd)
            self._fd = None

    def _check_complete(self) -> None:
        if not self._trials or all(t.n_steps == 0 for t in self._trials.values()):
            raise LogError(f"{self.csv_path}: no step was logged (the file holds the header only)")
        ids = sorted(self._trials)
        ref = self._trials[ids[0]]

        def show(i, t):
            span = f" ({t.first}..{t.last})" if t.n_steps else ""
            return f"trial {i} has {t.n_steps} steps{span} and {t.n_evals} eval steps"

        for i in ids[1:]:
            t = self._trials[i]
            if (t.n_steps, t.steps, t.n_evals, t.evals) != \
                    (ref.n_steps, ref.steps, ref.n_evals, ref.evals):
                same = (t.n_steps, t.n_evals) == (ref.n_steps, ref.n_evals)
                raise LogError(
                    f"{self.csv_path}: {show(i, t)}, {show(ids[0], ref)}"
                    + (" (as many, at other steps)" if same else "")
                    + ": every trial of a log must have the same steps and eval steps; "
                    "the file holds every row logged"
                )


def _fsync_dir(folder: Path) -> None:
    """Make a new file's entry in `folder` durable (where the system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _array(name: str, x: Any, where: str) -> np.ndarray:
    if callable(getattr(x, "detach", None)):  # a PyTorch tensor
        x = x.detach()
        if callable(getattr(x, "cpu", None)):
            x = x.cpu()
    try:
        a = np.asarray(x)
    except Exception as e:
        raise LogError(f"{name}{where}: cannot be read as numbers ({type(e).__name__}: {e})") from None
    if a.dtype == bool or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise LogError(f"{name}{where} must be numeric, got {x!r} (dtype {a.dtype})")
    return a


def _one(name: str, x: Any, where: str) -> np.ndarray:
    a = _array(name, x, where)
    if a.size != 1:
        raise LogError(f"{name}{where} must be one number, got shape {a.shape}")
    return a.reshape(())


def _integer(name: str, x: Any, where: str, low: int, high: int = _INT32_MAX, why: str = "") -> int:
    if type(x) is int:  # the common case, without numpy
        v = x
    else:
        a = _one(name, x, where)
        if np.issubdtype(a.dtype, np.floating):
            f = float(a)
            if not (math.isfinite(f) and f == round(f)):
                raise LogError(f"{name}{where} must be an integer, got {f!r}")
            v = int(f)
        else:
            v = int(a)
    if not low <= v <= high:
        raise LogError(f"{name}{where} must lie in {low}..{high}{why}, got {v}")
    return v


def _number(name: str, x: Any, where: str) -> str:
    """The CSV cell of a number finite in float32: the shortest text that reads back to
    the same float32."""
    v = x if type(x) is float else float(_one(name, x, where))
    if not (math.isfinite(v) and abs(v) < _F32_OVERFLOW):
        raise LogError(f"{name}{where} must be a finite float32 number, got {v!r}")
    return str(np.float32(v))


def _logits(x: Any, where: str, K: int) -> str:
    a = _array("logits", x, where)
    if a.shape not in ((K,), (1, K)):
        raise LogError(
            f"logits{where} must be K = {K} numbers (num_classes; shape ({K},) or (1, {K})), "
            f"got shape {a.shape}"
        )
    a = a.reshape(K).astype(np.float64)
    bad = ~(np.abs(a) < _F32_OVERFLOW)  # also NaN
    if bad.any():
        k = int(np.argmax(bad))
        raise LogError(f"logits{where}, class {k} must be a finite float32 number, got {a[k].item()!r}")
    return ",".join(map(str, a.astype(np.float32)))
