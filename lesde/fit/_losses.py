"""Fit objectives: how far a model's trajectories are from the data.

- `ClassMeanLoss`: least squares between the class means of an LE-ODE / LE-SDE solve
  and the logged class means Xbar_k(t) (gradients flow through the diffrax solve).
- `MomentLoss`: least squares between the per-class mean and covariance of an ensemble
  of LE-SDE paths simulated with fixed keys and the logged ones.
- `TransitionLoss`: the negative log-likelihood of dense feature snapshots under the
  Euler-Maruyama transition density of the LE-SDE (closed-form Gaussian; no solve).

Each loss holds its data and a split of the time points into a fit window (t <=
`fit_until`) and a held-out later window, on which `goodness` reports predictions of
the fitted model (`fit_until=None`: no held-out window, whose goodness is then NaN with
0 points, never a number computed from nothing). Least-squares losses expose their
residuals (for the Gauss-Newton covariance of the parameters), the likelihood its total
(for the inverse Hessian).
"""

import abc
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .._checks import check_positive_int, show
from ..models._le_sde import LEODE, LESDE
from ..solve._simulate import simulate
from ._data import check_varies, ClassMeans, ClassMoments, FitDataError, Snapshots
from ._params import Parameters


def _window(ts: np.ndarray, fit_until: Any, what: str) -> np.ndarray:
    """Mask of the time points in the fit window t <= fit_until; all of them if
    `fit_until` is None (no held-out window).

    Refused (ValueError): a `fit_until` that is not a finite number, one that leaves
    fewer than 2 points in the fit window, and one at or after the last time, which
    asks for a held-out window but leaves it empty (pass None to fit every point).
    """
    ts = np.asarray(ts)
    if fit_until is None:
        return np.ones(ts.shape, bool)
    if isinstance(fit_until, bool) or not isinstance(fit_until, (int, float, np.number)) or not math.isfinite(fit_until):
        raise ValueError(f"fit_until must be a finite time, got {show(fit_until)}")
    mask = ts <= fit_until
    if mask.sum() < 2:
        raise ValueError(
            f"fit_until = {fit_until} leaves {int(mask.sum())} {what} in the fit window "
            f"(times {show(ts)}); at least 2 are needed"
        )
    if mask.all():
        raise ValueError(
            f"fit_until = {fit_until} leaves no {what} in the held-out window: the last "
            f"time is {ts[-1]:g}; pass fit_until=None to fit all {ts.size} without a "
            "held-out window"
        )
    return mask


def _keys(keys: Any, ensemble: Any, seed: int) -> PRNGKeyArray:
    if keys is not None:
        return keys
    return jr.split(jr.key(seed), check_positive_int("ensemble", ensemble))


def _solve_steps(num_steps: Any) -> int:
    return check_positive_int("num_steps", num_steps)


def _r2(pred: np.ndarray, data: np.ndarray, w: np.ndarray, scale) -> dict:
    """RMSE, RMSE relative to `scale` (the spread of all the data), and R^2 (against
    each coordinate's mean over the window; harsh on a short, flat held-out window)
    on the entries with w > 0."""
    w = np.broadcast_to(w, data.shape) > 0
    if not w.any():
        return {"rmse": float("nan"), "relative_rmse": float("nan"), "r2": float("nan"), "points": 0}
    err = np.where(w, pred - data, 0.0)
    ss_res = float((err**2).sum())
    mean = np.where(w, data, 0.0).sum(0) / np.maximum(w.sum(0), 1)
    ss_tot = float((np.where(w, data - mean, 0.0) ** 2).sum())
    rmse = math.sqrt(ss_res / w.sum())
    return {
        "rmse": rmse,
        "relative_rmse": rmse / float(scale),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "points": int(w.sum()),
    }


