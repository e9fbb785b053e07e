"""Configurations of `lesde fit` (YAML), validated by a pydantic schema before any
computation, and `build_fit`, which turns a configuration and a trajectory log into the
objects of `lesde.fit` (the starting parameters, the loss, the free parameters).

Every key has a default, so an empty file is a valid configuration: an LE-ODE with the
identity gradient model and a locally elastic impact, piecewise linear in time, fitted
to the class-mean logits of 50-step windows of the first 75% of the log's steps. Unknown
keys, wrong types (no coercion: a boolean or a string is not a number, a float is not an
int), non-finite numbers, keys given twice, seeds outside [0, 2**32 - 1], counts below
their minimum or above 2**31 - 1, impossible values and combinations that do not go
together are refused with the offending key named.
"""

import math
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import BeforeValidator, Field, field_validator, model_validator

from .._checks import check_increasing
from ._config import _NoiseLevels, _Strict, check_memory, Count, GradientName, INT32_MAX, Seed

Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
PositiveInt = Count(1)


def _knots(v: Any) -> Any:
    """A number of knots (an int in [2, 2**31 - 1]) or a list of >= 2 knot times (finite,
    >= 0, strictly increasing)."""
    if isinstance(v, int) and not isinstance(v, bool):
        if not 2 <= v <= INT32_MAX:
            raise ValueError(f"a number of knots must be in [2, 2**31 - 1], got {v}")
        return v
    if isinstance(v, list):
        if len(v) < 2:
            raise ValueError(f"a list of knot times needs at least 2 times, got {v}")
        for t in v:
            if isinstance(t, bool) or not isinstance(t, (int, float)):
                raise ValueError(f"knot times must be numbers, got {t!r}")
        knots = np.asarray(v, dtype=np.float64)
        check_increasing("knot times", knots, nonnegative=True, entry="knots")
        return knots.tolist()
    raise ValueError(f"must be a number of knots (>= 2) or a list of knot times, got {v!r}")


class FitDataSpec(_Strict):
    """What is fitted: class-mean windows of `window` steps; the fit window is the first
    `fit_until` fraction of the log's steps (the windows lying wholly within it), later
    windows are held out; `trials`: use only the first n trials (null: all)."""

    window: PositiveInt = 50
    fit_until: Annotated[float, Field(gt=0.0, le=1.0)] = 0.75
    trials: PositiveInt | None = None


class FitImpactSpec(_Strict):
    """The impact to fit and its starting values.

    - `form`: 'alpha_beta' (`lesde.LocallyElastic(alpha, beta)`) or 'general' (a K x K
      `lesde.General` matrix starting at (alpha - beta) I + beta 1 1^T).
    - `time`: 'constant', 'power_law' (c (1 + t/t0)^(-r), r starting at `exponent`, t0
      fixed) or 'piecewise_linear' (linear between knots; the knot values are fitted).
    - `knots` (piecewise only): a number n >= 2 of knot times evenly spaced in
      log(1 + t) from the first data time to the end of the fit window, or an explicit
      strictly increasing list of times (in SGD steps).
    - `time` 'kernel': the tangent-kernel impact that `lesde train` measured during
      training (the log's `impact`, averaged over trials, linear between its
      `impact_step`s; `lesde.fit.kernel_impact_schedule`), scaled by a fitted factor
      starting at `factor`: E(t) = a E_NTK(t) ('general', one factor) or alpha(t) =
      a alpha_NTK(t), beta(t) = b beta_NTK(t) ('alpha_beta', the kernel's mean diagonal
      and off-diagonal, two factors). Only the factors are fitted.
    - `time` 'kernel_growth': a free impact with the kernel's growth,
      E(t) = E_0 g(t), g(t) = tr E_NTK(t) / tr E_NTK(t_0) (t_0 the first measurement);
      E_0 (or alpha_0, beta_0) is fitted, starting at `alpha`, `beta`. The change of
      time unit of the optimiser leaves a factor as it is (an impact per SGD step
      here), so fit E_0 with 'lbfgs' or an Adam learning rate of its size.
    - `t0` is also the time scale of the closed-form power-law fit of alpha_hat.

    A `knots`, `exponent` or `factor` other than the default with a time form that does
    not use it is refused, and so are `alpha`, `beta` other than the defaults with time
    'kernel' (it starts at `factor` times the kernel).
    """

    form: Literal["alpha_beta", "general"] = "alpha_beta"
    time: Literal["constant", "power_law", "piecewise_linear", "kernel", "kernel_growth"] = "piecewise_linear"
    knots: Annotated[int | list[float], BeforeValidator(_knots)] = 6
    alpha: Finite = 1e-3
    beta: Finite = 0.0
    exponent: Finite = 0.5
    t0: Positive = 1.0
    factor: Finite = 1.0

    @model_validator(mode="after")
    def _applies(self):
        # a value other than the default that would be ignored is refused (a dumped
        # configuration, which holds every default, still validates)
        if self.knots != 6 and self.time != "piecewise_linear":
            raise ValueError(
                f"model.impact.knots applies to time 'piecewise_linear' only, not {self.time!r}"
            )
        if self.exponent != 0.5 and self.time != "power_law":
            raise ValueError(
                f"model.impact.exponent applies to time 'power_law' only, not {self.time!r}"
            )
        if self.factor != 1.0 and self.time != "kernel":
            raise ValueError(
                f"model.impact.factor applies to time 'kernel' only, not {self.time!r}"
            )
        if self.time == "kernel" and (self.alpha != 1e-3 or self.beta != 0.0):
            raise ValueError(
                "model.impact.alpha and beta do not apply to time 'kernel': it starts at "
                "model.impact.factor times the log's tangent-kernel impact"
            )
        return self


