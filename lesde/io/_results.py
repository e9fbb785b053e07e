"""Writing run results so that an interrupted write never looks complete."""

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .._json import dump_json as dump_json, to_json as to_json

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


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as a JSON file (`dump_json`: non-finite numbers as null), atomically
    (`_atomic_write`)."""
    _atomic_write(path, lambda p: p.write_text(dump_json(obj)))


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
    write_json(marker, summary)
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