class AbstractLoss(eqx.Module):
    """A fit objective of `Parameters`, with its data and fit/held-out split."""

    kind: ClassVar[str]  # "least_squares" or "likelihood"

    save_times: eqx.AbstractVar[tuple[float, ...]]  # the data times, static

    @property
    def span(self) -> tuple[float, float]:
        """The first and last data time (the solves run between them)."""
        return self.save_times[0], self.save_times[-1]

    @property
    @abc.abstractmethod
    def times(self) -> np.ndarray:
        """The data times."""

    @abc.abstractmethod
    def check(self, params: Parameters) -> None:
        """Raise a ValueError if `params` cannot be fitted to this data."""

    @abc.abstractmethod
    def value(self, params: Parameters) -> Float[Array, ""]:
        """The objective on the fit window (a mean, so its scale does not grow with the
        amount of data)."""

    num_fit: eqx.AbstractVar[int]  # the number of data scalars in the fit window

    @abc.abstractmethod
    def goodness(self, params: Parameters) -> dict:
        """Goodness of fit on the fit window and of the prediction on the held-out
        window."""


class AbstractLeastSquares(AbstractLoss):
    """value = sum of squared `residuals` / `num_fit`; the residuals are weighted and
    normalised, zero outside the fit window."""

    kind: ClassVar[str] = "least_squares"

    @abc.abstractmethod
    def residuals(self, params: Parameters, adjoint=None) -> Float[Array, " n"]:
        """Weighted, normalised residuals (zero outside the fit window). `adjoint`: the
        diffrax adjoint of the solve (default reverse mode; `diffrax.DirectAdjoint()`
        for forward-mode Jacobians)."""

    def value(self, params):
        r = self.residuals(params)
        return jnp.sum(r**2) / self.num_fit


def _windowed(data, kind: type, fit_until: Any):
    """(data, fit-window mask, weights normalised to mean 1 on the fit window) of
    windowed class data (`ClassMeans` or `ClassMoments`)."""
    if not isinstance(data, kind):
        raise ValueError(f"data must be lesde.fit.{kind.__name__}, got {type(data).__name__}")
    mask = _window(data.ts, fit_until, "time points")
    w = np.where(mask[:, None], np.asarray(data.weight), 0.0)
    return data, mask, w / w[w > 0].mean()


