"""`lesde fit`: closed-form estimates and the gradient fit of an LE-ODE / LE-SDE to a
trajectory log, with its report, dataset and pictures."""

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from .. import __version__
from .. import fit as F
from ..io import (
    check_output_dir, INTERRUPTED, output_lock, read_log, remove_stale, versions, write_netcdf,
)
from ..io._results import COMPLETE_MARKER, to_json, write_json
from ..plot import close, plot_closed_form, plot_fit
from ._cf import describe
from ._report import checked, REFUSED
from ._fit_config import build_fit, load_fit_config


def closed_form_estimates(log, config) -> tuple:
    """The closed-form estimates of a `FitConfig` on a log: the inversion
    (`closed_form.estimator`) of the class-mean logits of `data.window`-step windows,
    the Savitzky-Golay rates alpha_hat, beta_hat, the tail index of A_hat and a power-law
    fit of alpha_hat (time scale `model.impact.t0`).

    Returns (dataset, summary): the inversion's Dataset with the rates added (None if
    the inversion failed or the estimator is 'none') and a JSON-ready summary (None for
    'none'). A step that fails (real logits can make the inversion impossible, e.g. a
    window without a class) records its message under summary['errors'] instead of
    raising.
    """
    cf = config.closed_form
    if cf.estimator == "none":
        return None, None
    summary: dict = {"estimator": cf.estimator, "errors": {}}
    invert = F.identity_inversion if cf.estimator == "identity" else F.projected_inversion
    try:
        est = invert(F.class_mean_logits(log, window=config.data.window))
    except ValueError as e:
        summary["errors"]["inversion"] = str(e)
        return None, summary
    summary["A_hat_final"] = float(est["A_hat"][-1])
    summary["B_hat_final"] = float(est["B_hat"][-1])
    try:
        summary["tail_index"] = F.tail_index(est["A_hat"], last=cf.tail_last)
    except ValueError as e:
        summary["errors"]["tail_index"] = str(e)
    try:
        est = F.savgol_rates(est, cf.savgol_window)
    except ValueError as e:
        summary["errors"]["savgol_rates"] = str(e)
        return est, summary
    try:
        pl = F.power_law_fit(est["step"].values, est["alpha_hat"], t0=config.model.impact.t0)
        summary["power_law_alpha_hat"] = pl._asdict()
    except ValueError as e:
        summary["errors"]["power_law_fit"] = str(e)
    return est, summary


def run_fit(setup, config, progress: bool = True) -> tuple:
    """The gradient fit of a `build_fit` setup with the configuration's optimizer, then
    its report (`lesde.fit.fit_report`: standard errors from the curvature of the loss,
    or from a bootstrap over trials; parameters the data do not identify get None).
    Returns (FitResult, report dict, JSON-ready: non-finite numbers as None).

    A fit that did not end normally (`stopped` 'interrupted' or 'nonfinite') gets no
    uncertainty (its parameters are no minimum of the loss) and no bootstrap. Ctrl-C
    during the uncertainty keeps the fit and marks it `stopped='interrupted'`, without
    uncertainty; Ctrl-C before the first optimisation step has ended raises
    KeyboardInterrupt (there is nothing to keep).
    """
    o, u = config.optimizer, config.uncertainty
    opts = dict(method=o.method, learning_rate=o.learning_rate, schedule=o.schedule,
                patience=o.patience, rtol=o.rtol)
    result = F.fit(setup.params, setup.loss, free=setup.free, steps=o.steps, progress=progress, **opts)
    normal = result.stopped in ("max_steps", "converged")
    try:
        samples = None
        if normal and u.method == "bootstrap":
            samples = F.bootstrap(
                result, setup.make_loss, setup.log.sizes["trial"], samples=u.samples,
                steps=u.steps, seed=config.loss.seed, progress=progress, **opts,
            )
        report = F.fit_report(result, setup.loss, bootstrap_samples=samples, uncertainty=normal)
    except KeyboardInterrupt:
        result = dataclasses.replace(result, stopped="interrupted")
        report = F.fit_report(result, setup.loss, uncertainty=False)
    return result, to_json(report)


def _goodness_summary(goodness: dict) -> dict:
    """R^2 of the class means on the fit and held-out windows (and the per-value
    negative log-likelihood of a transition fit, the covariance R^2 of a moment fit)."""
    fit, held = goodness["fit"], goodness["heldout"]
    if "nll_per_value" in fit:  # TransitionLoss
        return {
            "nll_fit": fit["nll_per_value"], "nll_heldout": held["nll_per_value"],
            "r2_fit": fit["class_means"]["r2"], "r2_heldout": held["class_means"]["r2"],
        }
    if "mean" in fit:  # MomentLoss
        return {
            "r2_fit": fit["mean"]["r2"], "r2_heldout": held["mean"]["r2"],
            "r2_cov_fit": fit["cov"]["r2"], "r2_cov_heldout": held["cov"]["r2"],
        }
    return {"r2_fit": fit["r2"], "r2_heldout": held["r2"]}


