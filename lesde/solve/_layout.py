"""Memory layouts of the LE-SDE state inside a solve.

The LE-SDE state X has shape (N, p): one row per sample. With few features (p = K = 10
in every experiment of the paper) the minor axis of that layout is short, and XLA's CPU
loops over it vectorise badly: drawing the normal increments in shape (N, 10) runs at a
quarter of the speed of the same draw in a long minor axis (jax.random.normal's inverse
error function is the part that suffers). A solve therefore stores the state in a layout
with a long minor axis, and every model function still sees X in its own (N, p) layout:

    drift'(t, Z) = pack(drift(t, unpack(Z))),   g'(t) dW' = pack(g(t) unpack(dW'))

pack and unpack are transpositions (permutations of the entries), which XLA folds into
the loops that read and write the state. In the class-major layout (K, p, n) the drift is
the model's `class_major_drift`, which the LE-SDE computes in that layout directly
(softmax along the feature axis, class means along the sample axis, the class drift
broadcast over it), so the state is never transposed. The model says whether its state
has per-sample rows to repack, and their classes (`AbstractDynamics.sample_classes`). The
Brownian increments are drawn in the packed shape; as a permutation of independent
standard normals they are again independent standard normals, so the solve has the same
law in every layout (not the same draws).
"""

import abc
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree

LAYOUTS = ("auto", "natural", "class-major", "sample-minor")


class AbstractLayout(eqx.Module):
    """A bijection between the model's state (shape `shape`) and the solver's state
    (shape `packed_shape`) that permutes entries."""

    shape: eqx.AbstractVar[tuple[int, ...]]

    @property
    @abc.abstractmethod
    def packed_shape(self) -> tuple[int, ...]:
        ...

    @abc.abstractmethod
    def pack(self, x: Array) -> Array:
        ...

    @abc.abstractmethod
    def unpack(self, z: Array) -> Array:
        ...


class Natural(AbstractLayout):
    """The model's own layout (N, p)."""

    shape: tuple[int, ...] = eqx.field(static=True)

    @property
    def packed_shape(self):
        return self.shape

    def pack(self, x):
        return x

    def unpack(self, z):
        return z


