"""Gradient-based fitting through the solver: optax on the free parameters, the whole
optimisation step (solve, reverse-mode gradient, update) under one `jit`."""

import functools
import math
import equinox as eqx
import numpy as np
import optax
from jaxtyping import Array, Float

from .._checks import check_positive_int, show
from ._losses import AbstractLoss
from ._params import Parameters, free_parameters, from_optimizer, rescale_time

SCHEDULES = ("constant", "cosine")
METHODS = ("adam", "lbfgs")


class FitResult(eqx.Module):
    """The outcome of `lesde.fit.fit`.

    - `params`: the best parameters found (lowest loss), in the data's time unit.
    - `free`: the filter spec of the free parameters.
    - `history`: the loss at each optimisation step (before that step's update).
    - `best_step`: the step whose parameters are returned; `best_loss` their loss.
    - `stopped`: 'max_steps', 'converged' (no relative improvement > `rtol` for
      `patience` steps), 'nonfinite' (the loss became NaN/inf; the best finite
      parameters are returned) or 'interrupted' (KeyboardInterrupt; likewise).
    - `time_scale`: the unit the optimiser worked in (see `fit`).
    """

    params: Parameters
    free: Parameters
    history: Float[Array, " steps"]
    best_loss: float = eqx.field(static=True)
    best_step: int = eqx.field(static=True)
    stopped: str = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)


def _optimizer(method, optimizer, learning_rate, steps, schedule):
    if optimizer is not None:
        if not isinstance(optimizer, optax.GradientTransformation):
            raise ValueError(f"optimizer must be an optax GradientTransformation, got {show(optimizer)}")
        return optimizer
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    if method == "lbfgs":  # no learning rate or schedule: one cached object
        return _builtin_optimizer(method, None, None, None)
    if isinstance(learning_rate, bool) or not (
        isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0
    ):
        raise ValueError(f"learning_rate must be a finite number > 0, got {show(learning_rate)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
    return _builtin_optimizer(method, float(learning_rate), steps, schedule)


@functools.lru_cache(maxsize=32)
def _builtin_optimizer(method, learning_rate, steps, schedule):
    """The built-in optimisers, cached: the jitted step takes the optimiser as a static
    argument, so the same settings must give the same object (no recompilation per
    `fit` call, e.g. in a bootstrap)."""
    if method == "lbfgs":
        return optax.lbfgs()
    if schedule == "cosine":
        return optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))
    return optax.adam(learning_rate)


def _objective(loss, static, scale):
    """The loss as a function of the optimiser's free parameters (time unit t/scale)."""
    return lambda d: loss.value(from_optimizer(d, static, scale))


@eqx.filter_jit
def _step(diff, opt_state, static, loss, optimizer, scale):
    """One optimisation step: the loss at `diff` (the free parameters in the scaled
    time unit), its reverse-mode gradient through the solve, the optax update."""

    objective = _objective(loss, static, scale)
    value, grads = eqx.filter_value_and_grad(objective)(diff)
    updates, opt_state = optimizer.update(grads, opt_state, diff)
    return eqx.apply_updates(diff, updates), opt_state, value


@eqx.filter_jit
def _step_linesearch(diff, opt_state, static, loss, optimizer, scale):
    """One L-BFGS step with optax's zoom line search (which evaluates the loss again
    along the search direction; the value and gradient at the accepted point are kept
    in the state and reused)."""

    objective = _objective(loss, static, scale)
    value, grads = optax.value_and_grad_from_state(objective)(diff, state=opt_state)
    updates, opt_state = optimizer.update(
        grads, opt_state, diff, value=value, grad=grads, value_fn=objective
    )
    return eqx.apply_updates(diff, updates), opt_state, value


