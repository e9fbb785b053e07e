"""Files written under a temporary name and renamed when complete, so that a file at
its final name is always whole."""

import os
from pathlib import Path
from typing import Any

from .._json import dump_json


def _atomic_write(path: Path, write) -> None:
    """Call `write(tmp)` for a temporary name beside `path`, then rename it to `path`;
    on failure remove the temporary file and leave `path` as it was."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as a JSON file (`dump_json`: non-finite numbers as null), atomically
    (`_atomic_write`)."""
    _atomic_write(path, lambda p: p.write_text(dump_json(obj)))