def fit_dataset(setup, result, goodness: dict, estimates=None):
    """The fit as an xr.Dataset: the data's and the fitted model's class means
    `data`, `model` (step, class, logit) with the bool coordinate `heldout` (step), the
    rows behind each data mean `count` (step, class), the fitted impact matrix `impact`
    (step, class_row, class_col) at the data times, and the closed-form `A_hat`,
    `B_hat`, `alpha_hat`, `beta_hat` over their own window times `cf_step` if given.

    The class means are those the loss compares: the windowed class-mean logits (class
    mean and moment losses; NaN where a window has no row of a class) or the snapshot
    class means (transition loss; the model forecast from each trial's first snapshot).

    Attrs say how the fit ended: `stopped` (the `FitResult` reason), `complete` (0 when
    it was interrupted: the parameters are the best so far, not a finished fit),
    `converged` (1 when the early-stopping criterion was met; 0 otherwise, in
    particular when the loss became non-finite), `heldout_window` (0 when nothing is
    held out), the goodness summary where available and `knots_beyond_data` (knots
    whose values extrapolate a piece, `lesde.fit.check_knots`).
    """
    loss, params = setup.loss, result.params
    if isinstance(loss, F.TransitionLoss):
        data = loss.observed_means()
        model = np.asarray(loss.predict(params))
        R, _, N, _ = np.asarray(loss.data.features).shape
        counts = np.bincount(np.asarray(loss.data.labels), minlength=data.shape[1]) * R
        count = np.broadcast_to(counts, data.shape[:2])
        heldout = np.concatenate([[False], ~np.asarray(loss.mask)])
    else:
        if isinstance(loss, F.MomentLoss):
            data, model = np.asarray(loss.data.mean), np.asarray(loss.predict(params)[0])
        else:
            data, model = np.asarray(loss.data.xbar), np.asarray(loss.predict(params))
        count = np.asarray(loss.data.weight)
        data = np.where(count[..., None] > 0, data, np.nan)
        heldout = ~np.asarray(loss.mask)
    ts = np.asarray(loss.times, dtype=np.float64)
    K = data.shape[1]
    ds = xr.Dataset(
        {
            "data": (("step", "class", "logit"), data.astype(np.float64)),
            "model": (("step", "class", "logit"), model.astype(np.float64)),
            "count": (("step", "class"), np.asarray(count, dtype=np.float64)),
            "impact": (("step", "class_row", "class_col"), F.impact_matrices(params, ts).astype(np.float64)),
        },
        coords={
            "step": ts, "class": np.arange(K, dtype=np.int32),
            "logit": np.arange(data.shape[2], dtype=np.int32), "heldout": ("step", heldout.astype(bool)),
        },
        attrs={
            "loss": type(loss).__name__, "fit_until": float(setup.fit_until),
            "heldout_window": int(setup.heldout), "stopped": result.stopped,
            "complete": int(result.stopped != "interrupted"),
            "converged": int(result.stopped == "converged"),
        },
    )
    for key, value in _goodness_summary(goodness).items():
        if value is not None:
            ds.attrs[key] = float(value)
    if setup.knots is not None:
        ds.attrs["knots"] = np.asarray(setup.knots, dtype=np.float64)
    if setup.knots_beyond_data:
        ds.attrs["knots_beyond_data"] = np.asarray(setup.knots_beyond_data, dtype=np.float64)
    if estimates is not None:
        for name in ("A_hat", "B_hat", "alpha_hat", "beta_hat"):
            if name in estimates:
                ds[name] = ("cf_step", np.asarray(estimates[name], dtype=np.float64))
        ds = ds.assign_coords(cf_step=np.asarray(estimates["step"], dtype=np.float64))
        ds.attrs["closed_form_estimator"] = estimates.attrs.get("estimator", "")
    return ds


def _fmt(v, width=11):
    return f"{'n/a':>{width}}" if v is None else f"{v:{width}.4g}"


def _print_parameters(params: dict) -> None:
    print(f"{'parameter':<30} {'value':>11} {'stderr':>11}")
    for name, p in params.items():
        print(f"{name:<30} {_fmt(p['value'])} {_fmt(p['stderr'])}")


