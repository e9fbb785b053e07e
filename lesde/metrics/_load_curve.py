"""Load-curve statistics: how evenly the layers of a network (or the springs of a
spring-block chain) share the work of separating the data.

Reference: C. Shi, L. Pan, I. Dokmanic, "Spring-block theory of feature learning in deep
neural networks" (arXiv 2407.19353). Gains, l = 1..L:

- network: d_l = D_{l-1} - D_l, the separation gained by layer l, from the separation
  fuzziness (or trace ratio) D_0..D_L of the input and of each layer's features;
- chain: d_l = x_l - x_{l-1}, the elongation of spring l, from block positions x_1..x_L
  with the wall x_0 = 0.

**Mapping between the two.** The load curve of the network, D_l / D_0, corresponds to
y - x_l of a chain pulled to y: positions x_l = y (1 - D_l / D_0) (so x_0 = 0 <-> D_0).
Then x_l - x_{l-1} = (y / D_0) (D_{l-1} - D_l): the chain's gains are the network's
gains times a positive constant, and after normalisation (below) the two are equal.
"""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import as_float_array, is_concrete

SHAPES = {-1: "concave", 0: "linear", 1: "convex"}
"""`LoadCurve.shape_code` values and their names."""


def _check_sequence(name: str, x: Any, minimum: int, what: str) -> Array:
    a = as_float_array(name, x)
    if a.ndim == 0 or a.shape[-1] < minimum:
        raise ValueError(
            f"{name} must be an array of {what} along its last axis with at least {minimum} "
            f"value(s), got shape {tuple(a.shape)}"
        )
    if is_concrete(a):
        v = np.asarray(a)
        bad = ~np.isfinite(v)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} must be finite, got {name}[{', '.join(map(str, idx))}] = {v[idx]}")
    return a


def separation_gains(fuzziness: Float[Array, "*B L+1"]) -> Float[Array, "*B L"]:
    """Layer gains d_l = D_{l-1} - D_l, l = 1..L, of a sequence D_0..D_L (last axis),
    e.g. `separation_fuzziness` of the input and of each layer's features. Jit- and
    vmap-able."""
    d = _check_sequence("fuzziness", fuzziness, 2, "D_0..D_L")
    return d[..., :-1] - d[..., 1:]


def position_gains(positions: Float[Array, "*B L"]) -> Float[Array, "*B L"]:
    """Spring elongations d_l = x_l - x_{l-1}, l = 1..L, of block positions x_1..x_L
    (last axis) with the wall x_0 = 0 (so d_1 = x_1). Jit- and vmap-able."""
    x = _check_sequence("positions", positions, 1, "x_1..x_L")
    return jnp.diff(x, axis=-1, prepend=jnp.zeros_like(x[..., :1]))


def chain_positions(fuzziness: Float[Array, "*B L+1"], load: Any = 1.0) -> Float[Array, "*B L"]:
    """The block positions of the chain equivalent to a network's separation sequence
    D_0..D_L (last axis): x_l = y (1 - D_l / D_0), l = 1..L, for a chain pulled to
    y = `load`, so that y - x_l = y D_l / D_0 is the network's normalised load curve and
    `position_gains(chain_positions(D))` = (y / D_0) `separation_gains(D)`: the same
    `load_curve` after normalisation. D_0 must be > 0. Jit- and vmap-able."""
    d = _check_sequence("fuzziness", fuzziness, 2, "D_0..D_L")
    if is_concrete(d) and (np.asarray(d[..., 0]) <= 0).any():
        raise ValueError(f"fuzziness D_0 must be > 0, got {np.asarray(d[..., 0]).min()}")
    y = as_float_array("load", load)
    return y * (1 - d[..., 1:] / d[..., :1])


class LoadCurve(eqx.Module):
    """Statistics of a load curve (see `load_curve`); fields batch like the gains."""

    gains: Float[Array, "*B L"]
    """The normalised gains d_l / sum_l |d_l|."""
    curvature: Float[Array, "*B"]
    """c = d_1 - d_L of the normalised gains (> 0: convex, shallow layers learn more)."""
    nonuniformity: Float[Array, "*B"]
    """v = std_l d_l of the normalised gains (population std); 0 for a linear curve."""
    shape_code: Int[Array, "*B"]
    """-1 concave, 0 linear, 1 convex (see `SHAPES`)."""

    @property
    def shape_label(self) -> Any:
        """'concave', 'linear' or 'convex' (an array of them for a batch); concrete only."""
        names = np.vectorize(SHAPES.get, otypes=[object])(np.asarray(self.shape_code))
        return names.item() if names.ndim == 0 else names


def load_curve(gains: Float[Array, "*B L"], *, tol: Any = 0.1) -> LoadCurve:
    """Curvature, non-uniformity and shape of a load curve from its gains d_1..d_L
    (last axis; from `separation_gains` or `position_gains`).

    The gains are first normalised, d_l <- d_l / sum_l |d_l| (= d_l / (D_0 - D_L) when no
    layer loses separation), so that curves of a model and of a network compare directly;
    all-zero gains stay zero. Then

    - curvature c = d_1 - d_L (c > 0: convex, the shallow layers gain more; c < 0: concave,
      "lazy", the deep layers do the work);
    - non-uniformity v = std(d) (population std);
    - shape: 'linear' if |c| <= tol * mean_l |d_l|, else 'convex' (c > 0) or 'concave'
      (c < 0); the test is invariant to the scale of the gains. With L = 1, c = v = 0.

    **Arguments:** `gains`: shape (..., L), L >= 1, finite (ValueError naming the first
    bad index on concrete input); `tol` >= 0 (default 0.1).

    **Returns:** a `LoadCurve` (gains, curvature, nonuniformity, shape code; `.shape_label`
    gives the name). Jit- and vmap-able.
    """
    d = _check_sequence("gains", gains, 1, "d_1..d_L")
    t = as_float_array("tol", tol)
    if t.ndim != 0:
        raise ValueError(f"tol must be a scalar, got shape {tuple(t.shape)}")
    if is_concrete(t) and not (np.isfinite(float(t)) and float(t) >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {float(t)}")
    return _load_curve(d, t.astype(d.dtype))


@eqx.filter_jit
def _load_curve(d, tol):
    total = jnp.sum(jnp.abs(d), axis=-1, keepdims=True)
    d = jnp.where(total > 0, d / jnp.where(total > 0, total, 1), d)
    c = d[..., 0] - d[..., -1]
    scale = jnp.mean(jnp.abs(d), axis=-1)
    shape = jnp.where(jnp.abs(c) <= tol * scale, 0, jnp.sign(c)).astype(jnp.int32)
    return LoadCurve(gains=d, curvature=c, nonuniformity=jnp.std(d, axis=-1), shape_code=shape)
