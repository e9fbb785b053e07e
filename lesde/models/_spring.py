"""The spring-block model of feature learning (Shi, Pan, Dokmanic, arXiv 2407.19353).

A chain of L blocks on a rough floor: a wall x_0 = 0 (the input), blocks x_1..x_L (the
hidden layers), springs of stiffness k between neighbours, and a load on the last block
(the loss). Spring l's elongation d_l = x_l - x_{l-1} stands for layer l's separation
gain D_{l-1} - D_l; friction stands for the nonlinearity and random shaking for the
training noise.

- `Chain`: the springs and the load (displacement or force control);
- `Friction`: the floor, with friction mu_fwd against forward and mu_back against
  backward motion;
- `SpringBlockMap`: Variant A, the first-order discrete map with static (dead-zone)
  friction and the noise inside the dead zone;
- `SpringBlockSDE`: Variant B, the second-order Langevin SDE with kinetic friction.
"""

import abc
from typing import Any, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .._checks import (
    as_float_array, check_finite, check_nonnegative, check_positive, check_positive_int, is_concrete,
    show,
)
from ._base import AbstractDynamics, AbstractMap

CONTROLS = ("displacement", "force")
SPRING_NOISES = ("common", "independent")


def _scalar(name: str, x: Any) -> Array:
    """A scalar float parameter (its value is checked by the module's __check_init__)."""
    a = as_float_array(name, x)
    if a.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(a.shape)}")
    return a


_RULES = {"positive": check_positive, "nonnegative": check_nonnegative, "finite": check_finite}


def _check_fields(module: eqx.Module, rules: dict[str, str]) -> None:
    """Check each scalar field of `module` by its rule ('positive', 'nonnegative',
    'finite'; None fields are skipped): at construction, and again after a field is
    replaced (`lesde.models.set_at`)."""
    for name, rule in rules.items():
        value = getattr(module, name)
        if value is not None:
            _RULES[rule](name, value)


class Chain(eqx.Module):
    r"""L blocks joined by springs of stiffness k to a wall x_0 = 0 and to a load.

    The force of the springs and the load on block l (l = 1..L) is

        F_l = k (x_{l+1} - 2 x_l + x_{l-1}),   x_0 = 0,

    with, for block L,

    - `control='displacement'`: x_{L+1} = y = `load` (a spring of stiffness k ties the
      last block to the fixed target y; spring L+1 is this target spring);
    - `control='force'`: k (x_{L+1} - x_L) is replaced by the constant force F = `load`.

    **Arguments:** `num_blocks` L >= 1; `stiffness` k > 0; `load` y or F (finite);
    `control` 'displacement' (default) or 'force'.
    """

    num_blocks: int = eqx.field(static=True)
    control: str = eqx.field(static=True)
    stiffness: Float[Array, ""]
    load: Float[Array, ""]

    def __init__(
        self,
        num_blocks: int,
        stiffness: Any = 1.0,
        load: Any = 1.0,
        control: Literal["displacement", "force"] = "displacement",
    ):
        self.num_blocks = check_positive_int("num_blocks", num_blocks)
        if control not in CONTROLS:
            raise ValueError(f"control must be one of {list(CONTROLS)}, got {control!r}")
        self.control = control
        self.stiffness = _scalar("stiffness", stiffness)
        self.load = _scalar("load", load)

    def __check_init__(self):
        _check_fields(self, {"stiffness": "positive", "load": "finite"})

    @property
    def num_springs(self) -> int:
        """L + 1 with a target spring (displacement control), else L."""
        return self.num_blocks + (self.control == "displacement")

    def elongations(self, x: Float[Array, " L"]) -> Float[Array, " S"]:
        """d_j = x_j - x_{j-1}, j = 1..L, and the target spring's y - x_L under
        displacement control (S = `num_springs`)."""
        d = jnp.diff(x, prepend=jnp.zeros_like(x[:1]))
        if self.control == "displacement":
            d = jnp.concatenate([d, (self.load - x[-1:]).astype(x.dtype)])
        return d

    def force(self, x: Float[Array, " L"]) -> Float[Array, " L"]:
        """F_l = T_{l+1} - T_l, the spring tensions T_j = k d_j (T_{L+1} = F under force
        control)."""
        k = self.stiffness.astype(x.dtype)
        tension = k * jnp.diff(x, prepend=jnp.zeros_like(x[:1]))
        if self.control == "displacement":
            last = k * (self.load.astype(x.dtype) - x[-1:])
        else:
            last = jnp.broadcast_to(self.load.astype(x.dtype), (1,))
        return jnp.concatenate([tension[1:], last]) - tension

    def potential(self, x: Float[Array, " L"]) -> Float[Array, ""]:
        """U = (k/2) sum_j d_j^2 (target spring included), minus F x_L under force
        control; F_l = -dU/dx_l."""
        d = self.elongations(x)
        u = 0.5 * self.stiffness.astype(x.dtype) * jnp.sum(d**2)
        if self.control == "force":
            u = u - self.load.astype(x.dtype) * x[-1]
        return u


