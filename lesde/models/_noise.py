"""Additive training noise of the LE-SDE: one module per kind of noise, combined by
`Noise`.

A kind of noise is a subclass of `AbstractNoise` registered by name (`register_noise`):
a scalar level sigma(t) >= 0 times a Brownian motion B of the kind's own shape, mapped
onto the (N, p) state by the kind's `apply`. `Noise` holds one term per kind in use,
under the kind's name, so the level of a constant independent noise has the path
`noise.terms.independent.sigma.value`.
"""

import abc
from typing import Any, ClassVar, final

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .._checks import recording_checks, require
from ._classes import Classes
from ._registry import register_class, registered
from ._schedule import AbstractSchedule, as_schedule, Function


def _level(x: Any) -> AbstractSchedule:
    return as_schedule("noise sigma", x, ())


class AbstractNoise(eqx.Module):
    r"""One kind of additive noise, sigma(t) dB, on the LE-SDE's state X in R^{N x p}:

        dX = ... + apply(sigma(t), dB, classes),

    with B a Brownian motion of the kind's own shape (`brownian_shape`: per sample, per
    class, one for all, ...) and `apply` mapping sigma dB onto the (N, p) state.

    A kind has a class attribute `name` (its keyword in `Noise`, its key in
    `Noise.terms` and in paths: `noise.terms.<name>.sigma.value`) and the level `sigma`
    >= 0 (a number, a callable of t or a scalar schedule). Register a kind with
    `register_noise` to use it by name in `Noise` and in configs.

    **Arguments:** `sigma`: the level sigma(t) >= 0.
    """

    name: ClassVar[str]
    sigma: AbstractSchedule = eqx.field(converter=_level)

    def __check_init__(self):
        self.sigma.check_nonnegative(f"noise.{self.name} sigma")

    @abc.abstractmethod
    def brownian_shape(self, classes: Classes, dim: int) -> tuple[int, ...]:
        """The shape of the Brownian motion B that drives this noise, for the samples of
        `classes` with p = `dim` features."""

    @abc.abstractmethod
    def apply(
        self, sigma: Float[Array, ""], dw: Float[Array, "..."], classes: Classes
    ) -> Float[Array, "N p"]:
        """This noise's part of dX, shape (N, p), for the level `sigma` (a scalar) and an
        increment `dw` of B (of `brownian_shape`). It must be linear in `dw`: the
        additive-noise solvers (SEA, ShARK, SRA1) also apply it to B's Levy area."""


NOISES: dict[str, type[AbstractNoise]] = {}
"""Name -> kind of noise, for the keywords of `Noise` (`Noise(independent=0.1)`) and the
`noise` key of configs; `register_noise` adds to it."""


def register_noise(cls: type[AbstractNoise]) -> type[AbstractNoise]:
    """Register a kind of noise under its `name` (a class decorator), so that
    `Noise(name=sigma)` and configs (`noise: {name: sigma}`) use it. The class must be a
    concrete subclass of `AbstractNoise` whose `name` is an identifier, constructible as
    `cls(sigma)`.

    Example (one Brownian motion W in R^p that moves every sample alike, a new module of
    your own):

        from typing import ClassVar
        import jax.numpy as jnp
        from lesde.models import AbstractNoise, register_noise

        @register_noise
        class Common(AbstractNoise):
            \"\"\"sigma(t) dW on every sample i, one W in R^p for all.\"\"\"
            name: ClassVar[str] = "common"

            def brownian_shape(self, classes, dim):
                return (1, dim)

            def apply(self, sigma, dw, classes):
                return jnp.broadcast_to(sigma * dw, (classes.num_samples, dw.shape[-1]))

        noise = Noise(independent=0.1, common=0.05)
    """
    return register_class(NOISES, cls, AbstractNoise, "noise", "register_noise")


def noise_kind(name: str) -> type[AbstractNoise]:
    """The kind of noise registered as `name`; a ValueError listing the kinds if none."""
    return registered(NOISES, name, "noise", "register_noise")


@final
@register_noise
class Independent(AbstractNoise):
    """sigma_ind(t) dW_i: one Brownian motion per sample and feature coordinate,
    W_i in R^p."""

    name: ClassVar[str] = "independent"

    def brownian_shape(self, classes, dim):
        return (classes.num_samples, dim)

    def apply(self, sigma, dw, classes):
        return sigma * dw


@final
@register_noise
class Shared(AbstractNoise):
    """sigma_sh(t) dW_{y_i}: one Brownian motion per class, W_k in R^p, moving every
    sample of class k alike (an SGD draw moves a whole class at once)."""

    name: ClassVar[str] = "shared"

    def brownian_shape(self, classes, dim):
        return (classes.num_classes, dim)

    def apply(self, sigma, dw, classes):
        return classes.gather(sigma * dw)


