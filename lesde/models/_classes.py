"""Class membership of the N training samples: labels, class sizes, class sums."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import check_labels, check_positive_int


class Classes(eqx.Module):
    """Labels y_i in {0..K-1} of N samples, with their class sizes n_k.

    Class means are segment sums over the labels divided by n_k: O(N p), never an
    N x N or N x K matrix. With balanced classes and sorted labels (`per_class` = n) the
    sums are a reshape to (K, n, ...) and a sum over n, and `gather` is a broadcast,
    which XLA compiles to plain loops instead of a scatter and a gather.

    **Arguments:**
    - `labels`: integer array of shape (N,).
    - `num_classes`: K. Every class must have at least one sample.
    """

    labels: Int[Array, " N"]
    counts: Float[Array, " K"]
    num_classes: int = eqx.field(static=True)
    sorted: bool = eqx.field(static=True)
    per_class: int | None = eqx.field(static=True)

    def __init__(self, labels: Any, num_classes: int):
        num_classes = check_positive_int("num_classes", num_classes)
        if isinstance(labels, jax.core.Tracer):
            raise ValueError("labels must be concrete (built outside jit/vmap)")
        y = check_labels("labels", labels, num_classes=num_classes)
        counts = np.bincount(y, minlength=num_classes)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(
                f"every class needs at least one sample; class(es) {empty.tolist()} of "
                f"num_classes = {num_classes} are empty in labels"
            )
        self.labels = jnp.asarray(y, dtype=jnp.int32)
        self.counts = jnp.asarray(counts, dtype=float)
        self.num_classes = num_classes
        self.sorted = bool(np.all(np.diff(y) >= 0))
        balanced = bool(np.all(counts == counts[0]))
        self.per_class = int(counts[0]) if self.sorted and balanced else None

    @classmethod
    def balanced(cls, num_classes: int, per_class: int) -> "Classes":
        """`per_class` samples of each of `num_classes` classes, labels sorted."""
        num_classes = check_positive_int("num_classes", num_classes)
        per_class = check_positive_int("per_class", per_class)
        return cls(np.repeat(np.arange(num_classes), per_class), num_classes)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def sum(self, x: Float[Array, "N ..."]) -> Float[Array, "K ..."]:
        """Per-class sums sum_{i: y_i = k} x_i."""
        if self.per_class is not None:
            return x.reshape((self.num_classes, self.per_class) + x.shape[1:]).sum(axis=1)
        return jax.ops.segment_sum(
            x, self.labels, num_segments=self.num_classes, indices_are_sorted=self.sorted
        )

    def mean(self, x: Float[Array, "N ..."]) -> Float[Array, "K ..."]:
        """Per-class means (1/n_k) sum_{i: y_i = k} x_i."""
        s = self.sum(x)
        return s / self.counts.astype(s.dtype).reshape((-1,) + (1,) * (s.ndim - 1))

    def gather(self, per_class: Float[Array, "K ..."]) -> Float[Array, "N ..."]:
        """Row y_i of a per-class array, for every sample i."""
        if self.per_class is not None:
            K, n = self.num_classes, self.per_class
            rest = per_class.shape[1:]
            block = jnp.broadcast_to(per_class[:, None], (K, n) + rest)
            return block.reshape((K * n,) + rest)
        return per_class[self.labels]

    def one_hot(self, dtype=float) -> Float[Array, "N K"]:
        return jax.nn.one_hot(self.labels, self.num_classes, dtype=dtype)
