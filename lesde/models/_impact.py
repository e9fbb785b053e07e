"""Impact matrices E(t) in R^{K x K}.

E_{k k'}(t) is the impact of a gradient step taken on a class-k' sample on the features
of a class-k sample. The drift of the LE-SDE needs only the product E(t) @ G for a
K x p matrix G of class-mean gradients, which each impact computes in its cheapest way.
"""

import abc
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_positive_int
from ._ops import axis_sum
from ._schedule import AbstractSchedule, as_schedule


class AbstractImpact(eqx.Module):
    """An impact matrix E(t) acting on K classes."""

    @abc.abstractmethod
    def matrix(self, t, num_classes: int) -> Float[Array, "K K"]:
        """E(t) as a dense K x K matrix."""

    @abc.abstractmethod
    def apply(self, t, g: Float[Array, "K *rest"]) -> Float[Array, "K *rest"]:
        """E(t) @ g, contracting the leading (class) axis of g: g of shape (K, p), or
        (K, p, B) for B states with the trials on the minor axis."""

    @abc.abstractmethod
    def check(self, num_classes: int) -> None:
        """Raise a ValueError if this impact cannot act on `num_classes` classes."""


class LocallyElastic(AbstractImpact):
    r"""E(t) = (alpha(t) - beta(t)) I + beta(t) 1 1^T.

    alpha is the intra-class impact, beta the inter-class impact; the impacts are
    "locally elastic" when alpha > beta. E @ g costs O(K p):
    (E g)_k = (alpha - beta) g_k + beta sum_k' g_k'.
    Eigenvalues of E/K: (alpha + (K-1) beta)/K on the all-ones direction, and
    (alpha - beta)/K with multiplicity K-1.

    **Arguments:** `alpha`, `beta`: numbers, callables of t, or scalar schedules.
    """

    alpha: AbstractSchedule
    beta: AbstractSchedule

    def __init__(self, alpha: Any, beta: Any):
        self.alpha = as_schedule("alpha", alpha, ())
        self.beta = as_schedule("beta", beta, ())

    def matrix(self, t, num_classes):
        a, b = self.alpha(t), self.beta(t)
        eye = jnp.eye(num_classes, dtype=jnp.result_type(a, b))
        return (a - b) * eye + b * jnp.ones_like(eye)

    def apply(self, t, g):
        a, b = self.alpha(t), self.beta(t)
        return (a - b) * g + b * axis_sum(g, 0, keepdims=True)

    def check(self, num_classes):
        check_positive_int("num_classes", num_classes)


class General(AbstractImpact):
    """A general K x K impact E(t), given as a matrix or a matrix-valued schedule
    (`Constant`, `PowerLaw` with matrix c, `PiecewiseLinear` with (M, K, K) values,
    or a callable of t). E @ g costs O(K^2 p).
    """

    schedule: AbstractSchedule

    def __init__(self, matrix: Any):
        sched = as_schedule("impact matrix", matrix)
        if callable(matrix) and not isinstance(matrix, AbstractSchedule):
            out = jnp.shape(matrix(jnp.zeros(())))
            sched = as_schedule("impact matrix", matrix, out)
        shape = tuple(sched.shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"impact matrix must be square K x K, got shape {shape}")
        self.schedule = sched

    @property
    def num_classes(self) -> int:
        return self.schedule.shape[0]

    def matrix(self, t, num_classes):
        return self.schedule(t)

    def apply(self, t, g):
        e = self.schedule(t)
        return e @ g if g.ndim <= 2 else jnp.tensordot(e, g, axes=1)

    def check(self, num_classes):
        if self.num_classes != num_classes:
            raise ValueError(
                f"impact matrix is {self.num_classes} x {self.num_classes} but the model "
                f"has num_classes = {num_classes}"
            )