def fit(
    params: Parameters,
    loss: AbstractLoss,
    *,
    free: Parameters | None = None,
    steps: int = 1000,
    method: str = "adam",
    learning_rate: float = 0.05,
    schedule: str = "cosine",
    optimizer: optax.GradientTransformation | None = None,
    patience: int | None = 200,
    rtol: float = 1e-5,
    time_scale: float | None = None,
    progress: bool = True,
) -> FitResult:
    r"""Fit the free parameters of `params` to the data of `loss` by gradient descent
    through the solver.

    The optimiser works on the parameters of the model in the time unit
    tau = t / `time_scale` (default: the last data time), where rates are s E(s tau)
    and noise levels sqrt(s) sigma(s tau) (`rescale_time`): over a log of 10^4 SGD
    steps the per-step impacts are ~1e-3, in tau they are of order one, so one
    learning rate suits all parameters. The loss itself is evaluated in the data's
    units, with each noise amplitude taken as its absolute value (`nonnegative_noise`),
    so the optimiser may cross zero without leaving the model's domain. Each step is
    one jitted call: the solve, its reverse-mode gradient
    (diffrax's `RecursiveCheckpointAdjoint`) and the optax update.

    **Arguments:**
    - `params`: the starting `Parameters`; `free`: the filter spec of the free
      parameters (default `free_parameters(params)`: impacts and noise).
    - `loss`: a `ClassMeanLoss`, `MomentLoss` or `TransitionLoss`.
    - `steps`: maximum number of optimisation steps.
    - `method`: 'adam' (with `learning_rate` and `schedule`: 'cosine' decay to 1% or
      'constant') or 'lbfgs' (optax's L-BFGS with a zoom line search; no learning
      rate; converges far faster on the smooth, deterministic losses of fixed-key
      fits, at a few loss evaluations per step); or any optax `optimizer` with Adam's
      update signature.
    - `patience`, `rtol`: stop early when the best loss has not improved by a relative
      `rtol` for `patience` steps (None: never).
    - `progress`: a tqdm bar showing the loss.

    **Returns:** a `FitResult`. Ctrl-C stops the loop and returns the best parameters
    so far (`stopped='interrupted'`); before the first step has ended there are none,
    and the KeyboardInterrupt propagates. A loss that is not finite at the starting
    parameters raises a ValueError; one that becomes non-finite later stops the loop
    (`stopped='nonfinite'`) with the best finite parameters.
    """
    if not isinstance(params, Parameters):
        raise ValueError(f"params must be lesde.fit.Parameters, got {type(params).__name__}")
    if not isinstance(loss, AbstractLoss):
        raise ValueError(f"loss must be a lesde.fit loss, got {type(loss).__name__}")
    loss.check(params)
    steps = check_positive_int("steps", steps)
    if patience is not None:
        patience = check_positive_int("patience", patience)
    if not (isinstance(rtol, (int, float)) and rtol >= 0):
        raise ValueError(f"rtol must be a number >= 0, got {show(rtol)}")
    if time_scale is None:
        time_scale = float(max(abs(loss.times[-1]), 1e-12))
    if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale must be a finite number > 0, got {show(time_scale)}")
    time_scale = float(time_scale)
    if free is None:
        free = free_parameters(params)
    step_fn = _step_linesearch if (optimizer is None and method == "lbfgs") else _step
    optimizer = _optimizer(method, optimizer, learning_rate, steps, schedule)

    scaled = rescale_time(params, time_scale)
    diff, static = eqx.partition(scaled, free)
    opt_state = optimizer.init(diff)
    history: list[float] = []
    best, best_loss, best_step, since = diff, math.inf, 0, 0
    stopped = "max_steps"
    bar = None
    if progress:
        from .._progress import progress_bar

        bar = progress_bar(total=steps, desc="fit", unit="step")
    try:
        for i in range(steps):
            new, opt_state, value = step_fn(diff, opt_state, static, loss, optimizer, time_scale)
            value = float(value)
            history.append(value)
            if not math.isfinite(value):
                stopped = "nonfinite"
                break
            if value < best_loss - rtol * abs(best_loss) or not math.isfinite(best_loss):
                since = 0
            else:
                since += 1
            if value < best_loss:
                best, best_loss, best_step = diff, value, i
            diff = new
            if bar is not None:
                bar.update(1)
                if i % 10 == 0:
                    bar.set_postfix(loss=f"{value:.4g}", best=f"{best_loss:.4g}")
            if patience is not None and since >= patience:
                stopped = "converged"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        if bar is not None:
            bar.close()
    if not math.isfinite(best_loss):
        if stopped == "interrupted":  # before the first step ended: nothing to return
            raise KeyboardInterrupt
        raise ValueError(
            "the loss is not finite at the starting parameters (the solve diverged or the "
            f"likelihood is singular): loss = {history[0] if history else 'n/a'}"
        )
    fitted = from_optimizer(best, static, time_scale)
    return FitResult(
        params=fitted,
        free=free,
        history=np.asarray(history),
        best_loss=best_loss,
        best_step=best_step,
        stopped=stopped,
        time_scale=time_scale,
    )


@eqx.filter_jit
def _value(params, loss):
    return loss.value(params)


def loss_value(params: Parameters, loss: AbstractLoss) -> float:
    """The loss of `params` (checked first), as a float. Compiled once per structure of
    the parameters and the loss, not per call."""
    loss.check(params)
    return float(_value(params, loss))
