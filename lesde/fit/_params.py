"""The parameters of a fit: an LE-ODE or LE-SDE model (impact schedules, noise levels,
initial-state law) and optionally an explicit initial state; which of them are free;
the change of time unit the optimiser works in; and builders of the usual
parameterisations of E(t).
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Float

from .._checks import as_float_array, check_finite, check_shape, show
from ..models._impact import General, LocallyElastic
from ..models._le_sde import LEODE, LESDE
from ..models._paths import entry_paths, key_path
from ..models._schedule import (
    AbstractSchedule,
    Constant,
    Function,
    PiecewiseLinear,
    PowerLaw,
    Scaled,
)

TIME_FORMS = ("constant", "power_law", "piecewise_linear")


class Parameters(eqx.Module):
    """A model to fit and, optionally, an explicit initial state.

    - `model`: an `LEODE` (class means; deterministic) or an `LESDE` (samples; with
      noise, simulated with fixed keys).
    - `y0`: the initial state (`model.state_shape`), or None: then an `LEODE` starts at
      the data's first class means and an `LESDE` draws X_i(0) ~ N(m0, s0^2 I) from its
      `init_mean`, `init_std` (which can be fitted).
    """

    model: LEODE | LESDE
    y0: Float[Array, "..."] | None = None

    def __check_init__(self):
        if not isinstance(self.model, (LEODE, LESDE)):
            raise ValueError(f"Parameters.model must be an LEODE or an LESDE, got {show(self.model)}")
        if self.y0 is not None and not isinstance(self.y0, jax.core.Tracer):
            check_shape("Parameters.y0", self.y0, self.model.state_shape)
            check_finite("Parameters.y0", self.y0)


def _schedules(model) -> list[tuple[str, Callable, str]]:
    """(name, getter, kind) of every schedule of the model: `getter(model)` is the
    schedule, kind is 'rate' (impacts) or 'noise'."""
    imp = model.impact
    if isinstance(imp, LocallyElastic):
        out = [("impact.alpha", lambda m: m.impact.alpha, "rate"),
               ("impact.beta", lambda m: m.impact.beta, "rate")]
    elif isinstance(imp, General):
        out = [("impact.E", lambda m: m.impact.schedule, "rate")]
    else:  # pragma: no cover - LEODE/LESDE check their impact
        raise ValueError(f"cannot fit an impact of type {type(imp).__name__}")
    if isinstance(model, LESDE):
        for name in model.noise.terms:
            out.append((f"noise.{name}", lambda m, name=name: m.noise.terms[name].sigma, "noise"))
    return out


def rescale_time(params: Parameters, scale) -> Parameters:
    r"""The same dynamics in the time unit tau = t / `scale`.

    Rates become s E(s tau) and noise levels sqrt(s) sigma(s tau) (s = `scale`), so the
    solution at tau equals the original solution at t = s tau. `rescale_time(p, 1/s)`
    undoes `rescale_time(p, s)`. Needs schedules with parameters (Constant, PowerLaw,
    PiecewiseLinear).
    """
    model = params.model
    for name, get, kind in _schedules(model):
        sched = get(model)
        if isinstance(sched, Function):
            raise ValueError(
                f"{name} is a Function schedule (a user callable): it has no parameters to "
                "fit; use Constant, PowerLaw or PiecewiseLinear"
            )
        amp = scale if kind == "rate" else jnp.sqrt(scale)
        model = eqx.tree_at(get, model, sched.time_scaled(scale, amp))
    return eqx.tree_at(lambda p: p.model, params, model)


_AMPLITUDE = {
    Constant: ("value",), PowerLaw: ("c",), PiecewiseLinear: ("values",), Scaled: ("factor",),
}


def nonnegative_noise(params: Parameters) -> Parameters:
    """The parameters with each noise schedule's amplitude (Constant value, PowerLaw c,
    PiecewiseLinear knot values) replaced by its absolute value.

    The optimiser works on unconstrained numbers; the fits evaluate their losses on
    this reflection, so a noise level that crosses zero during the optimisation stays a
    valid (non-negative) noise level and the returned model is one `Noise` accepts.
    """
    model = params.model
    for name, get, kind in _schedules(model):
        sched = get(model)
        if kind != "noise" or type(sched) not in _AMPLITUDE:
            continue
        for f in _AMPLITUDE[type(sched)]:
            model = eqx.tree_at(
                lambda m, get=get, f=f: getattr(get(m), f), model, replace_fn=jnp.abs
            )
    return eqx.tree_at(lambda p: p.model, params, model)


def from_optimizer(diff: Parameters, static: Parameters, scale) -> Parameters:
    """The `Parameters` (data time unit, non-negative noise) that the optimiser's free
    part `diff` (time unit t / `scale`) and the fixed part `static` stand for."""
    return nonnegative_noise(rescale_time(eqx.combine(diff, static), 1.0 / scale))


def _free_schedule_fields(sched: AbstractSchedule) -> tuple[str, ...]:
    if isinstance(sched, Constant):
        return ("value",)
    if isinstance(sched, PowerLaw):
        return ("c", "r")  # t0 (the time scale of the decay) stays fixed
    if isinstance(sched, PiecewiseLinear):
        return ("values",)  # the knots stay where they are
    if isinstance(sched, Scaled):
        return ("factor",)  # the scaled schedule (e.g. a measured impact) stays fixed
    raise ValueError(f"cannot fit a {type(sched).__name__} schedule")


def free_parameters(
    params: Parameters,
    *,
    impact: bool = True,
    noise: bool = True,
    initial: bool = False,
    power_law_exponent: bool = True,
) -> Parameters:
    """The filter spec (a pytree of bools like `params`) of the free parameters.

    - `impact`: the impact schedules' values (Constant value, PowerLaw c and r,
      PiecewiseLinear knot values, Scaled factor; PowerLaw t0, the knot times and the
      schedule that a Scaled scales stay fixed);
      `power_law_exponent=False` also holds r fixed.
    - `noise`: the noise levels (LE-SDE only).
    - `initial`: `y0` if given, else the LE-SDE's `init_mean` and `init_std`.

    Everything else (labels, gradient model and head) is fixed. Combine with
    `equinox.tree_at` for finer choices.
    """
    model = params.model
    getters = []
    for name, get, kind in _schedules(model):
        sched = get(model)
        if (kind == "rate" and impact) or (kind == "noise" and noise):
            fields = _free_schedule_fields(sched)
            if isinstance(sched, PowerLaw) and not power_law_exponent:
                fields = fields[:1]
            getters += [
                lambda p, get=get, f=f: getattr(get(p.model), f) for f in fields
            ]
    if initial:
        if params.y0 is not None:
            getters.append(lambda p: p.y0)
        elif isinstance(model, LESDE):
            getters += [lambda p: p.model.init_mean, lambda p: p.model.init_std]
        else:
            raise ValueError(
                "initial=True needs an explicit Parameters.y0 for an LEODE (its initial "
                "class means); pass y0=the data's first class means to fit them"
            )
    if not getters:
        raise ValueError("no free parameters: set impact, noise or initial to True")
    spec = jtu.tree_map(lambda _: False, params)
    for get in getters:
        spec = eqx.tree_at(get, spec, replace_fn=lambda leaf: jtu.tree_map(lambda _: True, leaf))
    return spec


def impact_schedule(
    form: str,
    init: Any,
    *,
    knots: Any = None,
    exponent: float = 0.5,
    t0: float = 1.0,
) -> AbstractSchedule:
    r"""An impact schedule to start a fit from, with initial value `init` (a number for
    alpha or beta, a K x K matrix for a general E).

    - 'constant': E(t) = E.
    - 'power_law': E(t) = c (1 + t/t0)^(-r), c = `init`, r = `exponent` (one exponent
      for all entries), t0 fixed.
    - 'piecewise_linear': linear through `knots` (times, strictly increasing), all knot values
      starting at `init`.
    """
    init = as_float_array("init", init)
    check_finite("init", init)
    if form == "constant":
        return Constant(init)
    if form == "power_law":
        return PowerLaw(init, exponent, t0)
    if form == "piecewise_linear":
        if knots is None:
            raise ValueError("form 'piecewise_linear' needs knots (the knot times)")
        k = as_float_array("knots", knots)
        if k.ndim != 1 or k.shape[0] < 2:
            raise ValueError(f"knots must be a 1-D array of at least 2 times, got {show(knots)}")
        return PiecewiseLinear(k, jnp.broadcast_to(init, (k.shape[0],) + init.shape))
    raise ValueError(f"unknown time form {form!r}; choose one of {list(TIME_FORMS)}")


def check_knots(knots: Any, ts: np.ndarray) -> list[float]:
    """Refuse knots the data cannot determine, for a piecewise-linear schedule (linear
    between knots, constant beyond the end knots) fitted to data at times `ts` (the
    times of the fit window). Raises a ValueError naming the knot and the data times:

    - fewer data times than knots + 1;
    - an interval between consecutive knots that holds no data time;
    - a knot beyond the data (before the first data time or after the last): only the
      outermost knot on each side may lie there, and only if the piece joining it to
      its inner neighbour holds at least 2 data times strictly inside it. Its value is
      then fixed by that piece's line, which the data determine, and is an
      extrapolation of it; any other knot beyond the data has no data on one of its
      sides (or none at all) to fix it.

    Returns the accepted knots beyond the data (extrapolated), for a report to flag.
    """
    k = np.asarray(knots, dtype=float)
    ts = np.asarray(ts, dtype=float)
    if ts.shape[0] < k.shape[0] + 1:
        raise ValueError(
            f"too few time points for the requested knots: {k.shape[0]} knots need at "
            f"least {k.shape[0] + 1} data times, the data have {ts.shape[0]}"
        )
    span = f"data times {ts[0]:g} .. {ts[-1]:g}"
    extrapolated = []
    for side, beyond in (("after the last", k > ts[-1]), ("before the first", k < ts[0])):
        n = int(beyond.sum())
        if n == 0:
            continue
        outer = k.shape[0] - 1 if side.startswith("after") else 0
        if n > 1:
            which = ", ".join(f"{t:g}" for t in k[beyond])
            raise ValueError(
                f"knots {which} lie {side} data time ({span}): at most one knot (the "
                "outermost) may lie beyond the data, else a knot's value has no data on "
                "either side to fix it"
            )
        inner = outer - 1 if outer else 1
        a, b = sorted((k[inner], k[outer]))
        inside = int(((ts > a) & (ts < b)).sum())
        if inside < 2:
            raise ValueError(
                f"knot {k[outer]:g} lies {side} data time ({span}) and the piece from "
                f"knot {k[inner]:g} to it holds {inside} data time(s) inside; at least 2 "
                "are needed to fix the line that extrapolates to it"
            )
        extrapolated.append(float(k[outer]))
    edges = np.concatenate([[-np.inf], k, [np.inf]])
    for a, b in zip(edges[:-1], edges[1:]):
        if not ((ts >= a) & (ts <= b)).any() and np.isfinite(a) and np.isfinite(b):
            raise ValueError(
                f"too few time points for the requested knots: no data time between "
                f"knots {a} and {b} (data times {show(ts)})"
            )
    return sorted(extrapolated)


def parameter_names(params: Parameters, spec: Parameters) -> list[str]:
    """Names of the free scalars, in the order of `jax.flatten_util.ravel_pytree` of
    the free part: a number of the model by its path in the model, as sweeps and
    `lesde.models.get_at` name it (e.g. 'impact.schedule.value[0,1]'), an entry of the
    explicit initial state as 'y0[i,j]'."""
    free, _ = eqx.partition(params, spec)
    names = []
    for keys, leaf in jtu.tree_flatten_with_path(free)[0]:
        in_model = keys[0] == jtu.GetAttrKey("model")
        base = key_path(keys[1:] if in_model else keys)
        names += entry_paths(base, np.shape(leaf))
    return names