class Friction(eqx.Module):
    r"""Floor friction, asymmetric: mu_fwd resists forward (F > 0 or v > 0) and mu_back
    backward motion.

    - static (dead zone, Variant A): Phi(F) = F - mu_fwd if F > mu_fwd,
      F + mu_back if F < -mu_back, else 0;
    - kinetic (Variant B): f(v) = mu_fwd 1{v > 0} - mu_back 1{v < 0} (0 at v = 0), or,
      with `smoothing` v_s > 0, the smooth f(v) = mu(v) tanh(v / v_s) with mu(v) = mu_fwd
      for v >= 0 and mu_back for v < 0 (continuous, for gradient-based use).

    **Arguments:** `mu_fwd`, `mu_back` >= 0 (`mu_back` defaults to `mu_fwd`).
    """

    mu_fwd: Float[Array, ""]
    mu_back: Float[Array, ""]

    def __init__(self, mu_fwd: Any = 0.0, mu_back: Any = None):
        self.mu_fwd = _scalar("mu_fwd", mu_fwd)
        self.mu_back = (
            self.mu_fwd if mu_back is None else _scalar("mu_back", mu_back)
        )

    def __check_init__(self):
        _check_fields(self, {"mu_fwd": "nonnegative", "mu_back": "nonnegative"})

    def dead_zone(self, force: Float[Array, "*L"]) -> Float[Array, "*L"]:
        """Phi(F): what the force exceeds the static friction by, signed."""
        fwd, back = self.mu_fwd.astype(force.dtype), self.mu_back.astype(force.dtype)
        return jnp.where(force > fwd, force - fwd, jnp.where(force < -back, force + back, 0.0))

    def kinetic(self, v: Float[Array, "*L"], smoothing: Array | None = None) -> Float[Array, "*L"]:
        """f(v), the kinetic friction (subtracted from the acceleration)."""
        fwd, back = self.mu_fwd.astype(v.dtype), self.mu_back.astype(v.dtype)
        if smoothing is None:
            return jnp.where(v > 0, fwd, jnp.where(v < 0, -back, 0.0))
        return jnp.where(v >= 0, fwd, back) * jnp.tanh(v / smoothing.astype(v.dtype))


class AbstractSpringBlock(eqx.Module):
    """What both spring-block variants share: a `Chain` and a `Friction`, and the
    block positions of a state."""

    chain: eqx.AbstractVar[Chain]
    friction: eqx.AbstractVar[Friction]

    @property
    def num_blocks(self) -> int:
        return self.chain.num_blocks

    @abc.abstractmethod
    def positions(self, state: Array) -> Float[Array, " L"]:
        """Block positions x_1..x_L of a state."""

    def gains(self, state: Array) -> Float[Array, " L"]:
        """Spring elongations d_l = x_l - x_{l-1}, l = 1..L (the layer gains of the load
        curve; the target spring is not a layer)."""
        x = self.positions(state)
        return jnp.diff(x, prepend=jnp.zeros_like(x[:1]))


def _chain_and_friction(num_blocks, stiffness, load, control, mu_fwd, mu_back):
    return Chain(num_blocks, stiffness, load, control), Friction(mu_fwd, mu_back)


