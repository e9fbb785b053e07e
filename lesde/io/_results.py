"""Writing run results so that an interrupted write never looks complete."""

import json
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
    _atomic_write(marker, lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    return out


def versions() -> dict[str, str]:
    """Versions of lesde and the libraries behind a result, and the backend."""
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
    }