def _print_fit_table(setup, result, report: dict, closed: dict | None) -> None:
    """A short account of the fit on stdout: the parameters with their standard errors
    (or, for many parameters, the mean diagonal and off-diagonal of the fitted E(t)),
    goodness of fit and the closed-form estimates."""
    params = report["parameters"]
    impact = {n: p for n, p in params.items() if n.startswith("impact.")}
    rest = {n: p for n, p in params.items() if n not in impact}
    names = set(impact)
    if setup.knots is not None and {f"impact.{a}.values[{i}]" for a in ("alpha", "beta")
                                    for i in range(len(setup.knots))} == names:
        print(f"{'t':>10} {'alpha':>11} {'stderr':>11} {'beta':>11} {'stderr':>11}")
        for i, t in enumerate(setup.knots):
            a, b = impact[f"impact.alpha.values[{i}]"], impact[f"impact.beta.values[{i}]"]
            print(f"{t:10.4g} {_fmt(a['value'])} {_fmt(a['stderr'])} {_fmt(b['value'])} {_fmt(b['stderr'])}")
    elif len(impact) <= 16:
        _print_parameters(impact)
    else:
        times = np.asarray(setup.loss.times)
        ts = np.asarray(setup.knots) if setup.knots is not None else times[
            np.unique(np.linspace(0, len(times) - 1, 6).round().astype(int))]
        e = F.impact_matrices(result.params, ts)
        K = e.shape[-1]
        off = ~np.eye(K, dtype=bool)
        print(f"{len(impact)} impact parameters (values and standard errors in report.json); "
              "the fitted impact matrix E(t):")
        print(f"{'t':>10} {'mean diag':>11} {'mean off-diag':>14}")
        for t, m in zip(ts, e):
            print(f"{t:10.4g} {_fmt(float(np.trace(m)) / K)} {_fmt(float(m[off].mean()), 14)}")
    if 0 < len(rest) <= 16:
        _print_parameters(rest)
    elif rest:
        print(f"{len(rest)} more free parameters ({', '.join(sorted({n.split('[')[0] for n in rest}))}) "
              "in report.json")
    if setup.knots is not None:
        print("knot times: " + ", ".join(f"{t:g}" for t in setup.knots))
    g = _goodness_summary(report["goodness"])
    print(f"{'':<9} {'R^2':>9}" + (f" {'NLL/value':>11}" if "nll_fit" in g else ""))
    for row, key in (("fit", "fit"), ("held-out", "heldout")):
        line = f"{row:<9} {_fmt(g[f'r2_{key}'], 9)}"
        if "nll_fit" in g:
            line += f" {_fmt(g[f'nll_{key}'])}"
        print(line)
    if closed is not None:
        parts = [f"closed form ({closed['estimator']} inversion):"]
        if "A_hat_final" in closed:
            parts.append(f"A_hat(end) = {closed['A_hat_final']:.4g}, B_hat(end) = {closed['B_hat_final']:.4g}")
        if "tail_index" in closed:
            parts.append(f"tail index {closed['tail_index']:.4g}")
        pl = closed.get("power_law_alpha_hat")
        if pl is not None:
            parts.append(f"alpha_hat ~ c (1 + t/t0)^-r: c = {pl['c']:.3g} +- {pl['c_stderr']:.2g}, "
                         f"r = {pl['r']:.3g} +- {pl['r_stderr']:.2g}")
        for step, msg in closed["errors"].items():
            parts.append(f"{step} failed: {msg.splitlines()[0]}")
        print(" ".join(parts[:1]) + " " + "; ".join(parts[1:]))


def fit_command(
    log: str | Path, config: str | Path, out: str | Path, *, progress: bool = True,
    ragged: str = "error",
) -> int:
    """`lesde fit`: fit the LE-ODE or LE-SDE of the YAML file `config` to the trajectory
    log `log` (.nc from `lesde train`, or the LE-SDE authors' .csv): closed-form
    estimates, the gradient fit with standard errors, the prediction of the held-out
    window. Writes report.json, fit.nc, fit.png, closed_form.png and summary.json (last)
    to the folder `out`. `ragged`: how to read a .csv log whose trials stopped at
    different steps (a run killed while `TrajectoryLogger` wrote it; `read_log`):
    'error' (refuse it), 'common_steps' or 'complete_trials'.

    **Returns:** the exit status: 0 a finished fit; 1 the fit failed (nothing written) or
    its loss became non-finite (outputs marked "converged": false); 2 a bad config, log
    or output folder (nothing computed); 130 interrupted (report.json and fit.nc marked
    "complete": false, no summary.json).
    """
    log_path, source = log, config
    start = time.perf_counter()

    def prepare():  # every check on config, log and model before any fit
        cfg, data = load_fit_config(source), read_log(log_path, ragged=ragged)
        return cfg, data, build_fit(cfg, data, source=str(log_path)), check_output_dir(out)

    ready = checked("fit", prepare)
    if ready is None:
        return REFUSED
    config, log, setup, out = ready
    with output_lock(out, "lesde fit"):  # this fit's outputs replace the old ones
        remove_stale(out, [COMPLETE_MARKER, "report.json", "fit.nc", "fit.png", "closed_form.png"])
        return _fit_into(config, source, log, log_path, setup, out, start, progress)


