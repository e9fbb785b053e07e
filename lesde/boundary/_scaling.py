"""The width of a located transition, and its finite-size scaling: a power law in the
horizon T (or the number of samples n, or of classes K), with the exponent's standard
error."""

import warnings

import numpy as np
from scipy import optimize

WIDTH_METHODS = ("logistic", "thresholds")


def logistic(x, low, step, center, width):
    r"""f(x) = low + step / (1 + exp(-(x - center) / width)): the sigmoid fitted by
    `transition_width` (width > 0; the 10%-90% rise spans 2 ln 9 width ~ 4.39 width)."""
    z = np.clip((np.asarray(x, dtype=float) - center) / width, -60, 60)
    return low + step / (1 + np.exp(-z))


def _fit_logistic(x, y, se, guess_center, span):
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, se = x[ok], y[ok], se[ok]
    if x.size < 5:
        return np.nan, np.nan, np.nan
    order = np.argsort(x)
    x, y, se = x[order], y[order], se[order]
    sigma = np.maximum(np.where(np.isfinite(se), se, np.nan), 1e-3 * max(np.ptp(y), 1e-12))
    sigma = np.where(np.isfinite(sigma), sigma, np.nanmax(sigma) if np.isfinite(sigma).any() else 1.0)
    low, high = y[0], y[-1]
    guess = [low, high - low, guess_center, span / 20]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, cov = optimize.curve_fit(
                logistic, x, y, p0=guess, sigma=sigma, absolute_sigma=False, maxfev=20000,
                bounds=([-np.inf, -np.inf, x[0], span * 1e-6], [np.inf, np.inf, x[-1], span]),
            )
    except (RuntimeError, ValueError):
        return np.nan, np.nan, np.nan
    err = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(4, np.nan)
    return float(p[3]), float(err[3]), float(p[2])