class FitNoiseSpec(_NoiseLevels):
    """Starting noise levels of an LE-SDE (constant in time): `independent` (one
    Brownian motion per sample), `shared` (one per class) or a registered kind; null:
    none."""

    __pydantic_extra__: dict[str, NonNegative | None]
    independent: NonNegative | None = None
    shared: NonNegative | None = None


class FitModelSpec(_Strict):
    """The model: an LE-ODE of the class means ('le_ode') or an LE-SDE of
    `samples_per_class` samples per class ('le_sde'; its class means averaged over the
    loss's ensemble; with the transition loss the samples are the log's training
    samples); `gradient` the loss-gradient model ('ce' needs 'le_sde');
    `fit_noise`: fit the noise levels; `fit_initial`: fit the initial state (LE-ODE: the
    first class means; LE-SDE: init_mean and init_std), else it is held at the data's
    values. A `samples_per_class` other than the default, or noise, with 'le_ode' is
    refused."""

    kind: Literal["le_ode", "le_sde"] = "le_ode"
    gradient: GradientName = "identity"
    impact: FitImpactSpec = FitImpactSpec()
    noise: FitNoiseSpec = FitNoiseSpec()
    samples_per_class: PositiveInt = 10
    fit_noise: bool = True
    fit_initial: bool = False

    @model_validator(mode="after")
    def _kind(self):
        if self.kind == "le_ode":
            if self.gradient == "ce":
                raise ValueError(
                    "model.gradient 'ce' needs model.kind 'le_sde': the class mean of the "
                    "softmax-CE gradient is not the gradient of the class mean"
                )
            noisy = list(self.noise.levels())
            if noisy:
                raise ValueError(
                    f"model.noise.{noisy[0]} applies to model.kind 'le_sde' only (the "
                    "LE-ODE has no noise)"
                )
            if self.samples_per_class != 10:
                raise ValueError("model.samples_per_class applies to model.kind 'le_sde' only")
        return self


class FitLossSpec(_Strict):
    """The objective: 'class_mean' (least squares on the class means, through the
    solver), 'moments' (class means and covariances of an LE-SDE ensemble) or
    'transition' (Euler-Maruyama likelihood of the log's `features` snapshots; needs an
    LE-SDE with independent noise). `num_steps`: fixed solver steps over the data;
    `ensemble`, `seed`: the fixed LE-SDE paths."""

    kind: Literal["class_mean", "moments", "transition"] = "class_mean"
    num_steps: PositiveInt = 200
    ensemble: PositiveInt = 8
    seed: Seed = 0


class FitOptimizerSpec(_Strict):
    """The optimiser through the solver: `method` 'adam' (with `learning_rate`, in the
    optimiser's time unit, see `lesde.fit.fit`, and 'cosine' decay or a 'constant'
    rate) or 'lbfgs' (L-BFGS with a line search; no learning rate); at most `steps`
    steps; stop when the loss has not improved by a relative `rtol` for `patience`
    steps (null: never)."""

    method: Literal["adam", "lbfgs"] = "adam"
    steps: PositiveInt = 1000
    learning_rate: Positive = 0.05
    schedule: Literal["cosine", "constant"] = "cosine"
    patience: PositiveInt | None = 200
    rtol: NonNegative = 1e-5


class FitUncertaintySpec(_Strict):
    """Standard errors from the 'curvature' of the loss at the fit, or a 'bootstrap'
    over trials: `samples` refits of `steps` steps on trials drawn with replacement."""

    method: Literal["curvature", "bootstrap"] = "curvature"
    samples: Count(2) = 20
    steps: PositiveInt = 300


