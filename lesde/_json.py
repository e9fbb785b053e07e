"""JSON text of results: every JSON file lesde writes is strict JSON."""

import json
import math
from typing import Any

import numpy as np


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