def _fit_into(config, source, log, log_path, setup, out: Path, start: float, progress: bool) -> int:
    m = config.model
    times = np.asarray(setup.loss.times)
    fitted = int((times <= setup.fit_until).sum())
    print(
        f"lesde {__version__}: lesde fit of an {'LE-ODE' if m.kind == 'le_ode' else 'LE-SDE'} "
        f"({m.gradient!r} gradient, {m.impact.form} impact, {m.impact.time} in time) by "
        f"{config.loss.kind} loss to {log_path}: K = {log.sizes['class']}, "
        f"{setup.log.sizes['trial']} trials, {log.sizes['step']} steps; fit window "
        f"t <= {setup.fit_until:g} ({fitted} of {times.size} data times"
        f"{'' if setup.heldout else '; no held-out window'}); config: {source}"
    )
    if setup.knots_beyond_data:
        print("knots beyond the fit window's data times (their values extrapolate the "
              "neighbouring piece): " + ", ".join(f"{t:g}" for t in setup.knots_beyond_data))
    marker = out / COMPLETE_MARKER
    try:
        estimates, closed = closed_form_estimates(setup.log, config)
        try:
            result, report = run_fit(setup, config, progress=progress)
        except ValueError as e:  # e.g. a loss that is not finite at the starting parameters
            print(f"lesde fit: the fit failed: {e}", file=sys.stderr)
            return 1
        complete = result.stopped != "interrupted"
        ds = fit_dataset(setup, result, report["goodness"], estimates)
        ds.attrs["config"] = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        ds.attrs["log"] = str(log_path)
        ds.attrs.update(versions())
        full = {
            "complete": complete,
            "stopped": result.stopped,
            "converged": result.stopped == "converged",
            "log": str(log_path),
            "fit_until": setup.fit_until,
            "heldout_window": setup.heldout,
            "knots": setup.knots,
            "knots_beyond_data": list(setup.knots_beyond_data),
            "fit": report,
            "closed_form": closed,
            "config": config.model_dump(mode="json"),
            **versions(),
        }
        write_json(out / "report.json", full)
        kind = "LE-ODE" if m.kind == "le_ode" else "LE-SDE"
        write_netcdf(out / "fit.nc", describe(ds), title=f"lesde fit of an {kind} to the log {Path(log_path).name}")
        if not complete:
            print(
                f"lesde fit: interrupted at step {report['steps_run']} of "
                f"{config.optimizer.steps}; kept the best parameters so far (step "
                f"{report['best_step']}, loss {report['best_loss']:.4g}) without standard "
                f"errors in {out}/report.json and fit.nc, marked \"complete\": false (no "
                "summary.json); rerunning the same command starts the fit again",
                file=sys.stderr,
            )
            return INTERRUPTED
        written = ["report.json", "fit.nc", "fit.png"]
        close(plot_fit(ds, path=out / "fit.png"))  # figures are written atomically by _save
        if "A_hat" in ds.data_vars:
            close(plot_closed_form(ds, path=out / "closed_form.png"))
            written.append("closed_form.png")
        _print_fit_table(setup, result, report, closed)
        elapsed = time.perf_counter() - start
        summary = {
            "loss": report["loss"],
            "best_loss": report["best_loss"],
            "stopped": report["stopped"],
            "converged": full["converged"],
            "steps_run": report["steps_run"],
            **_goodness_summary(report["goodness"]),
            "tail_index": None if closed is None else closed.get("tail_index"),
            "wall_time_s": round(elapsed, 3),
            "version_lesde": __version__,
        }
        write_json(marker, summary)
    except KeyboardInterrupt:
        marker.unlink(missing_ok=True)
        print(
            "lesde fit: interrupted before the fit had parameters to keep or while writing "
            f"its outputs; {out}/ holds no complete run (no summary.json); rerunning the "
            "same command starts again",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(
        f"loss {report['best_loss']:.4g} ({report['loss']}), stopped: {report['stopped']} after "
        f"{report['steps_run']} steps; {elapsed:.1f} s; results in {out}/ "
        f"({', '.join(written)}, summary.json)"
    )
    if result.stopped == "nonfinite":
        print(
            f"lesde fit: the loss became non-finite at step {report['steps_run'] - 1}; the "
            f"outputs hold the best finite parameters (step {report['best_step']}) without "
            "standard errors, marked \"converged\": false",
            file=sys.stderr,
        )
        return 1
    return 0