class FitClosedFormSpec(_Strict):
    """The closed-form estimates on the class-mean logits of the data windows:
    `estimator` ('identity', 'projected' inversion, or 'none'), the Savitzky-Golay
    window of the rates (odd, >= 3), and the fraction `tail_last` of the points in the
    tail index."""

    estimator: Literal["identity", "projected", "none"] = "identity"
    savgol_window: Count(3) = 11
    tail_last: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2

    @field_validator("savgol_window")
    @classmethod
    def _odd(cls, v):
        if v % 2 == 0:
            raise ValueError(f"must be odd, got {v}")
        return v


class FitConfig(_Strict):
    """`lesde fit`: fit an LE-ODE / LE-SDE to a trajectory log (see the sections)."""

    data: FitDataSpec = FitDataSpec()
    model: FitModelSpec = FitModelSpec()
    loss: FitLossSpec = FitLossSpec()
    optimizer: FitOptimizerSpec = FitOptimizerSpec()
    uncertainty: FitUncertaintySpec = FitUncertaintySpec()
    closed_form: FitClosedFormSpec = FitClosedFormSpec()

    @model_validator(mode="after")
    def _loss_needs(self):
        kind = self.loss.kind
        if kind in ("moments", "transition") and self.model.kind != "le_sde":
            raise ValueError(
                f"loss.kind {kind!r} needs model.kind 'le_sde' (it compares samples, not "
                "class means)"
            )
        if kind == "transition" and not self.model.noise.independent:
            raise ValueError(
                "loss.kind 'transition' needs model.noise.independent > 0 (its starting "
                "level): without independent noise the transition density is singular"
            )
        if self.model.kind == "le_sde" and kind != "transition":
            check_memory("loss.ensemble", [
                ("the LE-SDE ensemble's states (K = p = 2, the fewest a log has)",
                 {"members": self.loss.ensemble, "samples per class": self.model.samples_per_class,
                  "classes": 2, "features": 2}, 8),
            ])
        return self


def load_fit_config(path) -> FitConfig:
    """Read (`lesde.io._config.read_yaml`: a key given twice is refused) and validate a
    `lesde fit` YAML configuration; ConfigError names the offending key and value. An
    empty file is the default configuration."""
    from pathlib import Path

    from ._config import parse_config, read_yaml

    path = Path(path)
    data = read_yaml(path)
    return parse_config({} if data is None else data, source=str(path), schema=FitConfig)


# ---------------------------------------------------------------------------------
# From a configuration and a log to the objects of lesde.fit


class FitSetup(NamedTuple):
    """What `build_fit` makes of a configuration and a log."""

    params: Any
    """The starting `lesde.fit.Parameters`."""
    loss: Any
    """The loss on the (selected trials of the) log."""
    free: Any
    """The filter spec of the free parameters."""
    make_loss: Any
    """trial positions -> the same loss on those trials (for the bootstrap)."""
    log: Any
    """The log restricted to `data.trials`."""
    fit_until: float
    """The last time (SGD step) of the fit window."""
    knots: list[float] | None
    """The knot times of a piecewise impact, else None."""
    heldout: bool = True
    """Whether there is a held-out window (False for `data.fit_until` = 1)."""
    knots_beyond_data: tuple[float, ...] = ()
    """Knots outside the fit window's data times whose values are extrapolations of
    the neighbouring piece (`lesde.fit.check_knots`)."""


