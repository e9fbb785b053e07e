"""Time schedules f(t) for impacts and noise levels.

A schedule maps a scalar time t to an array of fixed shape (a scalar for alpha, beta
and sigma; a K x K matrix for a general impact). Each schedule also knows its integral
F(t) = int_0^t f(s) ds where one exists in closed form; the LE-ODE closed forms use it
(A(t) = int_0^t alpha, B(t) = int_0^t beta).
"""

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Real

from .._checks import as_float_array, check_finite, check_increasing, check_positive, show
from .._checks import check_nonnegative as _nonneg
from ._registry import register_class, registered


class AbstractSchedule(eqx.Module):
    """A function of time t -> value of a fixed shape."""

    @abc.abstractmethod
    def __call__(self, t: Real[Array, ""] | float) -> Float[Array, "..."]:
        """Value f(t)."""

    @abc.abstractmethod
    def integral(self, t: Real[Array, ""] | float) -> Float[Array, "..."]:
        """F(t) = int_0^t f(s) ds."""

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, ...]:
        """Shape of f(t)."""

    @abc.abstractmethod
    def check_nonnegative(self, name: str) -> None:
        """Raise a ValueError naming `name` if f(t) < 0 or is non-finite for some t >= 0
        (where that can be decided from the parameters)."""

    @abc.abstractmethod
    def time_scaled(self, stretch, amplitude) -> "AbstractSchedule":
        """The schedule g(tau) = amplitude * f(stretch * tau), of the same kind.

        A change of time unit t = s tau turns a rate f(t) per unit t into the rate
        g(tau) = s f(s tau) per unit tau (stretch = amplitude = s), and a noise level
        sigma(t) into sqrt(s) sigma(s tau) (a Brownian motion in tau is W(s tau)/sqrt(s)).
        """


SCHEDULES: dict[str, type[AbstractSchedule]] = {}
"""Name -> schedule class, for the schedules of configs (`{power_law: {c: 1.0, r: 0.5}}`);
`register_schedule` adds to it."""


def register_schedule(cls: type[AbstractSchedule]) -> type[AbstractSchedule]:
    """Register a schedule class under its `name` (a class decorator), so that configs
    build it: `{name: {argument: value, ...}}` calls `cls(**arguments)`, and `{name: x}`
    passes x as its first argument. Each argument that is a number is sweepable, as
    `<path of the schedule>.<argument>`.

    Example (an exponential decay, a new module of your own):

        @register_schedule
        class Exponential(AbstractSchedule):
            \"\"\"f(t) = c exp(-t / tau).\"\"\"
            name: ClassVar[str] = "exponential"
            c: Float[Array, "..."]
            tau: Float[Array, ""]
            ...  # __call__, integral, shape, check_nonnegative, time_scaled
    """
    return register_class(SCHEDULES, cls, AbstractSchedule, "schedule", "register_schedule")


def schedule_kind(name: str) -> type[AbstractSchedule]:
    """The schedule class registered as `name`; a ValueError listing them if none."""
    return registered(SCHEDULES, name, "schedule", "register_schedule")


@register_schedule
class Constant(AbstractSchedule):
    """f(t) = c."""

    name: ClassVar[str] = "constant"

    value: Float[Array, "..."]

    def __init__(self, value: Any, *, name: str = "value"):
        self.value = as_float_array(name, value)
        check_finite(name, self.value)

    def __call__(self, t):
        return self.value

    def integral(self, t):
        return self.value * t

    @property
    def shape(self):
        return tuple(jnp.shape(self.value))

    def check_nonnegative(self, name):
        _nonneg(name, self.value)

    def time_scaled(self, stretch, amplitude):
        return eqx.tree_at(lambda f: f.value, self, amplitude * self.value)