class ClassMeanLoss(AbstractLeastSquares):
    r"""Least squares between model class means and the data's, through the solver:

        L = (1/n) sum_{m in fit, k, j} w_mk (Xbar^model_kj(t_m) - Xbar_kj(t_m))^2 / s^2

    with w the data weights (rows averaged) normalised to mean 1, s the standard deviation
    of the data's class means and n the number of terms. An `LEODE` is solved once (from
    `Parameters.y0`, default the data's first class means); an `LESDE` is simulated for
    each of the fixed `keys` and its class means averaged over them.

    **Arguments:**
    - `data`: `ClassMeans` (e.g. `ClassMeans.from_log(log, window=50)`).
    - `fit_until`: last time of the fit window; later times are held out. None (the
      default) fits every time point: there is no held-out window, and `goodness`
      reports it as not available (NaN values, 0 points). A number must leave at least
      2 points in the fit window and 1 after it (else ValueError).
    - `num_steps`: solver steps from the first to the last data time (fixed step size).
    - `solver`: a `lesde.simulate` solver name (default Tsit5 for the LE-ODE, Euler for
      the LE-SDE).
    - `ensemble`, `seed` or `keys`: the fixed keys of the LE-SDE ensemble.

    Class means that do not vary over the fit window are refused (`FitDataError`, rule
    in `lesde.fit.check_varies`): nothing in them determines the impact.
    """

    data: ClassMeans
    num_fit: int = eqx.field(static=True)
    save_times: tuple[float, ...] = eqx.field(static=True)
    mask: Bool[Array, " T"]
    weight: Float[Array, "T K"]
    scale: Float[Array, ""]
    num_steps: int = eqx.field(static=True)
    solver: str | None = eqx.field(static=True)
    keys: PRNGKeyArray

    def __init__(self, data: ClassMeans, *, fit_until: Any = None, num_steps: int = 200,
                 solver: str | None = None, ensemble: int = 8, seed: int = 0, keys: Any = None):
        self.data, self.mask, self.weight = _windowed(data, ClassMeans, fit_until)
        self.save_times = _save_times(data.ts)
        w = self.weight > 0
        m = np.asarray(self.mask)
        check_varies("the class means", np.asarray(data.ts)[m], np.asarray(data.xbar)[m],
                     w[m][..., None])
        self.scale = np.asarray(float(np.asarray(data.xbar)[w].std()) or 1.0)
        self.num_fit = int(w.sum()) * data.dim
        self.num_steps = _solve_steps(num_steps)
        self.solver = solver
        self.keys = _keys(keys, ensemble, seed)

    @property
    def times(self):
        return np.asarray(self.data.ts)

    def check(self, params):
        _check_model(params, self.data.num_classes, self.data.dim)
        if isinstance(params.model, LEODE) and params.y0 is None:
            missing = np.asarray(self.data.weight)[0] <= 0
            if missing.any():
                raise FitDataError(
                    f"the data have no class mean of class(es) {np.flatnonzero(missing).tolist()} "
                    "at the first time, so the LE-ODE has no initial state: pass Parameters.y0"
                )

    def predict(self, params: Parameters, adjoint=None) -> Float[Array, "T K p"]:
        """The model's class means at the data times."""
        return _class_means(params, self.save_times, self.data.xbar[0],
                            self.num_steps, self.solver, self.keys, adjoint)

    def residuals(self, params, adjoint=None):
        err = self.predict(params, adjoint) - self.data.xbar
        return (jnp.sqrt(self.weight)[..., None] * err / self.scale).ravel()

    def goodness(self, params):
        pred = np.asarray(self.predict(params))
        data, w = np.asarray(self.data.xbar), np.asarray(self.data.weight)[..., None]
        m = np.asarray(self.mask)[:, None, None]
        return {"fit": _r2(pred, data, w * m, self.scale),
                "heldout": _r2(pred, data, w * ~m, self.scale)}


def _check_model(params: Parameters, num_classes: int, dim: int) -> None:
    if not isinstance(params, Parameters):
        raise ValueError(f"params must be lesde.fit.Parameters, got {type(params).__name__}")
    m = params.model
    if m.num_classes != num_classes or m.dim != dim:
        raise ValueError(
            f"the model has K = {m.num_classes} classes and p = {m.dim} features but the "
            f"data have K = {num_classes}, p = {dim}"
        )


def _save_times(ts) -> tuple[float, ...]:
    """The data times as a static tuple: `simulate` then sees concrete save times and,
    when they lie on its grid, reads them off the steps (`grid_saves`) instead of
    interpolating."""
    return tuple(float(t) for t in np.asarray(ts))


def _class_means(params, ts, first, num_steps, solver, keys, adjoint):
    """Class means of the model at times ts (T, K, p), solved from ts[0]."""
    model = params.model
    t0, t1 = ts[0], ts[-1]
    dt = (t1 - t0) / num_steps
    ts = np.clip(np.asarray(ts), t0, t1)
    if isinstance(model, LEODE):
        y0 = first if params.y0 is None else params.y0
        return simulate(model, t0=t0, t1=t1, dt=dt, y0=y0, ts=ts, solver=solver,
                        adjoint=adjoint, grid_saves=True).ys

    def one(key):
        return simulate(model, t0=t0, t1=t1, dt=dt, key=key, y0=params.y0, ts=ts,
                        solver=solver, adjoint=adjoint, grid_saves=True,
                        fn=lambda t, x, m: m.classes.mean(x)).ys

    return jnp.mean(jax.vmap(one)(keys), axis=0)