class SpringBlockMap(AbstractSpringBlock, AbstractMap):
    r"""Variant A: the first-order discrete map with static friction, stepped n = 0, 1, ...

        F_l = k (x_{l+1} - 2 x_l + x_{l-1}) + s xi_l,   xi_l ~ N(0, 1) iid over l and n
        x_l <- x_l + eta Phi(F_l)

    with Phi the dead zone of `Friction` (threshold mu_back if F_l < 0, else mu_fwd) and
    the boundaries of `Chain`, all blocks updated at once. The noise sits inside the dead
    zone, so shaking helps pinned blocks move: this is a discrete map, not an SDE in
    standard form (the authors relate s to an SDE amplitude eps by s = eps / sqrt(eta)).
    `lesde.simulate` steps it with a `lax.scan`: time counts steps (dt = 1), and step n
    draws xi from `fold_in(key, n)`. It is differentiable wherever Phi is (everywhere but
    |F_l| = mu).

    Defaults are the authors' setting: L = 7, k = 1, y = 1, eta = 0.01, s = 0.1,
    mu_fwd = mu_back = 0.1 (10^4 steps), from rest x(0) = 0.

    **Arguments:** `num_blocks` L >= 1; `stiffness` k > 0; `mu_fwd`, `mu_back` >= 0
    (`mu_back` defaults to `mu_fwd`); `noise` s >= 0; `eta` > 0; `load` (y or F) and
    `control` ('displacement' or 'force', see `Chain`). Scalars may be JAX arrays (e.g.
    built under `vmap` in a sweep).
    """

    chain: Chain
    friction: Friction
    noise: Float[Array, ""]
    eta: Float[Array, ""]

    def __init__(
        self,
        num_blocks: int = 7,
        *,
        stiffness: Any = 1.0,
        mu_fwd: Any = 0.1,
        mu_back: Any = None,
        noise: Any = 0.1,
        eta: Any = 0.01,
        load: Any = 1.0,
        control: Literal["displacement", "force"] = "displacement",
    ):
        self.chain, self.friction = _chain_and_friction(
            num_blocks, stiffness, load, control, mu_fwd, mu_back
        )
        self.noise = _scalar("noise", noise)
        self.eta = _scalar("eta", eta)

    def __check_init__(self):
        _check_fields(self, {"noise": "nonnegative", "eta": "positive"})

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.chain.num_blocks,)

    def initial_state(self, key: PRNGKeyArray) -> Float[Array, " L"]:
        """Rest: x(0) = 0."""
        return jnp.zeros(self.state_shape, jnp.result_type(float))

    def step(self, n, x: Float[Array, " L"], key: PRNGKeyArray) -> Float[Array, " L"]:
        xi = jr.normal(key, x.shape, x.dtype)
        force = self.chain.force(x) + self.noise.astype(x.dtype) * xi
        return x + self.eta.astype(x.dtype) * self.friction.dead_zone(force)

    def positions(self, state):
        return state


class _ShakingTerm(diffrax.AbstractTerm):
    """The noise of `SpringBlockSDE` as a diffrax term: vf = sigma(t), control = the
    Brownian increment, prod = (0, sigma dW) (velocities only)."""

    model: "SpringBlockSDE"
    path: diffrax.AbstractBrownianPath

    def vf(self, t, y, args):
        return self.model.sigma(t).astype(y.dtype)

    def contr(self, t0, t1, **kwargs):
        return self.path.evaluate(t0, t1, **kwargs)

    def prod(self, vf, control):
        L = self.model.num_blocks
        if self.model.noise_kind == "common":
            dv = jnp.full((L,), vf * np.sqrt(L)) * control
        else:
            dv = vf * control
        return jnp.stack([jnp.zeros_like(dv), dv])


