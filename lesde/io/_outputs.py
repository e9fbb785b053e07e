"""Output locations: checked before any compute, one writer per folder.

Every `lesde` command that writes a folder (`--out DIR`) first checks that the folder
can be written (`check_output_dir`), then holds a lock on it for as long as it writes
(`output_lock`): a second command aimed at the same folder is refused at once, with a
message, instead of racing the first one's files. The lock is an OS file lock
(`filelock`) on `DIR/.lesde.lock`, released when the command ends or its process dies
(also on SIGKILL), so a killed run never leaves the folder locked.
"""

import contextlib
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import filelock

LOCK_NAME = ".lesde.lock"
INTERRUPTED = 130
"""Exit status of a command stopped by Ctrl-C (SIGINT): 128 + 2, the shell's convention."""
TERMINATED = 143
"""Exit status of a command stopped by SIGTERM (a batch scheduler's stop, `kill PID`):
128 + 15. The command stops as on Ctrl-C, keeping and saying what it kept."""


class OutputError(ValueError):
    """An output location that cannot be written, or one that another run is writing."""


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """Create the folder `path` if needed and check that files can be created in it;
    an `OutputError` names the path and the reason otherwise (a file where the folder
    should be, a folder that cannot be created, a read-only folder)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{what} {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{what} {out}: the folder cannot be created ({e.strerror or e})") from None
    _probe(out, what)
    return out


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """Check that the file `path` can be written: its folder exists and is writable and
    `path` is not a folder. Nothing is created."""
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"{what} {out} is a folder; give a file name (e.g. {out / 'figure.png'})")
    parent = out.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {out}: its folder {parent} does not exist")
    _probe(parent, what)
    return out


def _probe(folder: Path, what: str) -> None:
    """Create and remove a temporary file in `folder` (the only reliable test of
    writability: access() says yes to root even on a read-only mount)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lesde-probe-"):
            pass
    except OSError as e:
        raise OutputError(f"{what} {folder}: files cannot be written there ({e.strerror or e})") from None


@contextlib.contextmanager
def output_lock(out: str | Path, command: str) -> Iterator[Path]:
    """Hold the lock of the output folder `out` (which must exist) while the block runs;
    an `OutputError` at once if another command holds it."""
    lock = filelock.FileLock(str(Path(out) / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OutputError(
            f"another lesde command is writing to {out} (it holds {Path(out) / LOCK_NAME}); "
            f"wait for it to finish or give {command} another --out"
        ) from None
    try:
        yield Path(out)
    finally:
        lock.release()


def remove_stale(out: Path, names: Iterable[str]) -> list[str]:
    """Remove the files `names` of an earlier run from `out` (those this run writes
    anew, so that none of them is mistaken for this run's); returns the names removed."""
    removed = []
    for name in names:
        p = out / name
        if p.is_file() or p.is_symlink():
            p.unlink()
            removed.append(name)
    return removed
