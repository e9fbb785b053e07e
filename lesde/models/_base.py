"""The interface every simulated model implements."""

import abc

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree


class AbstractDynamics(eqx.Module):
    """A differential equation dX = f(t, X) dt (+ additive noise) with a random or
    given initial state. `lesde.simulate` integrates any such model."""

    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]:
        """Shape of the state X."""

    @abc.abstractmethod
    def drift(self, t, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """f(t, X)."""

    @abc.abstractmethod
    def initial_state(self, key: PRNGKeyArray) -> Float[Array, "..."]:
        """A draw of X(0)."""

    @abc.abstractmethod
    def noise_term(self, path) -> PyTree | None:
        """The diffrax term of the noise driven by Brownian `path`, or None for an ODE."""

    @abc.abstractmethod
    def brownian_shape(self) -> PyTree | None:
        """Shape of the driving Brownian motion (a PyTree of ShapeDtypeStruct), or None."""

    @abc.abstractmethod
    def check_on_grid(self, ts) -> None:
        """Checks of time-dependent inputs that can only be made on the solver's grid."""