class SpringBlockSDE(AbstractSpringBlock, AbstractDynamics):
    r"""Variant B: the second-order Langevin SDE with kinetic friction. State (2, L):
    positions x (row 0) and velocities v (row 1).

        dx_l = v_l dt
        dv_l = [ F_l / m - f(v_l) - (gamma / m) v_l ] dt + sigma(t) dB_l,
        sigma(t) = eps exp(-lambda t)

    with F_l = k (x_{l+1} - 2 x_l + x_{l-1}) the force of `Chain` (displacement or force
    control) and f the kinetic friction of `Friction` (mu_fwd 1{v > 0} - mu_back 1{v < 0},
    0 at v = 0; no static friction; f is an acceleration, not divided by m, as the
    authors ran it). The noise is

    - `noise_kind='common'` (default, the authors' shaking floor): their diffusion matrix
      eps exp(-lambda t) ones(L, L) acting on L independent Brownian motions, i.e.
      dB_l = sum_j dW_j for every block, the same increment of variance L dt for all
      blocks; simulated (equal in law) as sqrt(L) times one Brownian motion;
    - `noise_kind='independent'`: dB_l = dW_l, independent per block.

    The friction is discontinuous in v: use fixed steps with Euler(-Maruyama) (default)
    or Heun. For gradients with respect to the friction, pass `smoothing` v_s > 0 for
    f(v) = mu(v) tanh(v / v_s) (an explicit approximation of the model; see `Friction`).

    Energy: E = (m/2) |v|^2 + U(x) with U the chain's potential; without noise
    and friction dE/dt = -gamma |v|^2 <= 0 (`energy`).

    Defaults are the authors' setting: L = 7, m = 1, gamma = 1, k = 0.1, eps = 0.003,
    lambda = 0.001, mu_fwd = 0.003, mu_back = 0.004, y = 1 (dt = 0.05, t in [0, 700]),
    from x = v = 0.

    **Arguments:** `num_blocks` L >= 1; `stiffness` k > 0; `mass` m > 0; `damping`
    gamma >= 0; `mu_fwd`, `mu_back` >= 0; `noise` eps >= 0; `decay` lambda >= 0;
    `noise_kind`; `smoothing` v_s > 0 or None (exact friction); `load`, `control`.
    """

    chain: Chain
    friction: Friction
    mass: Float[Array, ""]
    damping: Float[Array, ""]
    noise: Float[Array, ""]
    decay: Float[Array, ""]
    smoothing: Float[Array, ""] | None
    noise_kind: str = eqx.field(static=True)
    _noiseless: bool = eqx.field(static=True)

    def __init__(
        self,
        num_blocks: int = 7,
        *,
        stiffness: Any = 0.1,
        mass: Any = 1.0,
        damping: Any = 1.0,
        mu_fwd: Any = 0.003,
        mu_back: Any = 0.004,
        noise: Any = 0.003,
        decay: Any = 0.001,
        noise_kind: Literal["common", "independent"] = "common",
        smoothing: Any = None,
        load: Any = 1.0,
        control: Literal["displacement", "force"] = "displacement",
    ):
        self.chain, self.friction = _chain_and_friction(
            num_blocks, stiffness, load, control, mu_fwd, mu_back
        )
        self.mass = _scalar("mass", mass)
        self.damping = _scalar("damping", damping)
        self.noise = _scalar("noise", noise)
        # eps known to be 0 when built (not under a transformation): solved as an ODE
        self._noiseless = is_concrete(self.noise) and float(self.noise) == 0
        self.decay = _scalar("decay", decay)
        if noise_kind not in SPRING_NOISES:
            raise ValueError(f"noise_kind must be one of {list(SPRING_NOISES)}, got {noise_kind!r}")
        self.noise_kind = noise_kind
        self.smoothing = None if smoothing is None else _scalar("smoothing", smoothing)

    def __check_init__(self):
        _check_fields(self, {"mass": "positive", "damping": "nonnegative", "noise": "nonnegative",
                             "decay": "nonnegative", "smoothing": "positive"})
        if self._noiseless and not (is_concrete(self.noise) and float(self.noise) == 0):
            raise ValueError(
                "noise: this SpringBlockSDE was built without noise (it is solved as an ODE); "
                "build it with its noise instead of setting the noise afterwards"
            )

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (2, self.chain.num_blocks)

    def sigma(self, t) -> Float[Array, ""]:
        """sigma(t) = eps exp(-lambda t)."""
        return self.noise * jnp.exp(-self.decay * t)

    def drift(self, t, y: Float[Array, "2 L"]) -> Float[Array, "2 L"]:
        x, v = y[0], y[1]
        m = self.mass.astype(y.dtype)
        accel = (
            self.chain.force(x) / m
            - self.friction.kinetic(v, self.smoothing)
            - self.damping.astype(y.dtype) / m * v
        )
        return jnp.stack([v, accel])

    def initial_state(self, key: PRNGKeyArray) -> Float[Array, "2 L"]:
        """Rest: x = v = 0."""
        return jnp.zeros(self.state_shape, jnp.result_type(float))

    def brownian_shape(self) -> PyTree[jax.ShapeDtypeStruct] | None:
        if self._noiseless:
            return None
        shape = () if self.noise_kind == "common" else (self.chain.num_blocks,)
        return jax.ShapeDtypeStruct(shape, jnp.result_type(float))

    def noise_term(self, path) -> diffrax.AbstractTerm | None:
        return None if self._noiseless else _ShakingTerm(self, path)

    def check_on_grid(self, ts) -> None:
        pass

    def positions(self, state):
        return state[0]

    def energy(self, state: Float[Array, "2 L"]) -> Float[Array, ""]:
        """E = (m/2) |v|^2 + U(x) (see `Chain.potential`)."""
        return 0.5 * self.mass.astype(state.dtype) * jnp.sum(state[1] ** 2) + self.chain.potential(
            state[0]
        )


def check_spring_model(model: Any) -> AbstractSpringBlock:
    if not isinstance(model, AbstractSpringBlock):
        raise ValueError(
            f"expected a spring-block model (SpringBlockMap or SpringBlockSDE), got {show(model)}"
        )
    return model
