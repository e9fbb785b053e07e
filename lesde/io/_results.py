"""Writing run results so that an interrupted write never looks complete."""

from pathlib import Path

import yaml

from .._json import dump_json as dump_json, to_json as to_json
from ._atomic import _atomic_write, write_json as write_json
from ._netcdf import write_netcdf

COMPLETE_MARKER = "summary.json"


def write_run(out_dir: str | Path, config: dict, ds, summary: dict, *, title: str) -> Path:
    """Write a run to `out_dir`: config.yaml, trajectory.nc (the Dataset `ds`, with the
    config in its attribute `config`; `write_netcdf`, which also takes `title`), then
    summary.json.

    Each file is written under a temporary name and renamed when complete; summary.json
    comes last, so a directory without it holds no complete run. Returns the directory.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / COMPLETE_MARKER
    if marker.exists():
        marker.unlink()  # the old run is being replaced: it is no longer complete
    text = yaml.safe_dump(config, sort_keys=False)
    _atomic_write(out / "config.yaml", lambda p: p.write_text(text))
    ds = ds.copy()
    ds.attrs = {**ds.attrs, "config": text, **versions()}
    write_netcdf(out / "trajectory.nc", ds, title=title)
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