class MomentLoss(AbstractLeastSquares):
    r"""Moment matching of an LE-SDE ensemble to the data's class moments:

        L = (1/2) [ (1/n_mu) sum_{m in fit, k} w_mk |mu^model_k(t_m) - mu_k(t_m)|^2 / s_mu^2
                  + (1/n_C) sum_{m in fit, k} w_mk |C^model_k(t_m) - C_k(t_m)|_F^2 / s_C^2 ]

    mu^model_k and C^model_k are the mean and covariance of the features of the class-k
    samples pooled over `ensemble` paths simulated with fixed keys (the same keys at
    every optimisation step, so the loss is a smooth function of the parameters);
    s_mu and s_C are the standard deviation of the data means and the RMS of the data
    covariance entries; n_mu = p n_w and n_C = p^2 n_w count the terms (n_w the
    (time, class) pairs with data), so means and covariances weigh alike although a
    covariance has p times more entries.

    **Arguments:** `data` (`ClassMoments`), `fit_until`, `num_steps`, `solver`,
    `ensemble`, `seed`, `keys` as for `ClassMeanLoss`. The model must be an `LESDE`.
    Data whose class means and covariances both do not vary over the fit window are
    refused (`FitDataError`).
    """

    data: ClassMoments
    num_fit: int = eqx.field(static=True)
    save_times: tuple[float, ...] = eqx.field(static=True)
    mask: Bool[Array, " T"]
    weight: Float[Array, "T K"]
    scale_mean: Float[Array, ""]
    scale_cov: Float[Array, ""]
    num_steps: int = eqx.field(static=True)
    solver: str | None = eqx.field(static=True)
    keys: PRNGKeyArray

    def __init__(self, data: ClassMoments, *, fit_until: Any = None, num_steps: int = 200,
                 solver: str | None = None, ensemble: int = 8, seed: int = 0, keys: Any = None):
        self.data, self.mask, self.weight = _windowed(data, ClassMoments, fit_until)
        self.save_times = _save_times(data.ts)
        w = self.weight > 0
        m = np.asarray(self.mask)
        ts = np.asarray(data.ts)[m]
        try:
            check_varies("the class means", ts, np.asarray(data.mean)[m], w[m][..., None])
        except FitDataError as no_mean:  # the covariances alone may determine the model
            try:
                check_varies("the class covariances", ts, np.asarray(data.cov)[m],
                             w[m][..., None, None], power=2)
            except FitDataError as no_cov:
                raise FitDataError(f"{no_mean}; and {no_cov}") from None
        # array leaves, not static: a bootstrap resample changes them without recompiling
        self.scale_mean = np.asarray(float(np.asarray(data.mean)[w].std()) or 1.0)
        self.scale_cov = np.asarray(float(np.sqrt((np.asarray(data.cov)[w] ** 2).mean())) or 1.0)
        self.num_fit = int(w.sum()) * (data.dim + data.dim**2)
        self.num_steps = _solve_steps(num_steps)
        self.solver = solver
        self.keys = _keys(keys, ensemble, seed)

    @property
    def times(self):
        return np.asarray(self.data.ts)

    def check(self, params):
        _check_model(params, self.data.num_classes, self.data.dim)
        if not isinstance(params.model, LESDE):
            raise ValueError(
                f"moment matching simulates samples: the model must be an LESDE, got "
                f"{type(params.model).__name__}"
            )

    def predict(self, params: Parameters, adjoint=None) -> tuple[Array, Array]:
        """The model's class means (T, K, p) and covariances (T, K, p, p)."""
        model = params.model
        t0, t1 = self.span
        dt = (t1 - t0) / self.num_steps
        ts = np.clip(np.asarray(self.save_times), t0, t1)

        def moments(t, x, m):
            return m.classes.mean(x), m.classes.mean(x[:, :, None] * x[:, None, :])

        def one(key):
            return simulate(model, t0=t0, t1=t1, dt=dt, key=key, y0=params.y0,
                            ts=ts, solver=self.solver, adjoint=adjoint, fn=moments,
                            grid_saves=True).ys

        m1, m2 = jax.vmap(one)(self.keys)
        mean, second = jnp.mean(m1, axis=0), jnp.mean(m2, axis=0)
        return mean, second - mean[..., :, None] * mean[..., None, :]

    def residuals(self, params, adjoint=None):
        mean, cov = self.predict(params, adjoint)
        sw = jnp.sqrt(self.weight)
        p = self.data.dim
        # sum(r^2) / num_fit = (mean of the mean terms + mean of the covariance terms) / 2
        f1, f2 = math.sqrt((1 + p) / 2), math.sqrt((1 + p) / (2 * p))
        r1 = f1 * sw[..., None] * (mean - self.data.mean) / self.scale_mean
        r2 = f2 * sw[..., None, None] * (cov - self.data.cov) / self.scale_cov
        return jnp.concatenate([r1.ravel(), r2.ravel()])

    def goodness(self, params):
        mean, cov = (np.asarray(a) for a in self.predict(params))
        w = np.asarray(self.data.weight)
        m = np.asarray(self.mask)[:, None]
        out = {}
        for name, sel in (("fit", m), ("heldout", ~m)):
            ww = w * sel
            out[name] = {
                "mean": _r2(mean, np.asarray(self.data.mean), ww[..., None], self.scale_mean),
                "cov": _r2(cov, np.asarray(self.data.cov), ww[..., None, None], self.scale_cov),
            }
        return out


