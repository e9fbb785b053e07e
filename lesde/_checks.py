"""Input validation shared by every module.

Every check raises a `ValueError` that names the offending field and shows its value;
the checks a module shares with others (`require`, `check_increasing`, `check_labels`)
take `error=`, the module's own subclass of `ValueError` (e.g. `FitDataError`,
`LogError`), so one check serves every module and its errors keep their type.
Checks of values (finiteness, ranges, order) need concrete values; while JAX traces a
module (under `jit`/`vmap`/`grad`) the values are not known, and the checks are skipped,
except inside `check_batch`, which runs a whole batch of settings (e.g. every cell of a
sweep) through one `vmap` and records each value check as a boolean array instead, so
that every member is checked before anything is compiled.
"""

import contextlib
import contextvars
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

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


class _Record(NamedTuple):
    """A value check met while tracing under `check_batch`: where `bad` holds, `value`
    breaks the requirement."""

    name: str
    requirement: str
    bad: Any
    value: Any


_RECORDS: contextvars.ContextVar[list[_Record] | None] = contextvars.ContextVar(
    "lesde_check_records", default=None
)


def _first_bad(bad: np.ndarray, value: np.ndarray) -> tuple[Any, str]:
    """The first value where `bad` holds and ' at index (...)' for arrays."""
    if bad.ndim == 0:
        return value[()] if value.ndim == 0 else value, ""
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return np.broadcast_to(value, bad.shape)[idx], f" at index {idx}"


def require(
    name: str,
    x: Any,
    bad: Callable[[Any], Any],
    requirement: str,
    *,
    error: type[ValueError] = ValueError,
) -> None:
    """The one value check behind the others: raise `error('{name} must be
    {requirement}, got {value}[ at index (...)]')` (a `ValueError` or a module's subclass
    of it) for the first entry of `x` where `bad(x)` holds. A traced `x` is skipped, or
    recorded inside `check_batch` (which raises a plain `ValueError`)."""
    if is_concrete(x):
        a = np.asarray(x)
        mask = np.asarray(bad(a))
        if mask.any():
            value, where = _first_bad(mask, a)
            raise error(f"{name} must be {requirement}, got {str(value)}{where}")
        return
    records = _RECORDS.get()
    if records is not None:
        x = jnp.asarray(x)
        records.append(_Record(name, requirement, bad(x), x))


def check_finite(name: str, x: Any) -> None:
    """Raise if an array holds NaN or infinity, naming the first bad entry."""
    require(name, x, lambda a: ~_isfinite(a), "finite")


def check_nonnegative(name: str, x: Any) -> None:
    """Raise if an array is negative or non-finite anywhere."""
    check_finite(name, x)
    require(name, x, lambda a: a < 0, ">= 0")


def check_positive(name: str, x: Any) -> None:
    """Raise unless every entry of an array is > 0 and finite."""
    check_finite(name, x)
    require(name, x, lambda a: ~(a > 0), "> 0")


def check_increasing(
    name: str,
    x: Any,
    *,
    nonnegative: bool = False,
    entry: str | None = None,
    error: type[ValueError] = ValueError,
) -> None:
    """Raise unless a 1-D array (times, knots, coordinates) is finite and strictly
    increasing, and with `nonnegative` also >= 0.

    On concrete input the error is `error` (a `ValueError` or a module's subclass of it)
    and names the first pair out of order, its entries called `entry` (default `name`):

        ts must be strictly increasing, got ts[2] = 2.0 followed by ts[3] = 2.0

    A traced `x` goes through `require`: skipped, or recorded inside `check_batch`, whose
    error names the first entry that is not above the one before it."""
    require(name, x, lambda a: ~_isfinite(a), "finite", error=error)
    if is_concrete(x):
        a = np.asarray(x)
        out_of_order = np.diff(a) <= 0
        if out_of_order.any():
            i, e = int(np.argmax(out_of_order)), name if entry is None else entry
            raise error(
                f"{name} must be strictly increasing, got {e}[{i}] = {str(a[i])} followed by "
                f"{e}[{i + 1}] = {str(a[i + 1])}"
            )
    else:

        def bad(a):
            xp = jnp if isinstance(a, jax.Array) else np
            return xp.concatenate([xp.zeros(1, bool), ~(xp.diff(a) > 0)])

        require(name, x, bad, "strictly increasing")
    if nonnegative:
        require(name, x, lambda a: a < 0, ">= 0", error=error)


def _isfinite(a):
    return jnp.isfinite(a) if isinstance(a, jax.Array) else np.isfinite(a)


def recording_checks() -> bool:
    """True inside `check_batch`, where traced value checks are recorded."""
    return _RECORDS.get() is not None


@contextlib.contextmanager
def _recording():
    records: list[_Record] = []
    token = _RECORDS.set(records)
    try:
        yield records
    finally:
        _RECORDS.reset(token)