@register_schedule
class PowerLaw(AbstractSchedule):
    r"""f(t) = c (1 + t / t0)^(-r).

    The integral is F(t) = c t0 [(1 + t/t0)^(1-r) - 1] / (1 - r), and
    c t0 ln(1 + t/t0) at r = 1 (evaluated stably, and differentiably in r, near r = 1).
    `c` may be an array (e.g. K x K); `r` and `t0` are scalars or broadcast against c.
    """

    name: ClassVar[str] = "power_law"
    c: Float[Array, "..."]
    r: Float[Array, "..."]
    t0: Float[Array, "..."]

    def __init__(self, c: Any, r: Any, t0: Any = 1.0):
        self.c = as_float_array("c", c)
        self.r = as_float_array("r", r)
        self.t0 = as_float_array("t0", t0)
        for name in ("c", "r", "t0"):
            check_finite(name, getattr(self, name))
        for name in ("r", "t0"):
            v = getattr(self, name)
            if jnp.ndim(v) and tuple(jnp.shape(v)) != tuple(jnp.shape(self.c)):
                raise ValueError(
                    f"PowerLaw {name} must be a scalar or have the shape of c "
                    f"{tuple(jnp.shape(self.c))}, got shape {tuple(jnp.shape(v))}"
                )
        check_positive("PowerLaw t0", self.t0)

    def __call__(self, t):
        return self.c * (1 + t / self.t0) ** (-self.r)

    def integral(self, t):
        log1p = jnp.log1p(t / self.t0)
        s = 1 - self.r
        small = jnp.abs(s) < 1e-4
        s_safe = jnp.where(small, 1.0, s)
        # series of expm1(s L)/s around s = 0: L + s L^2/2 + s^2 L^3/6
        series = log1p * (1 + s * log1p / 2 + (s * log1p) ** 2 / 6)
        exact = jnp.expm1(s_safe * log1p) / s_safe
        return self.c * self.t0 * jnp.where(small, series, exact)

    @property
    def shape(self):
        return tuple(jnp.broadcast_shapes(*(jnp.shape(x) for x in (self.c, self.r, self.t0))))

    def check_nonnegative(self, name):
        _nonneg(f"{name} (power-law c)", self.c)

    def time_scaled(self, stretch, amplitude):
        # a c (1 + s tau / t0)^(-r) = a c (1 + tau / (t0 / s))^(-r)
        return eqx.tree_at(
            lambda f: (f.c, f.t0), self, (amplitude * self.c, self.t0 / stretch)
        )


@register_schedule
class PiecewiseLinear(AbstractSchedule):
    """Linear interpolation through knots (t_j, v_j); constant beyond the end knots.

    `times` has shape (M,) and is strictly increasing; `values` has shape (M, *shape).
    The integral is exact (trapezoids on each piece, rectangles outside the knots).
    """

    name: ClassVar[str] = "piecewise_linear"
    times: Float[Array, " M"]
    values: Float[Array, "M ..."]

    def __init__(self, times: Any, values: Any):
        self.times = as_float_array("times", times)
        self.values = as_float_array("values", values)
        check_finite("times", self.times)
        check_finite("values", self.values)
        if jnp.ndim(self.times) != 1 or jnp.shape(self.times)[0] < 1:
            raise ValueError(
                f"PiecewiseLinear times must be a non-empty 1-D array, got shape "
                f"{tuple(jnp.shape(self.times))}"
            )
        if jnp.ndim(self.values) < 1 or jnp.shape(self.values)[0] != jnp.shape(self.times)[0]:
            raise ValueError(
                f"PiecewiseLinear values must have leading length {jnp.shape(self.times)[0]} "
                f"(one per knot), got shape {tuple(jnp.shape(self.values))}"
            )
        check_increasing("PiecewiseLinear times", self.times)

    def _interp(self, t):
        ts, vs = self.times, self.values
        if ts.shape[0] == 1:
            return vs[0]
        j = jnp.clip(jnp.searchsorted(ts, t, side="right", method="compare_all") - 1, 0, ts.shape[0] - 2)
        w = jnp.clip((t - ts[j]) / (ts[j + 1] - ts[j]), 0.0, 1.0)
        return vs[j] + w * (vs[j + 1] - vs[j])

    def __call__(self, t):
        return self._interp(t)

    def _antiderivative(self, t):
        """G(t) = int_{times[0]}^t f, valid for all t (extrapolating constantly)."""
        ts, vs = self.times, self.values
        expand = (slice(None),) + (None,) * (vs.ndim - 1)
        if ts.shape[0] == 1:
            return vs[0] * (t - ts[0])
        pieces = 0.5 * (vs[1:] + vs[:-1]) * jnp.diff(ts)[expand]
        cum = jnp.concatenate([jnp.zeros_like(vs[:1]), jnp.cumsum(pieces, axis=0)])
        tc = jnp.clip(t, ts[0], ts[-1])
        j = jnp.clip(jnp.searchsorted(ts, tc, side="right", method="compare_all") - 1, 0, ts.shape[0] - 2)
        inside = cum[j] + 0.5 * (vs[j] + self._interp(tc)) * (tc - ts[j])
        before = vs[0] * jnp.minimum(t - ts[0], 0.0)
        after = vs[-1] * jnp.maximum(t - ts[-1], 0.0)
        return inside + before + after

    def integral(self, t):
        return self._antiderivative(t) - self._antiderivative(jnp.zeros_like(jnp.asarray(t)))

    @property
    def shape(self):
        return tuple(jnp.shape(self.values)[1:])

    def check_nonnegative(self, name):
        _nonneg(f"{name} (knot values)", self.values)

    def time_scaled(self, stretch, amplitude):
        return eqx.tree_at(
            lambda f: (f.times, f.values), self, (self.times / stretch, amplitude * self.values)
        )


