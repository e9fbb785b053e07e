"""Additive training noise of the LE-SDE."""

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from ._classes import Classes
from .._checks import recording_checks, require
from ._schedule import AbstractSchedule, as_schedule, Function


class Noise(eqx.Module):
    r"""Additive noise sigma_ind(t) dW_i + sigma_sh(t) dW_{y_i} on sample i (Ito).

    - `independent`: sigma_ind(t) >= 0; one Brownian motion per sample and feature
      coordinate, W_i in R^p.
    - `shared`: sigma_sh(t) >= 0; one Brownian motion per class, W_k in R^p, moving every
      sample of class k alike (an SGD draw moves a whole class at once).

    Either may be None (off); both None means no noise (the LE-SDE is then an ODE).
    Each is a number, a callable of t, or a scalar schedule. The noise does not depend
    on the state, so additive-noise solvers (SEA, ShARK, SRA1) are valid.
    """

    independent: AbstractSchedule | None
    shared: AbstractSchedule | None

    def __init__(self, independent: Any = None, shared: Any = None):
        self.independent = None if independent is None else as_schedule(
            "noise.independent", independent, ()
        )
        self.shared = None if shared is None else as_schedule("noise.shared", shared, ())

    def __check_init__(self):
        for name, s in self._parts().items():
            s.check_nonnegative(f"noise.{name} sigma")

    @property
    def is_zero(self) -> bool:
        return self.independent is None and self.shared is None

    def _parts(self):
        return {
            name: s
            for name, s in (("independent", self.independent), ("shared", self.shared))
            if s is not None
        }

    def brownian_shape(
        self, classes: Classes, dim: int, dtype=None
    ) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes of the driving Brownian motions: (N, p) independent, (K, p) shared."""
        dtype = dtype or jnp.result_type(float)
        rows = {"independent": classes.num_samples, "shared": classes.num_classes}
        return {name: jax.ShapeDtypeStruct((rows[name], dim), dtype) for name in self._parts()}

    def sigmas(self, t, dtype=None) -> dict[str, Float[Array, ""]]:
        dtype = dtype or jnp.result_type(float)
        return {name: jnp.asarray(s(t), dtype) for name, s in self._parts().items()}

    def product(
        self, sigmas: dict[str, Array], dw: dict[str, Array], classes: Classes
    ) -> Float[Array, "N p"]:
        """sigma_ind dW_i + sigma_sh dW_{y_i}."""
        out = 0.0
        if "independent" in sigmas:
            out = out + sigmas["independent"] * dw["independent"]
        if "shared" in sigmas:
            out = out + classes.gather(sigmas["shared"] * dw["shared"])
        return out

    def check_on_grid(self, ts: Float[Array, " T"]) -> None:
        """Check that sigma(t) is finite and >= 0 on the time grid `ts`: on every grid
        time for a callable of t, at the first and last for the other schedules (their
        sign is checked from their parameters when built, and they are monotone
        between knots, so overflow, e.g. of a power law with r < 0, shows at an end)."""
        for name, s in self._parts().items():
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
    """The noise of an LE-SDE as a diffrax term: vf(t) = the sigmas, control = the
    Brownian increments, prod = sigma_ind dW_i + sigma_sh dW_{y_i}."""

    noise: Noise
    classes: Classes
    path: diffrax.AbstractBrownianPath

    def vf(self, t, y, args) -> PyTree[Array]:
        return self.noise.sigmas(t, y.dtype)

    def contr(self, t0, t1, **kwargs):
        return self.path.evaluate(t0, t1, **kwargs)

    def prod(self, vf, control) -> Float[Array, "N p"]:
        return self.noise.product(vf, control, self.classes)