def check_batch(
    fn: Callable[[dict[str, jax.Array]], Any],
    batch: Mapping[str, Any],
    describe: Callable[[int], str],
    chunk: int = 1_000_000,
) -> None:
    """Run `fn(params)` for every member of a batch of settings before any compute, and
    raise for the first member that breaks a value check.

    `fn` is applied once under `jax.vmap` to the whole batch (`batch` maps names to 1-D
    arrays of equal length M, `chunk` members at a time), with every value check
    (`check_finite`, `check_nonnegative`, `check_positive`, `check_increasing`, and what
    the models build on them) recorded as a boolean array over the batch instead of
    being skipped. The error names the member (`describe(i)`, e.g. the sweep cell and
    its parameter values), the field and its value, and how many members fail:

        ValueError: cell 7 (noise.independent = -0.1): noise.independent sigma must be
        >= 0, got -0.1 (1 of 40 cells fail this check)
    """
    arrays = {k: np.asarray(v) for k, v in batch.items()}
    if not arrays:  # one member, no parameters: the checks run on concrete values
        fn({})
        return
    size = len(next(iter(arrays.values())))
    for lo in range(0, size, chunk):
        part = {k: jnp.asarray(v[lo : lo + chunk]) for k, v in arrays.items()}
        names: list[tuple[str, str]] = []

        def one(params):
            with _recording() as records:
                fn(params)
            names[:] = [(r.name, r.requirement) for r in records]
            return [(r.bad, r.value) for r in records]

        found = jax.vmap(one)(part)
        first = None  # (member, record index, members failing)
        for j, (bad, _) in enumerate(found):
            fails = np.asarray(bad).reshape(len(bad), -1).any(axis=1)
            if fails.any() and (first is None or np.argmax(fails) < first[0]):
                first = (int(np.argmax(fails)), j, int(fails.sum()))
        if first is not None:
            i, j, count = first
            (name, requirement), (bad, value) = names[j], found[j]
            shown, where = _first_bad(np.asarray(bad[i]), np.asarray(value[i]))
            of = f"{count} of {size}" if size <= chunk else f"{count} of members {lo}..{lo + len(bad) - 1}"
            raise ValueError(
                f"{describe(lo + i)}: {name} must be {requirement}, got {str(shown)}{where} "
                f"({of} fail this check)"
            )


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


def check_labels(
    name: str,
    labels: Any,
    num_samples: int | None = None,
    num_classes: int | None = None,
    *,
    match: str = "features",
    error: type[ValueError] = ValueError,
) -> Any:
    """Check class labels and return them: integers (integer-valued floats are accepted
    and converted), 1-D, one per sample (`num_samples`, the leading length of `match`)
    and in 0..num_classes-1 (>= 0 when `num_classes` is None). Raises `error` (a
    `ValueError` or a module's subclass of it) naming the first bad label, e.g.

        labels must lie in 0..2 (num_classes = 3), got labels[5] = 3

    Concrete labels come back as an int64 NumPy array. Traced labels have their dtype
    and shape checked and come back as they are; their range goes through `require`
    (skipped, or recorded inside `check_batch`)."""
    if isinstance(labels, jax.core.Tracer):
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise error(f"{name} must be integers, got dtype {labels.dtype}")
        a = labels
    else:
        try:
            a = np.asarray(labels)
        except Exception as e:
            raise error(f"{name} must be an array of integer labels, got {show(labels)}") from e
        if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
            if not np.issubdtype(a.dtype, np.floating):
                raise error(f"{name} must be integers, got dtype {a.dtype}: {show(a)}")
            not_whole = ~(np.isfinite(a) & (a == np.round(a)))
            if not_whole.any():
                i = tuple(int(v) for v in np.argwhere(not_whole)[0])
                where = ", ".join(map(str, i))
                raise error(
                    f"{name} must be integers, got {name}[{where}] = {a[i]} (dtype {a.dtype})"
                )
        a = a.astype(np.int64)
    shape = tuple(np.shape(a))
    if num_samples is None and len(shape) != 1:
        raise error(f"{name} must be 1-D (one label per sample), got shape {shape}")
    if num_samples is not None and shape != (num_samples,):
        raise error(
            f"{name} must have shape (N,) = ({num_samples},) to match {match}, got shape {shape}"
        )
    if num_classes is None:
        bad, requirement = (lambda v: v < 0), ">= 0 (classes are numbered 0..K-1)"
    else:
        k = num_classes
        bad, requirement = (lambda v: (v < 0) | (v >= k)), f"in 0..{k - 1} (num_classes = {k})"
    if isinstance(a, jax.core.Tracer):
        require(name, a, bad, requirement)
        return a
    out = bad(a)
    if out.any():
        i = int(np.argmax(out))
        verb = "be" if num_classes is None else "lie"
        raise error(f"{name} must {verb} {requirement}, got {name}[{i}] = {int(a[i])}")
    return a