def _named(key: str, fn, *args, **kwargs):
    """fn(*args, **kwargs), a ValueError prefixed with the configuration key."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from e


def _data_named(source: str, what: str, key: str, fn, *args, **kwargs):
    """fn(*args, **kwargs); a `FitDataError` or `LogError` (data that cannot be fitted)
    prefixed with the log and the quantity, any other ValueError with the key."""
    from ..fit import FitDataError
    from ..io import LogError

    try:
        return fn(*args, **kwargs)
    except (FitDataError, LogError) as e:
        raise type(e)(f"{source} ({what}): {e}") from e
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from e


class FitWindow(NamedTuple):
    """The fit window of `data.fit_until` on a log (`fit_window`)."""

    last_step: float
    """The last step of the fit window."""
    loss_until: float | None
    """The `fit_until` of the loss (None: every point, no held-out window)."""


def fit_window(log, fraction: float, window: int | None) -> FitWindow:
    """The fit window of the first `fraction` of a log's S steps.

    With windows of `window` steps (class-mean and moment losses) the fit window is the
    whole windows that lie within the first floor(fraction S) steps, so no window
    straddles the end of the fit; its last step is the last step of the last such
    window, and a window lies in it exactly when its mean step is at most that step.
    With `window` None (snapshots) it is the first floor(fraction S) steps.

    `fraction` = 1 fits every window and holds none out (`loss_until` None). Refused
    with a ValueError naming `data.fit_until`: a fraction that leaves fewer than 2
    windows (or steps) in the fit window, and a fraction < 1 that asks for a held-out
    window where no whole window lies after the fit window.
    """
    steps = np.asarray(log["step"].values)
    S = steps.shape[0]
    n = int(math.floor(fraction * S + 1e-9))
    w = 1 if window is None else int(window)
    whole, fitted = S // w, n // w
    unit = "step(s)" if window is None else f"whole window(s) of {w} steps"
    if fitted < 2:
        raise ValueError(
            f"data.fit_until: fit_until = {fraction:g} keeps the first {n} of the log's "
            f"{S} steps, {fitted} {unit}; the fit window needs at least 2"
        )
    last = float(steps[fitted * w - 1])
    if fraction >= 1.0:
        return FitWindow(last, None)
    if fitted >= whole:
        held = "step" if window is None else f"whole window of {w} steps"
        raise ValueError(
            f"data.fit_until: fit_until = {fraction:g} asks for a held-out window after "
            f"step {last:g}, but no {held} lies after it (the log has {S} steps); use 1.0 "
            "to fit without a held-out window, or a smaller fraction"
        )
    return FitWindow(last, last)


def fit_until_time(log, fraction: float, window: int | None = None) -> float:
    """The last step of the fit window of `data.fit_until` = `fraction` (`fit_window`)."""
    return fit_window(log, fraction, window).last_step


def knot_times(num: int, first: float, last: float) -> list[float]:
    """`num` times evenly spaced in log(1 + t) from `first` to `last`; the inner ones
    rounded to 6 significant digits, the ends exact (so they stay on the data)."""
    grid = np.expm1(np.linspace(np.log1p(first), np.log1p(last), num))
    return [float(first)] + [float(f"{t:.6g}") for t in grid[1:-1]] + [float(last)]


def build_fit(config: FitConfig, log, *, source: str = "the log") -> FitSetup:
    """Build the starting parameters, the loss, the free parameters and the bootstrap's
    loss factory of `config` on a trajectory log (`lesde.io.read_log`), checking that
    they fit together before any computation. `source` names the log in messages (e.g.
    its path).

    Refused with a ValueError whose message starts with the configuration key
    concerned: more trials or a longer window than the log has, K < 2, a
    `data.fit_until` that leaves no fit window or an empty held-out window
    (`fit_window`), knots the data cannot determine (`lesde.fit.check_knots`: a knot
    beyond the data is accepted only as an extrapolation of a piece with data, and
    listed in `knots_beyond_data`), a model that does not fit the data, and a
    curvature uncertainty with no more data values than free parameters. Data that
    cannot be fitted raise a `lesde.fit.FitDataError` (or `LogError`) whose message
    starts with `source` and the quantity: class means (moments, snapshots) that do not
    vary over the fit window, or whose squares overflow float32
    (`lesde.fit.check_varies` and the data containers state the rules).

    Automatic knots run from the first data time to the last data time of the fit
    window.

    Starting state: an LE-ODE starts at the data's first class means (held fixed unless
    `model.fit_initial`); an LE-SDE draws X_i(0) ~ N(m0, s0^2 I) with m0 the
    count-weighted mean of the first class means and s0 the within-class standard
    deviation of the logits in the first window, sqrt(mean_k tr(C_k) / p)
    (`lesde.fit.ClassMoments`, count-weighted over the classes).
    """
    import jax.numpy as jnp

    from .. import fit as F
    from ..models import (
        Classes,
        Constant,
        General,
        LEODE,
        LESDE,
        LocallyElastic,
        Noise,
        Scaled,
    )
    from ..io import check_log

    log = check_log(log)
    d, m, lo = config.data, config.model, config.loss
    if d.trials is not None:
        n = log.sizes["trial"]
        if d.trials > n:
            raise ValueError(f"data.trials: {d.trials} trials asked for, the log has {n}")
        log = log.isel(trial=slice(0, d.trials))
    S = log.sizes["step"]
    if d.window > S:
        raise ValueError(f"data.window: window = {d.window} is longer than the log's {S} steps")
    K = log.sizes["class"]
    if K < 2:
        raise ValueError(f"the log has K = {K} class; a fit needs at least 2")
    window = fit_window(log, d.fit_until, None if lo.kind == "transition" else d.window)
    fit_until, until = window

    def make_loss(trials=None):
        if lo.kind == "class_mean":
            what = f"class-mean logits of {d.window}-step windows"
            data = _data_named(source, what, "data", F.ClassMeans.from_log, log,
                               window=d.window, trials=trials)
            cls = F.ClassMeanLoss
        elif lo.kind == "moments":
            what = f"class moments of the logits in {d.window}-step windows"
            data = _data_named(source, what, "data", F.ClassMoments.from_log, log,
                               window=d.window, trials=trials)
            cls = F.MomentLoss
        else:
            what = "snapshot features"
            data = _data_named(source, what, "loss.kind", F.Snapshots.from_log, log, trials=trials)
            return _data_named(source, what, "data.fit_until", F.TransitionLoss, data,
                               fit_until=until, num_steps=lo.num_steps)
        return _data_named(source, what, "data.fit_until", cls, data, fit_until=until,
                           num_steps=lo.num_steps, ensemble=lo.ensemble, seed=lo.seed)

    loss = make_loss()
    times = np.asarray(loss.times)
    fit_times = times if until is None else times[times <= until]

    imp = m.impact
    knots, beyond = None, []
    if imp.time == "piecewise_linear":
        knots = (
            knot_times(imp.knots, float(fit_times[0]), float(fit_times[-1]))
            if isinstance(imp.knots, int) else [float(t) for t in imp.knots]
        )
        beyond = _named("model.impact.knots", F.check_knots, knots, fit_times)

    def kernel(*form):
        return _data_named(source, "the tangent-kernel impact", "model.impact.time",
                           F.kernel_impact_schedule, log, *form)

    growth = kernel("growth") if imp.time == "kernel_growth" else None

    def schedule(init):
        if growth is not None:  # a free E_0 (or alpha_0, beta_0) with the kernel's growth
            return Scaled(growth, init)
        return _named("model.impact", F.impact_schedule, imp.time, init, knots=knots,
                      exponent=imp.exponent, t0=imp.t0)

    if imp.time == "kernel" and imp.form == "alpha_beta":
        a, b = kernel("alpha_beta")
        impact = LocallyElastic(Scaled(a, imp.factor), Scaled(b, imp.factor))
    elif imp.time == "kernel":
        impact = General(Scaled(kernel(), imp.factor))
    elif imp.form == "alpha_beta":
        impact = LocallyElastic(schedule(imp.alpha), schedule(imp.beta))
    else:
        impact = General(schedule((imp.alpha - imp.beta) * np.eye(K) + imp.beta * np.ones((K, K))))

    if m.kind == "le_ode":
        model = _named("model", LEODE, impact, m.gradient, K)
        y0 = None
        if m.fit_initial:
            _named("model.fit_initial", loss.check, F.Parameters(model))  # first means exist
            y0 = jnp.asarray(loss.data.xbar[0])
        params = F.Parameters(model, y0)
    else:
        if lo.kind == "transition":
            classes = Classes(np.asarray(loss.data.labels), K)
        else:
            classes = Classes.balanced(K, m.samples_per_class)
        noise = Noise(**{name: Constant(level) for name, level in m.noise.levels().items()})
        first = log.isel(step=slice(0, 2 * d.window))  # ClassMoments needs 2 windows
        mom = _named("data.window", F.ClassMoments.from_log, first, window=d.window)
        w = np.asarray(mom.weight)[0]
        init_mean = (w[:, None] * np.asarray(mom.mean)[0]).sum(0) / w.sum()
        var = np.trace(np.asarray(mom.cov)[0], axis1=1, axis2=2) / K
        init_std = float(np.sqrt(max((w * var).sum() / w.sum(), 0.0)))
        model = _named("model", LESDE, impact, m.gradient, classes, noise=noise,
                       init_mean=init_mean, init_std=init_std)
        params = F.Parameters(model)

    _named("model", loss.check, params)
    free = _named("model", F.free_parameters, params, impact=True,
                  noise=m.fit_noise, initial=m.fit_initial)
    if config.uncertainty.method == "curvature" and isinstance(loss, F.AbstractLeastSquares):
        q = len(F.parameter_names(params, free))
        if q >= loss.num_fit:
            raise ValueError(
                f"uncertainty.method: 'curvature' needs more data values than free "
                f"parameters, got {q} free parameters and {loss.num_fit} data values in "
                "the fit window; use 'bootstrap', fewer knots or a smaller data.window"
            )
    return FitSetup(params, loss, free, make_loss, log, fit_until, knots,
                    heldout=until is not None, knots_beyond_data=tuple(beyond))
