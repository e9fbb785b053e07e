"""lesde: a JAX-accelerated, differentiable simulator of deep-learning training dynamics
(locally elastic SDEs and the spring-block model)."""

from importlib.metadata import PackageNotFoundError, version as _version

from . import fit as fit
from . import io as io
from . import metrics as metrics
from . import nets as nets
from .models import *  # noqa: F403
from .solve import *  # noqa: F403
from .io import open_result as open_result

try:
    __version__ = _version("lesde")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