def _interval(x, y, thresholds):
    """|x(t2) - x(t1)| where the piecewise-linear curve through the probes, sorted by x,
    first crosses each threshold t (NaN if it does not)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    order = np.argsort(x)
    x, y = x[order], y[order]
    where = []
    for t in thresholds:
        s = y - t
        i = np.flatnonzero((s[:-1] == 0) | (np.sign(s[:-1]) != np.sign(s[1:])))
        if not i.size:
            return np.nan
        i = i[0]
        where.append(x[i] if s[i] == 0 else x[i] + (t - y[i]) * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))
    return abs(where[1] - where[0])


def transition_width(ds, *, method: str = "logistic", thresholds=None):
    r"""The width of the transition in every cell of a `locate_boundary` result, from its
    probes.

    - `method="logistic"`: a weighted least-squares fit (`scipy.optimize.curve_fit`,
      weights 1 / `probe_se`^2, scaled by the residuals) of
      f(x) = low + step / (1 + exp(-(x - x0) / w)) to the probe estimates; the width is
      w, with its standard error from the fit's covariance, and the fitted centre x0.
      Needs 5 probes at least; the bisection's probes crowd around the crossing, so the
      fit resolves widths down to about the tolerance.
    - `method="thresholds"`: the distance between the crossings of the two
      `thresholds` (t1, t2) by the piecewise-linear curve through the probes, without a
      standard error (NaN).

    Cells not `located` get NaN.

    **Returns:** an `xarray.Dataset` over the cells' dimensions with `width`,
    `width_se` and (logistic) `center`.

    Example: `w = transition_width(ds); w["width"].sel(noise_independent=0.1)` (over
    the horizons).
    """
    import xarray as xr

    if method not in WIDTH_METHODS:
        raise ValueError(f"method must be one of {list(WIDTH_METHODS)}, got {method!r}")
    if method == "thresholds":
        t = np.asarray(thresholds if thresholds is not None else [], dtype=float).ravel()
        if t.size != 2 or not np.isfinite(t).all() or t[0] == t[1]:
            raise ValueError(f"method 'thresholds' needs two different finite thresholds, got {thresholds!r}")
    elif thresholds is not None:
        raise ValueError("thresholds are only for method 'thresholds'")
    for name in ("probe_x", "probe_mean", "probe_se", "cell_status", "critical"):
        if name not in ds:
            raise ValueError(f"transition_width needs a locate_boundary result; {name!r} is missing")
    cells = ds["critical"].dims
    span = float(ds.attrs.get("inner_hi", np.nan)) - float(ds.attrs.get("inner_lo", np.nan))
    x = ds["probe_x"].transpose(*cells, "probe").values
    y = ds["probe_mean"].transpose(*cells, "probe").values
    se = ds["probe_se"].transpose(*cells, "probe").values
    located = (ds["cell_status"] == 0).values
    crit = ds["critical"].values
    shape = crit.shape
    width = np.full(shape, np.nan)
    err = np.full(shape, np.nan)
    center = np.full(shape, np.nan)
    for idx in np.ndindex(*shape):
        if not located[idx]:
            continue
        s = span if np.isfinite(span) else np.nanmax(x[idx]) - np.nanmin(x[idx])
        if method == "logistic":
            width[idx], err[idx], center[idx] = _fit_logistic(x[idx], y[idx], se[idx], crit[idx], s)
        else:
            width[idx] = _interval(x[idx], y[idx], t)
    coords = {k: v for k, v in ds["critical"].coords.items()}
    out = xr.Dataset(
        {"width": (cells, width), "width_se": (cells, err)}, coords=coords,
        attrs={"width_method": method},
    )
    if method == "logistic":
        out["center"] = (cells, center)
    else:
        out.attrs["width_thresholds"] = t.tolist()
    return out


def power_law_fit(size, width, width_se=None) -> dict:
    r"""Fit width = A size^nu by least squares on log width = log A + nu log size,
    weighted by (width / width_se)^2 when standard errors are given (the error of log
    width is width_se / width), with `scipy.optimize.curve_fit` (covariance scaled by the
    residuals; with two points the fit is exact and its errors NaN). Points with a
    non-finite or non-positive width or size are left out.

    **Returns:** {"exponent", "exponent_se", "prefactor", "prefactor_se", "points"}.

    Example: `power_law_fit([50, 100, 200], [0.08, 0.041, 0.019])["exponent"]` is about -1.
    """
    size = np.asarray(size, dtype=float).ravel()
    width = np.asarray(width, dtype=float).ravel()
    if size.shape != width.shape:
        raise ValueError(f"size and width must have the same length, got {size.size} and {width.size}")
    se = None if width_se is None else np.asarray(width_se, dtype=float).ravel()
    ok = np.isfinite(size) & np.isfinite(width) & (size > 0) & (width > 0)
    if se is not None:
        ok &= np.isfinite(se) & (se > 0)
    n = int(ok.sum())
    out = {"exponent": np.nan, "exponent_se": np.nan, "prefactor": np.nan, "prefactor_se": np.nan,
           "points": n}
    if n < 2:
        return out
    lx, ly = np.log(size[ok]), np.log(width[ok])
    if n == 2:
        nu = (ly[1] - ly[0]) / (lx[1] - lx[0])
        out.update(exponent=float(nu), prefactor=float(np.exp(ly[0] - nu * lx[0])))
        return out
    sigma = None if se is None else se[ok] / width[ok]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, cov = optimize.curve_fit(lambda x, a, b: a + b * x, lx, ly, p0=[ly.mean(), 0.0],
                                    sigma=sigma, absolute_sigma=False)
    err = np.sqrt(np.diag(cov))
    out.update(exponent=float(p[1]), exponent_se=float(err[1]), prefactor=float(np.exp(p[0])),
               prefactor_se=float(np.exp(p[0]) * err[0]))
    return out


def finite_size_scaling(widths, dim: str, *, weighted: bool = True):
    r"""Finite-size scaling of the transition width along `dim` (e.g. 'time', the
    horizon T): for every setting of the other dimensions, the power law
    width ~ A size^nu fitted by `power_law_fit` over the values of `dim`, with the
    exponent's standard error.

    **Arguments:**
    - `widths`: the result of `transition_width` (`width`, `width_se`), or a Dataset of
      several searches concatenated along `dim` (e.g. over n or K, each a search of its
      own).
    - `dim`: the dimension whose coordinate is the size.
    - `weighted`: weight by `width_se` (when finite).

    **Returns:** an `xarray.Dataset` over the other dimensions with `exponent`,
    `exponent_se`, `prefactor`, `prefactor_se` and `points` (the widths used).

    Example: `finite_size_scaling(transition_width(ds), "time")["exponent"]`.
    """
    import xarray as xr

    if dim not in widths.dims:
        raise ValueError(f"{dim!r} is not a dimension of the widths; they have {list(widths.dims)}")
    w = widths["width"]
    se = widths["width_se"] if weighted and "width_se" in widths else None
    others = [d for d in w.dims if d != dim]
    size = np.asarray(widths[dim].values, dtype=float)
    wv = w.transpose(*others, dim).values
    sv = None if se is None else se.transpose(*others, dim).values
    shape = wv.shape[:-1]
    names = ("exponent", "exponent_se", "prefactor", "prefactor_se", "points")
    res = {k: np.full(shape, np.nan) for k in names}
    for idx in np.ndindex(*shape):
        s = None if sv is None else sv[idx]
        if s is not None and not np.isfinite(s).sum() >= 3:
            s = None  # no usable errors: unweighted
        fit = power_law_fit(size, wv[idx], s)
        for k in names:
            res[k][idx] = fit[k]
    coords = {k: v for k, v in w.coords.items() if dim not in v.dims}
    out = xr.Dataset({k: (others, v if k != "points" else v.astype(np.int32)) for k, v in res.items()},
                     coords=coords, attrs={"size_dim": dim})
    return out

