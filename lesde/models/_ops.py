"""Array helpers the models share."""

import functools
import operator

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

#: Axes up to this length are summed by an explicit chain of adds.
SHORT_AXIS = 32


def _written_out(parts: list[Array], axis: int, keepdims: bool) -> Array:
    out = functools.reduce(operator.add, parts)
    return jnp.expand_dims(out, axis) if keepdims else out


def _slices(x: Array, axis: int) -> list[Array]:
    return [lax.index_in_dim(x, i, axis, keepdims=False) for i in range(x.shape[axis])]


def axis_sum(x: Array, axis: int, keepdims: bool = False) -> Array:
    """sum_i x[..., i, ...] over `axis`.

    Over a short axis (K or p classes and features, at most `SHORT_AXIS` long) the sum
    is written out as a chain of adds of slices, which XLA fuses into the elementwise
    loop around it. Under `jax.vmap` its CPU reduction of a short axis runs several
    times slower (about 3x on the LE-ODE of K = 3 vmapped over 500 trials).
    """
    axis = axis % x.ndim
    if not 0 < x.shape[axis] <= SHORT_AXIS:
        return jnp.sum(x, axis=axis, keepdims=keepdims)
    return _written_out(_slices(x, axis), axis, keepdims)


def axis_dot(a: Array, b: Array, axis: int, keepdims: bool = False) -> Array:
    """sum_i a[..., i, ...] b[..., i, ...] over `axis` (a and b of one shape). Over a
    short axis the slices are taken before they are multiplied, which XLA fuses; the
    product taken first is stored and then sliced (1.5x slower on the LE-ODE)."""
    a, b = jnp.broadcast_arrays(a, b)
    axis = axis % a.ndim
    if not 0 < a.shape[axis] <= SHORT_AXIS:
        return jnp.sum(a * b, axis=axis, keepdims=keepdims)
    parts = [x * y for x, y in zip(_slices(a, axis), _slices(b, axis))]
    return _written_out(parts, axis, keepdims)
