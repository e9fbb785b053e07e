"""The interfaces every simulated model implements: a differential equation
(`AbstractDynamics`, solved by diffrax) or a discrete map (`AbstractMap`, iterated)."""

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._classes import Classes


def _largest_entry(x: Array) -> Array:
    return jnp.max(jnp.abs(x))


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

    def resolution_scale(self, x: Float[Array, "..."]) -> Float[Array, ""]:
        """The finest scale of the state X that the model's measurements read.

        `lesde.simulate` flags a member as inaccurate (status 3) at a save time where
        the rounding unit of the state's largest entry, eps max|X| (eps of X's dtype),
        exceeds 2^-`lesde.solve.PRECISION_BITS` of this scale: the state's dynamic range
        has then swamped its floating-point precision. Default: max|X| (no dynamic-range
        test; only non-finite states and values are flagged)."""
        return _largest_entry(x)

    def default_solver(self) -> diffrax.AbstractSolver:
        """The solver `lesde.simulate` uses when it is given none. Default:
        `diffrax.Euler()` (Euler-Maruyama for a model with noise)."""
        return diffrax.Euler()

    @property
    def sample_classes(self) -> Classes | None:
        """The classes of the state's rows when X has one row per training sample
        (shape (N, p), row i of class y_i), or None (default).

        A solve may store such a state in a layout with a longer minor axis, which
        permutes the rows and their Brownian increments (`lesde.solve.choose_layout`:
        class-major for balanced classes with sorted labels, sample-minor); every model
        function still sees X as (N, p). A state without per-sample rows (None) keeps
        the model's own layout."""
        return None

    def class_major_drift(self, t, z: Float[Array, "K p n"]) -> Float[Array, "K p n"]:
        """f(t, X) in the class-major layout z[k, c, j] = X_{k n + j, c} of a state with
        per-sample rows (`sample_classes`: K balanced classes of n samples, labels
        sorted), for solves in that layout. Default: f of X unpacked to (N, p), packed
        back; override it to compute f in that layout directly."""
        K, p, n = z.shape
        f = self.drift(t, z.transpose(0, 2, 1).reshape(K * n, p))
        return f.reshape(K, n, p).transpose(0, 2, 1)

    def trial_minor_drift(self, t, z: Float[Array, "... B"]) -> Float[Array, "... B"]:
        """f(t, X) for a batch of B states stored with the trials on the minor axis,
        z[..., b] = X_b (shape (*state_shape, B)), for `lesde.solve.simulate_ensemble`.
        Default: the model's `drift` vmapped over that axis; override it to compute the
        drift in that layout directly, so that every vector operation runs along the
        long trial axis (the `LEODE` does)."""
        return jax.vmap(self.drift, in_axes=(None, -1), out_axes=-1)(t, z)


class AbstractMap(eqx.Module):
    """A random discrete-time map X_{n+1} = step(n, X_n, key_n), n = 0, 1, ...
    `lesde.simulate` iterates any such model with a `lax.scan`; time counts steps."""

    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]:
        """Shape of the state X."""

    @abc.abstractmethod
    def initial_state(self, key: PRNGKeyArray) -> Float[Array, "..."]:
        """A draw of X_0."""

    @abc.abstractmethod
    def step(self, n, x: Float[Array, "..."], key: PRNGKeyArray) -> Float[Array, "..."]:
        """X_{n+1} from X_n, with the step's own random key."""

    def resolution_scale(self, x: Float[Array, "..."]) -> Float[Array, ""]:
        """The finest scale of X that the measurements read; as
        `AbstractDynamics.resolution_scale` (default max|X|: no dynamic-range test)."""
        return _largest_entry(x)
