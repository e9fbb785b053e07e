"""Writing run results so that an interrupted write never looks complete."""

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

COMPLETE_MARKER = "summary.json"


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


def to_json(obj: Any) -> Any:
    """`obj` with every value JSON can hold as such: dicts (keys as str), lists and
    tuples (as lists), numpy arrays (as nested lists) and numpy scalars (as Python
    numbers and bools) are converted, and a non-finite float (NaN, +-inf) becomes None,
    JSON's null. Anything else is returned unchanged (`json` then refuses it)."""
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dump_json(obj: Any, *, indent: int | None = 2) -> str:
    """The text of a JSON file holding `obj` (`to_json`; ends with a newline).

    Every JSON file lesde writes goes through here, so none holds the bare tokens NaN
    or Infinity, which are not JSON: a non-finite number is written as null. A value
    JSON cannot hold (a set, an object) raises a TypeError naming it.
    """
    return json.dumps(to_json(obj), indent=indent, allow_nan=False) + "\n"


def write_run(
    out_dir: str | Path, config: dict, arrays: dict[str, Any], summary: dict
) -> Path:
    """Write a run to `out_dir`: config.yaml, trajectory.npz, then summary.json.

    Each file is written under a temporary name and renamed when complete; summary.json
    comes last, so a directory without it holds no complete run. Returns the directory.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / COMPLETE_MARKER
    if marker.exists():
        marker.unlink()  # the old run is being replaced: it is no longer complete
    _atomic_write(out / "config.yaml", lambda p: p.write_text(yaml.safe_dump(config, sort_keys=False)))

    def save_npz(p):
        with open(p, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})

    _atomic_write(out / "trajectory.npz", save_npz)
    _atomic_write(marker, lambda p: p.write_text(dump_json(summary)))
    return out


def versions() -> dict[str, str]:
    """Versions of lesde and the libraries behind a result, the backend and the floating
    precision (float32, or float64 with x64 enabled)."""
    import platform

    import diffrax
    import equinox
    import jax

    from .. import __version__

    return {
        "version_lesde": __version__,
        "version_jax": jax.__version__,
        "version_diffrax": diffrax.__version__,
        "version_equinox": equinox.__version__,
        "version_python": platform.python_version(),
        "backend": jax.default_backend(),
        "precision": "float64" if jax.config.jax_enable_x64 else "float32",
    }