@register_schedule
class Scaled(AbstractSchedule):
    """f(t) = factor * g(t): a fixed schedule g scaled by a factor.

    `factor` is a number or an array that broadcasts against g's values: a scalar
    scales a fixed K x K impact E_0(t) as a whole (a E_0(t)); a K x K factor times a
    scalar g(t) gives a free matrix with a fixed growth in time (E_0 g(t)). A fit frees
    only `factor` (`lesde.fit.free_parameters`); g, a number, an array or any schedule
    with parameters (`Constant`, `PowerLaw`, `PiecewiseLinear`, or another `Scaled`),
    stays as it is. The integral is factor * G(t), with G that of g; a change of time
    unit rescales g and leaves the factor alone, so a factor near 1 is a number of
    order one in every time unit.
    """

    name: ClassVar[str] = "scaled"
    schedule: AbstractSchedule
    factor: Float[Array, "..."]

    def __init__(self, schedule: Any, factor: Any = 1.0):
        self.schedule = as_schedule("Scaled schedule", schedule)
        if isinstance(self.schedule, Function):
            raise ValueError(
                "Scaled needs a schedule with parameters (Constant, PowerLaw, "
                "PiecewiseLinear, Scaled), not a Function: a change of time unit rescales it"
            )
        self.factor = as_float_array("factor", factor)
        check_finite("factor", self.factor)
        try:
            jnp.broadcast_shapes(tuple(jnp.shape(self.factor)), tuple(self.schedule.shape))
        except ValueError:
            raise ValueError(
                f"Scaled factor of shape {tuple(jnp.shape(self.factor))} does not broadcast "
                f"against the schedule's shape {tuple(self.schedule.shape)}"
            ) from None

    def __call__(self, t):
        return self.factor * self.schedule(t)

    def integral(self, t):
        return self.factor * self.schedule.integral(t)

    @property
    def shape(self):
        return tuple(jnp.broadcast_shapes(tuple(jnp.shape(self.factor)), tuple(self.schedule.shape)))

    def check_nonnegative(self, name):
        _nonneg(f"{name} (scaled factor)", self.factor)
        self.schedule.check_nonnegative(f"{name} (scaled schedule)")

    def time_scaled(self, stretch, amplitude):
        return eqx.tree_at(
            lambda f: f.schedule, self, self.schedule.time_scaled(stretch, amplitude)
        )


class Function(AbstractSchedule):
    """Any user callable t -> array. Its integral is available only if given.

    The callable must be JAX-traceable (written with jax.numpy) to be used in a solve.
    Non-negativity of a noise level given this way is checked on the solver's time grid
    when a simulation starts.
    """

    fn: Callable
    antiderivative: Callable | None = None
    out_shape: tuple[int, ...] = eqx.field(static=True, default=())

    def __init__(self, fn: Callable, integral: Callable | None = None, shape: tuple = ()):
        if not callable(fn):
            raise ValueError(f"Function schedule needs a callable, got {show(fn)}")
        if integral is not None and not callable(integral):
            raise ValueError(f"Function schedule integral must be callable, got {show(integral)}")
        self.fn = fn
        self.antiderivative = integral
        self.out_shape = tuple(shape)

    def __call__(self, t):
        return jnp.asarray(self.fn(t), dtype=jnp.result_type(float))

    def integral(self, t):
        if self.antiderivative is None:
            raise ValueError(
                "this Function schedule has no closed-form integral: pass "
                "Function(fn, integral=F) with F(t) = int_0^t fn"
            )
        return jnp.asarray(self.antiderivative(t), dtype=jnp.result_type(float))

    @property
    def shape(self):
        return self.out_shape

    def check_nonnegative(self, name):
        pass  # decided on the time grid when a simulation starts

    def time_scaled(self, stretch, amplitude):
        raise ValueError(
            "a Function schedule (a user callable) has no parameters to rescale or fit; "
            "use Constant, PowerLaw or PiecewiseLinear"
        )


def as_schedule(name: str, x: Any, shape: tuple[int, ...] | None = None) -> AbstractSchedule:
    """Turn a number, array, callable or schedule into a schedule; check its shape.

    Numbers and arrays become `Constant`, plain callables become `Function`.
    """
    if isinstance(x, AbstractSchedule):
        sched = x
    elif callable(x):
        sched = Function(x, shape=shape or ())
    else:
        sched = Constant(x, name=name)
    if shape is not None and tuple(sched.shape) != tuple(shape):
        raise ValueError(
            f"{name} must be a schedule of shape {tuple(shape)}, got shape {tuple(sched.shape)}"
        )
    return sched
