"""Input validation shared by every module.

Every check raises a `ValueError` that names the offending field and shows its value.
Checks that need concrete values (finiteness, ranges) are skipped while JAX traces the
module (under `jit`/`vmap`/`grad`), because the values are not known then: build and
validate models outside of transformations, then transform the solve.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs: Any) -> bool:
    """True if no argument is (or contains) a JAX tracer."""
    leaves = jax.tree_util.tree_leaves(xs)
    return not any(isinstance(x, jax.core.Tracer) for x in leaves)


def show(x: Any, limit: int = 6) -> str:
    """A short printable form of a value for error messages."""
    if isinstance(x, (jax.Array, np.ndarray)) and not isinstance(x, jax.core.Tracer):
        a = np.asarray(x)
        if a.size <= limit:
            return repr(a.tolist())
        return f"array of shape {a.shape} (first values {a.ravel()[:limit].tolist()})"
    return repr(x)


def as_float_array(name: str, x: Any) -> jax.Array:
    """Convert `x` to a floating JAX array; reject non-numeric input by name."""
    if isinstance(x, jax.core.Tracer):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(float)
        return x
    try:
        a = np.asarray(x)
    except Exception as e:  # pragma: no cover - defensive
        raise ValueError(f"{name} must be numeric, got {show(x)}") from e
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got {show(x)}")
    if not np.issubdtype(a.dtype, np.inexact):
        a = a.astype(float)
    return jnp.asarray(a)


def check_finite(name: str, x: Any) -> None:
    """Raise if a concrete array holds NaN or infinity, naming the first bad entry."""
    if not is_concrete(x):
        return
    a = np.asarray(x)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at index {idx}" if a.ndim else ""
        raise ValueError(f"{name} must be finite, got {a[idx] if a.ndim else a}{where}")


def check_nonnegative(name: str, x: Any) -> None:
    """Raise if a concrete array is negative or non-finite anywhere."""
    check_finite(name, x)
    if not is_concrete(x):
        return
    a = np.asarray(x)
    if (a < 0).any():
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        where = f" at index {idx}" if a.ndim else ""
        raise ValueError(f"{name} must be >= 0, got {a[idx] if a.ndim else a}{where}")


def check_shape(name: str, x: Any, shape: tuple) -> None:
    """Raise unless `x.shape == shape` exactly (no broadcasting)."""
    if tuple(jnp.shape(x)) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {tuple(shape)}, got shape {tuple(jnp.shape(x))}"
        )


def check_positive_int(name: str, x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise ValueError(f"{name} must be a positive integer, got {show(x)}")
    return int(x)


def check_label_range(name: str, labels: np.ndarray, num_classes: int) -> None:
    """Raise unless every entry of the concrete integer array lies in 0..num_classes-1,
    naming the first one that does not."""
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{name} must lie in 0..{num_classes - 1} (num_classes = {num_classes}), "
            f"got {name}[{i}] = {int(labels[i])}"
        )