@final
class Noise(eqx.Module):
    r"""Additive noise on sample i (Ito), the sum of its terms,

        sigma_ind(t) dW_i + sigma_sh(t) dW_{y_i} + ...,

    one per kind of noise in use (`NOISES`; `register_noise` adds kinds):

    - `independent`: sigma_ind(t) >= 0; one Brownian motion per sample and feature
      coordinate, W_i in R^p (`Independent`).
    - `shared`: sigma_sh(t) >= 0; one Brownian motion per class, W_k in R^p, moving every
      sample of class k alike (`Shared`).

    Each level is a number, a callable of t, a scalar schedule, or an instance of the
    kind; None (the default) leaves the kind out. No term means no noise (the LE-SDE is
    then an ODE). The noise does not depend on the state, so additive-noise solvers
    (SEA, ShARK, SRA1) are valid.

    **Fields:** `terms`: kind name -> `AbstractNoise`, in the order of the names (the
    order in which pytrees flatten a dict, and in which the terms are added).

    Example: `Noise(independent=0.1)`; `Noise(shared=PowerLaw(0.1, 0.5, 1.0))`;
    `noise.level("independent")` is sigma_ind as a schedule (None when off).
    """

    terms: dict[str, AbstractNoise]

    def __init__(self, independent: Any = None, shared: Any = None, **others: Any):
        terms = {}
        for name, x in {"independent": independent, "shared": shared, **others}.items():
            if x is None:
                continue
            kind = noise_kind(name)
            if isinstance(x, AbstractNoise):
                if type(x) is not kind:
                    raise ValueError(
                        f"noise.{name} must be a level or an instance of {kind.__qualname__} "
                        f"(the noise registered as {name!r}), got an instance of "
                        f"{type(x).__qualname__}"
                    )
                terms[name] = x
            else:
                terms[name] = kind(as_schedule(f"noise.{name}", x, ()))
        self.terms = dict(sorted(terms.items()))

    def __check_init__(self):
        for name, term in self.terms.items():
            if not isinstance(term, AbstractNoise) or term.name != name:
                raise ValueError(
                    f"Noise.terms[{name!r}] must be the noise registered as {name!r}, got "
                    f"{type(term).__qualname__}"
                )

    @property
    def is_zero(self) -> bool:
        return not self.terms

    def level(self, name: str) -> AbstractSchedule | None:
        """The level sigma(t) of the kind `name` as a schedule, None if it is off."""
        noise_kind(name)
        term = self.terms.get(name)
        return None if term is None else term.sigma

    def brownian_shape(
        self, classes: Classes, dim: int, dtype=None
    ) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes of the driving Brownian motions, by kind: (N, p) independent, (K, p)
        shared, ..."""
        dtype = dtype or jnp.result_type(float)
        return {
            name: jax.ShapeDtypeStruct(tuple(term.brownian_shape(classes, dim)), dtype)
            for name, term in self.terms.items()
        }

    def sigmas(self, t, dtype=None) -> dict[str, Float[Array, ""]]:
        dtype = dtype or jnp.result_type(float)
        return {name: jnp.asarray(term.sigma(t), dtype) for name, term in self.terms.items()}

    def product(
        self, sigmas: dict[str, Array], dw: dict[str, Array], classes: Classes
    ) -> Float[Array, "N p"]:
        """The sum of the terms' parts, e.g. sigma_ind dW_i + sigma_sh dW_{y_i}."""
        out = 0.0
        for name, term in self.terms.items():
            out = out + term.apply(sigmas[name], dw[name], classes)
        return out

    def check_on_grid(self, ts: Float[Array, " T"]) -> None:
        """Check that sigma(t) is finite and >= 0 on the time grid `ts`: on every grid
        time for a callable of t, at the first and last for the other schedules (their
        sign is checked from their parameters when built, and they are monotone
        between knots, so overflow, e.g. of a power law with r < 0, shows at an end)."""
        for name, term in self.terms.items():
            s = term.sigma
            at = jnp.asarray(ts)
            if not isinstance(s, Function):
                at = at[jnp.asarray([0, at.shape[0] - 1])]
            with jax.ensure_compile_time_eval():  # evaluate now, also inside a jit trace
                vals = jax.vmap(s)(at)
            if isinstance(vals, jax.core.Tracer):  # sigma depends on traced values
                if recording_checks():  # a batch check: record it for every member
                    require(
                        f"noise.{name} sigma(t) on the time grid", vals,
                        lambda v: ~(jnp.isfinite(v) & (v >= 0)), "finite and >= 0",
                    )
                continue
            vals = np.asarray(vals)
            bad = ~np.isfinite(vals) | (vals < 0)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"noise.{name} sigma must be finite and >= 0, got sigma({float(at[i])}) "
                    f"= {vals[i]}"
                )


class NoiseTerm(diffrax.AbstractTerm):
    """The noise of an LE-SDE as a diffrax term: vf(t) = the levels, control = the
    Brownian increments, prod = the sum of the terms' parts (`Noise.product`)."""

    noise: Noise
    classes: Classes
    path: diffrax.AbstractBrownianPath

    def vf(self, t, y, args) -> PyTree[Array]:
        return self.noise.sigmas(t, y.dtype)

    def contr(self, t0, t1, **kwargs):
        return self.path.evaluate(t0, t1, **kwargs)

    def prod(self, vf, control) -> Float[Array, "N p"]:
        return self.noise.product(vf, control, self.classes)
