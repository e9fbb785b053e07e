"""Parameters by path: one name for every number of a model, the same in sweeps, fits
and results.

A path names a floating-point leaf of a model's pytree by the attributes that lead to
it, joined by dots, and optionally one entry of it by its index in brackets:

    impact.alpha.value                    the value of a constant alpha(t)
    impact.schedule.value[0,1]            entry (0, 1) of a constant General impact
    impact.schedule.values[2,0,1]         entry (0, 1) of its third knot (PiecewiseLinear)
    noise.terms.independent.sigma.value   sigma_ind of a constant noise
    friction.mu_fwd                       the forward friction of a spring-block model

It is the leaf's key path (attribute names, and the keys of dicts such as
`Noise.terms`), joined by dots, plus the entry's index: `leaf_paths` lists them,
`get_at` reads one, `set_at` replaces one (with `equinox.tree_at`) and checks the model
again. A fit names its free parameters the same way (`lesde.fit.parameter_names`).
"""

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

_PATH = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\[(\s*\d+\s*(?:,\s*\d+\s*)*)\])?$")


def parse_path(path: str) -> tuple[tuple[str, ...], tuple[int, ...] | None]:
    """The attribute names and the entry index (None: the whole leaf) of a path such as
    'impact.schedule.value[0,1]'; a ValueError for anything else."""
    m = _PATH.match(path) if isinstance(path, str) else None
    if m is None:
        raise ValueError(
            f"{path!r} is not a parameter path: attribute names joined by dots, optionally "
            "followed by the index of one entry, e.g. 'impact.schedule.value[0,1]'"
        )
    names = tuple(m.group(1).split("."))
    index = None if m.group(2) is None else tuple(int(i) for i in m.group(2).split(","))
    return names, index


def _is_number_leaf(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float)) and jnp.issubdtype(
        jnp.result_type(x), jnp.inexact
    )


def key_path(keys: tuple) -> str:
    """The path of a jax key path (`jax.tree_util.tree_flatten_with_path`): attribute
    names and identifier dict keys joined by dots, other keys as `jax.tree_util.keystr`
    writes them."""
    out = ""
    for k in keys:
        if isinstance(k, jtu.GetAttrKey):
            out += f".{k.name}"
        elif isinstance(k, jtu.DictKey) and isinstance(k.key, str) and k.key.isidentifier():
            out += f".{k.key}"
        else:
            out += jtu.keystr((k,))
    return out.lstrip(".")


def entry_paths(base: str, shape: tuple[int, ...]) -> list[str]:
    """`base` for a scalar, else `base[i,j,...]` for each entry of an array of `shape`."""
    if shape == ():
        return [base]
    return [f"{base}[{','.join(map(str, i))}]" for i in np.ndindex(shape)]


def leaf_paths(tree: Any, *, entries: bool = True) -> list[str]:
    """The paths of the floating-point leaves of `tree` (each entry of an array leaf with
    `entries`), in the order of `jax.tree_util.tree_flatten`."""
    out = []
    for key, leaf in jtu.tree_flatten_with_path(tree)[0]:
        if not _is_number_leaf(leaf):
            continue
        base = key_path(key)
        shape = np.shape(leaf)
        out += entry_paths(base, shape if entries else ())
    return out


def _leaf(tree: Any, path: str):
    """(getter of the leaf, the leaf, the entry index) of `path` in `tree`, or a
    ValueError naming what is there instead."""
    names, index = parse_path(path)
    node = tree
    for depth, name in enumerate(names):
        fields = _fields(node)
        if name not in fields:
            here = ".".join(names[:depth]) or "the model"
            what = "key" if isinstance(node, Mapping) else "field"
            raise ValueError(
                f"{path!r}: {here} ({type(node).__name__}) has no {what} {name!r}"
                + (f"; its {what}s are {sorted(fields)}" if fields else "")
                + _hint(tree, path)
            )
        node = _child(node, name)
    if not _is_number_leaf(node):
        what = (
            f"an array of {np.asarray(node).dtype}" if isinstance(node, (jax.Array, np.ndarray))
            else f"a {type(node).__name__}"
        )
        raise ValueError(f"{path!r} is {what}, not an array of floats" + _hint(tree, path))
    shape = np.shape(node)
    if index is not None and (
        len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape))
    ):
        raise ValueError(
            f"{path!r}: index {list(index)} is outside the shape {shape} of "
            f"{'.'.join(names)}"
        )

    def get(t):
        for name in names:
            t = _child(t, name)
        return t

    return get, node, index


def _fields(node: Any) -> list[str]:
    """The names a path can take below `node`: a module's fields, a dict's string keys."""
    if isinstance(node, eqx.Module):
        return [f.name for f in dataclasses.fields(node)]
    if isinstance(node, Mapping):
        return [k for k in node if isinstance(k, str)]
    return []


def _child(node: Any, name: str) -> Any:
    return node[name] if isinstance(node, Mapping) else getattr(node, name)


def _hint(tree: Any, path: str) -> str:
    names, _ = parse_path(path)
    near = [p for p in leaf_paths(tree, entries=False) if p.startswith(names[0])]
    return f"; the numbers under {names[0]!r} are {near}" if near else (
        f"; the model's numbers are {leaf_paths(tree, entries=False)}"
    )


def get_at(tree: Any, path: str) -> jax.Array:
    """The leaf (or the entry) of `tree` at `path`."""
    _, leaf, index = _leaf(tree, path)
    return jnp.asarray(leaf) if index is None else jnp.asarray(leaf)[index]


def set_at(tree: Any, path: str, value: Any):
    """`tree` with the leaf (or the entry) at `path` replaced by `value`, then checked
    again (`check_tree`): a value the model refuses raises its ValueError, also for a
    value traced inside `lesde.solve.check_cells`, which records it for every cell.

    A whole leaf keeps its shape (`value` must have it); an entry takes a scalar."""
    return set_paths(tree, {path: value})


def set_paths(tree: Any, values: Mapping[str, Any]):
    """`tree` with each {path: value} of `values` replaced as `set_at` does, then
    checked once (`check_tree`)."""
    for path, value in values.items():
        tree = _replace(tree, path, value)
    check_tree(tree)
    return tree


def _replace(tree: Any, path: str, value: Any):
    """`tree` with the leaf (or entry) at `path` replaced, unchecked."""
    get, leaf, index = _leaf(tree, path)
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.inexact):
        value = value.astype(jnp.result_type(float))
    old = jnp.asarray(leaf)
    want = () if index is not None else old.shape
    if value.shape != want:
        raise ValueError(f"{path!r} takes an array of shape {want}, got shape {value.shape}")
    value = value.astype(old.dtype)
    new = value if index is None else old.at[index].set(value)
    return eqx.tree_at(get, tree, new)


def check_tree(tree: Any) -> None:
    """Run the `__check_init__` of every module in `tree`, inner modules first (of each
    class of its MRO that defines one, base classes first, as equinox does at
    construction): the checks of a model whose leaves were replaced after it was built."""
    root = isinstance(tree, eqx.Module)
    for child in jtu.tree_leaves(tree, is_leaf=lambda x: isinstance(x, eqx.Module) and x is not tree):
        if isinstance(child, eqx.Module):
            check_tree(child)
    if root:
        for cls in reversed(type(tree).__mro__):
            check = cls.__dict__.get("__check_init__")
            if check is not None:
                check(tree)