class ClassMajor(AbstractLayout):
    """Z[k, c, j] = X[k n + j, c], shape (K, p, n): for K classes of n samples each with
    sorted labels. The minor axis runs over the samples of a class."""

    shape: tuple[int, ...] = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)

    @property
    def packed_shape(self):
        N, p = self.shape
        K = self.num_classes
        return (K, p, N // K)

    def pack(self, x: Float[Array, "N p"]) -> Float[Array, "K p n"]:
        N, p = self.shape
        K = self.num_classes
        return x.reshape(K, N // K, p).transpose(0, 2, 1)

    def unpack(self, z: Float[Array, "K p n"]) -> Float[Array, "N p"]:
        return z.transpose(0, 2, 1).reshape(self.shape)


class SampleMinor(AbstractLayout):
    """Z = X^T, shape (p, N): the minor axis runs over all samples."""

    shape: tuple[int, ...] = eqx.field(static=True)

    @property
    def packed_shape(self):
        return self.shape[::-1]

    def pack(self, x: Float[Array, "N p"]) -> Float[Array, "p N"]:
        return x.T

    def unpack(self, z: Float[Array, "p N"]) -> Float[Array, "N p"]:
        return z.T


def choose_layout(model: Any, layout: str = "auto", user_path: bool = False) -> AbstractLayout:
    """The layout of `model`'s state in a solve.

    'auto' picks the layout whose minor axis is longest: class-major (minor axis n, for
    balanced classes with sorted labels) when n > p, else sample-minor (minor axis N)
    when N > p, else natural (minor axis p). Only states with per-sample rows (the
    model's `sample_classes` is not None, as for the `LESDE`) are repacked; other
    models, and solves given their own Brownian path (which has the model's shape),
    keep the natural layout.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {list(LAYOUTS)}")
    classes = getattr(model, "sample_classes", None)  # None: no per-sample rows
    if classes is None:
        if layout not in ("auto", "natural"):
            raise ValueError(
                f"layout {layout!r} applies to an LESDE (rows of samples: a model whose "
                f"sample_classes is not None); use 'auto' or 'natural' for "
                f"{type(model).__name__}"
            )
        return Natural(tuple(model.state_shape))
    shape = tuple(model.state_shape)
    N, p = shape
    n = classes.per_class
    if layout != "natural" and user_path:
        if layout == "auto":
            return Natural(shape)
        raise ValueError(
            f"layout {layout!r} needs a Brownian path drawn by the solve; a given Brownian "
            "path has the model's (N, p) shape: use layout='natural' or 'auto'"
        )
    if layout == "auto":
        if n is not None and n > p:
            layout = "class-major"
        elif N > p:
            layout = "sample-minor"
        else:
            layout = "natural"
    if layout == "class-major":
        if n is None:
            raise ValueError(
                "layout 'class-major' needs balanced classes with sorted labels (e.g. "
                f"Classes.balanced); got class sizes {list(map(int, classes.counts))}"
                + ("" if classes.sorted else " and unsorted labels")
            )
        return ClassMajor(shape, classes.num_classes)
    if layout == "sample-minor":
        return SampleMinor(shape)
    return Natural(shape)


def _is_state_leaf(layout: AbstractLayout):
    return lambda s: tuple(s.shape) == tuple(layout.shape)


def packed_brownian_shape(layout: AbstractLayout, shape: PyTree) -> PyTree:
    """The Brownian shapes with every leaf of the state's shape given the packed shape."""
    return jtu.tree_map(
        lambda s: jax.ShapeDtypeStruct(layout.packed_shape, s.dtype)
        if _is_state_leaf(layout)(s) else s,
        shape,
    )


class UnpackedPath(diffrax.AbstractBrownianPath):
    """A Brownian path drawn in packed shapes, seen in the model's shapes: `evaluate`
    unpacks the leaves that have the state's shape (W and, with Levy area, H)."""

    path: diffrax.AbstractBrownianPath
    layout: AbstractLayout
    natural: PyTree[bool] = eqx.field(static=True)  # which leaves have the state's shape
    levy_area: type = eqx.field(static=True)

    def __init__(self, path, layout, natural_shape):
        self.path = path
        self.layout = layout
        self.natural = jtu.tree_map(_is_state_leaf(layout), natural_shape)
        self.levy_area = path.levy_area

    @property
    def t0(self):
        return self.path.t0

    @property
    def t1(self):
        return self.path.t1

    def _unpack(self, tree):
        return jtu.tree_map(
            lambda is_state, w: self.layout.unpack(w) if is_state else w, self.natural, tree
        )

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        out = self.path.evaluate(t0, t1, left, use_levy)
        if not use_levy:
            return self._unpack(out)
        if isinstance(out, diffrax.SpaceTimeLevyArea):
            return diffrax.SpaceTimeLevyArea(dt=out.dt, W=self._unpack(out.W), H=self._unpack(out.H))
        return diffrax.BrownianIncrement(dt=out.dt, W=self._unpack(out.W))


class PackedTerm(diffrax.AbstractTerm):
    """A diffrax term of the model, on the packed state: vf sees unpack(Z), prod returns
    pack(vf . control)."""

    term: diffrax.AbstractTerm
    layout: AbstractLayout

    def vf(self, t, y, args):
        return self.term.vf(t, self.layout.unpack(y), args)

    def contr(self, t0, t1, **kwargs):
        return self.term.contr(t0, t1, **kwargs)

    def prod(self, vf, control):
        return self.layout.pack(self.term.prod(vf, control))


def packed_drift(model, layout: AbstractLayout) -> diffrax.ODETerm:
    """drift'(t, Z) = pack(drift(t, unpack(Z))). In the class-major layout the model's
    `class_major_drift` computes it there directly (the LE-SDE's never transposes the
    state back to (N, p))."""
    if isinstance(layout, ClassMajor):
        def drift(t, z, args):
            return model.class_major_drift(t, z)

        return diffrax.ODETerm(drift)
    return diffrax.ODETerm(lambda t, z, args: layout.pack(model.drift(t, layout.unpack(z))))


def unpack_saved(layout: AbstractLayout, ys: Array) -> Array:
    """unpack over a leading axis of save times."""
    if isinstance(layout, Natural):
        return ys
    return jax.vmap(layout.unpack)(ys)