class TransitionLoss(AbstractLoss):
    r"""The Euler-Maruyama transition likelihood of dense snapshots (no solve):

        x(t_{m+1}) | x(t_m) ~ N( x(t_m) + f(t_m, x(t_m)) D_m,  Sigma(t_m) D_m ),
        D_m = t_{m+1} - t_m,

    with f the LE-SDE drift and, per class k and coordinate j, the n_k samples'
    covariance Sigma = sigma_ind^2 I + sigma_sh^2 1 1^T (the shared noise moves a whole
    class). Per block, with residual r in R^{n_k}, a = sigma_ind^2 D, b = sigma_sh^2 D:

        -log p = (1/2) [ n_k log 2 pi + (n_k - 1) log a + log(a + n_k b)
                         + (|r|^2 - b (sum r)^2 / (a + n_k b)) / a ].

    `value` is the negative log-likelihood per data scalar on the fit transitions
    (t_{m+1} <= `fit_until`); `total_nll` is the sum, whose Hessian gives the
    parameters' covariance. Exact for the Euler-Maruyama chain; for the SDE it is
    accurate when the gaps D_m are small against the drift's time scale. The model
    must be an `LESDE` with independent noise and the data's labels. `fit_until` as for
    `ClassMeanLoss`, on the end times of the transitions. Snapshots that do not vary
    over the fit transitions are refused (`FitDataError`): their likelihood is singular.
    """

    kind: ClassVar[str] = "likelihood"
    data: Snapshots
    num_fit: int = eqx.field(static=True)
    save_times: tuple[float, ...] = eqx.field(static=True)
    mask: Bool[Array, " M"]
    num_steps: int = eqx.field(static=True)

    def __init__(self, data: Snapshots, *, fit_until: Any = None, num_steps: int = 200):
        if not isinstance(data, Snapshots):
            raise ValueError(f"data must be lesde.fit.Snapshots, got {type(data).__name__}")
        self.data = data
        self.save_times = _save_times(data.ts)
        self.mask = _window(np.asarray(data.ts)[1:], fit_until, "transitions")
        used = np.concatenate([[True], np.asarray(self.mask)])  # the fit transitions' times
        x = np.moveaxis(np.asarray(data.features), 1, 0)[used]  # (T_fit, R, N, p)
        check_varies("the snapshot features", np.asarray(data.ts)[used], x, np.ones((1,), bool))
        R, _, N, p = data.features.shape
        self.num_fit = int(self.mask.sum()) * R * N * p
        self.num_steps = _solve_steps(num_steps)

    @property
    def times(self):
        return np.asarray(self.data.ts)

    def check(self, params):
        _check_model(params, self.data.num_classes, self.data.dim)
        model = params.model
        if not isinstance(model, LESDE) or model.noise.level("independent") is None:
            raise ValueError(
                "the transition likelihood needs an LESDE with independent noise "
                "(Noise(independent=sigma)); without it the transition density is singular"
            )
        labels = np.asarray(model.classes.labels)
        if labels.shape != self.data.labels.shape or (labels != np.asarray(self.data.labels)).any():
            raise ValueError(
                "the model's classes must have the snapshots' labels: build it with "
                "Classes(snapshots.labels, K)"
            )

    def _block_nll(self, params) -> Float[Array, "M"]:
        model = params.model
        x = self.data.features  # (R, T, N, p)
        ts = self.data.ts
        gaps = ts[1:] - ts[:-1]
        counts = model.classes.counts[:, None]  # (K, 1)

        def per_transition(x0, x1, t, gap):
            r = x1 - x0 - model.drift(t, x0) * gap
            sig = model.noise.sigmas(t, r.dtype)
            a = sig["independent"] ** 2 * gap
            b = sig.get("shared", jnp.zeros((), r.dtype)) ** 2 * gap
            s1 = model.classes.sum(r)  # (K, p)
            s2 = model.classes.sum(r**2)
            c = a + counts * b
            quad = (s2 - b * s1**2 / c) / a
            logdet = (counts - 1) * jnp.log(a) + jnp.log(c)
            return 0.5 * jnp.sum(counts * jnp.log(2 * jnp.pi) + logdet + quad)

        over_m = jax.vmap(per_transition, in_axes=(0, 0, 0, 0))
        over_r = jax.vmap(lambda xr: over_m(xr[:-1], xr[1:], ts[:-1], gaps))
        return jnp.sum(over_r(x), axis=0)  # (M,)

    def total_nll(self, params) -> Float[Array, ""]:
        """Negative log-likelihood of the fit transitions (a sum)."""
        return jnp.sum(jnp.where(self.mask, self._block_nll(params), 0.0))

    def value(self, params):
        return self.total_nll(params) / self.num_fit

    def predict(self, params: Parameters, key: PRNGKeyArray | None = None) -> Float[Array, "T K p"]:
        """Class means of LE-SDE paths from each replica's first snapshot, averaged
        over replicas (the model's forecast of the snapshots' class means)."""
        model = params.model
        t0, t1 = self.span
        ts = np.clip(np.asarray(self.save_times), t0, t1)
        keys = jr.split(jr.key(0) if key is None else key, self.data.features.shape[0])

        def one(x0, k):
            return simulate(model, t0=t0, t1=t1, dt=(t1 - t0) / self.num_steps, key=k, y0=x0,
                            ts=ts, fn=lambda t, x, m: m.classes.mean(x), grid_saves=True).ys

        return jnp.mean(jax.vmap(one)(self.data.features[:, 0], keys), axis=0)

    def observed_means(self) -> np.ndarray:
        """The snapshots' class means (T, K, p), averaged over replicas."""
        x = np.asarray(self.data.features)
        onehot = np.eye(self.data.num_classes)[np.asarray(self.data.labels)]  # (N, K)
        means = np.einsum("rtnp,nk->tkp", x, onehot) / (x.shape[0] * onehot.sum(0)[None, :, None])
        return means

    def goodness(self, params):
        nll = np.asarray(self._block_nll(params))
        R, _, N, p = self.data.features.shape
        m = np.asarray(self.mask)
        per = R * N * p
        out = {}
        for name, sel in (("fit", m), ("heldout", ~m)):
            n = int(sel.sum())
            out[name] = {
                "nll_per_value": float(nll[sel].sum() / (n * per)) if n else float("nan"),
                "transitions": n,
            }
        pred = np.asarray(self.predict(params))
        obs = self.observed_means()
        ones = np.ones(obs.shape[:2] + (1,))
        tm = np.concatenate([[True], m])[:, None, None]
        scale = obs.std() or 1.0
        out["fit"]["class_means"] = _r2(pred, obs, ones * tm, scale)
        out["heldout"]["class_means"] = _r2(pred, obs, ones * ~tm, scale)
        return out
