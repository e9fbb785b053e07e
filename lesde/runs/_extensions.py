"""Extensions of the command line: modules of the user's own that register gradient
models, noises or metrics (`lesde.models.register_gradient`,
`lesde.metrics.register_metric`), imported before a command reads its config."""

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def import_extensions(specs: list[str]) -> list[ModuleType]:
    """Import each extension: a module name on the Python path (`mypackage.models`) or
    the path of a .py file (`ext/margin.py`; imported once per process, however often it
    is named). A module that cannot be found or fails while it is imported raises a
    ValueError naming it; nothing of the command runs then.

    Example: `lesde sweep margin.yaml --out out --import margin_ext.py`, where
    margin_ext.py registers the gradient model that margin.yaml names."""
    return [_import(spec) for spec in specs]


def _import(spec: str) -> ModuleType:
    try:
        if spec.endswith(".py"):
            path = Path(spec).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            name = f"lesde_extension_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
            if name in sys.modules:
                return sys.modules[name]
            loader = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            try:
                loader.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(spec)
    except Exception as e:  # ImportError, SyntaxError, an error of the extension's own
        raise ValueError(f"--import {spec}: {type(e).__name__}: {e}") from None
