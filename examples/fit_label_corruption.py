"""Fit the label-corruption logs of `lesde train configs/train_label_corruption.yaml`
(GeoMNIST, K = 3, one log per corruption fraction p) with both methods, and draw the
impacts and the tail index against p.

    lesde train configs/train_label_corruption.yaml --out results/label_corruption
    python examples/fit_label_corruption.py results/label_corruption --out results/fit_label_corruption

For each log_p<p>.nc it runs `lesde fit LOG --config configs/fit_label_corruption.yaml`
(the closed-form identity inversion and the gradient fit of the identity-model LE-ODE
with alpha(t), beta(t) piecewise linear in time), into OUT/p<p>/, then writes
OUT/label_corruption_fit.png and OUT/label_corruption_fit.json:

- A and B, the intra- and inter-class impacts integrated over the later two thirds of
  the fit window, [T/3, T], by the closed-form inversion (increments of A_hat, B_hat)
  and by the gradient fit (integrals of the fitted alpha(t), beta(t)). The first third
  is left out because there the identity model trades the growth A against the size
  of the initial class-mean deviations (X(t) - mu ~ c exp((A - B)/K)): the
  closed form takes c from the first logged window, the gradient fit fits it;
- the tail index r_hat of A_hat (the LE-SDE authors read r_hat < 1 as separable);
- the final validation accuracy of the networks, from the logs.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import xarray as xr

import lesde
from lesde.cli import main as lesde_main
from lesde.io import read_log
from lesde.plot import _pyplot, _save

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "fit_label_corruption.yaml"


def _integral(ds: xr.Dataset, t_start: float, t_end: float) -> tuple[float, float]:
    """int alpha and int beta of the fitted E(t) = (alpha - beta) I + beta 1 1^T from
    t_start to t_end (trapezoids on the data times in between)."""
    sel = (ds["step"].values >= t_start) & (ds["step"].values <= t_end)
    t = ds["step"].values[sel]
    e = ds["impact"].values[sel]
    K = e.shape[-1]
    alpha = np.einsum("tkk->t", e) / K
    beta = (e.sum(axis=(1, 2)) - alpha * K) / (K * (K - 1))
    return float(np.trapezoid(alpha, t)), float(np.trapezoid(beta, t))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", help="directory with log_p<p>.nc files")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=str(CONFIG))
    args = ap.parse_args(argv)
    out = Path(args.out)
    logs = sorted(Path(args.logs).glob("log_p*.nc"))
    if not logs:
        print(f"no log_p*.nc files in {args.logs}", file=sys.stderr)
        return 2
    rows = []
    for path in logs:
        p = float(re.fullmatch(r"log_p([0-9.]+)\.nc", path.name).group(1))
        run = out / f"p{p:.4f}"
        if lesde_main(["fit", str(path), "--config", args.config, "--out", str(run), "--quiet"]) != 0:
            return 1
        report = json.loads((run / "report.json").read_text())
        ds = lesde.open_result(run / "fit.nc")
        t_end = float(report["fit_until"])
        t_start = t_end / 3
        a_fit, b_fit = _integral(ds, t_start, t_end)
        cf_sel = (ds["cf_step"].values >= t_start) & (ds["cf_step"].values <= t_end)
        cf = report["closed_form"]

        def increment(name):
            if name not in ds:
                return None
            v = ds[name].values[cf_sel]
            return float(v[-1] - v[0])

        log = read_log(path)
        rows.append({
            "p": p,
            "A_hat": increment("A_hat"),
            "B_hat": increment("B_hat"),
            "A_fit": a_fit,
            "B_fit": b_fit,
            "tail_index": cf.get("tail_index"),
            "r2_fit": report["fit"]["goodness"]["fit"]["r2"],
            "r2_heldout": report["fit"]["goodness"]["heldout"]["r2"],
            "relative_rmse_heldout": report["fit"]["goodness"]["heldout"]["relative_rmse"],
            "val_acc": float(np.median(log["val_acc"].values[:, -1])),
            "t_start": float(ds["cf_step"].values[cf_sel][0]),
            "t_end": float(ds["cf_step"].values[cf_sel][-1]),
        })
        ds.close()
    (out / "label_corruption_fit.json").write_text(json.dumps(rows, indent=2) + "\n")

    plt = _pyplot()
    p = np.array([r["p"] for r in rows])
    get = lambda k: np.array([np.nan if r[k] is None else r[k] for r in rows])  # noqa: E731
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    ax[0].plot(p, get("A_hat"), "o-", label="A_hat (closed form)")
    ax[0].plot(p, get("B_hat"), "s-", label="B_hat (closed form)")
    ax[0].plot(p, get("A_fit"), "o--", label="A (gradient fit)")
    ax[0].plot(p, get("B_fit"), "s--", label="B (gradient fit)")
    ax[0].axhline(0, color="grey", lw=0.5)
    ax[0].set_title(f"impacts integrated over steps {rows[0]['t_start']:g}-{rows[0]['t_end']:g}")
    ax[0].legend(fontsize=8)
    ax[1].plot(p, get("tail_index"), "o-")
    ax[1].axhline(1, color="grey", ls=":")
    ax[1].set_title("tail index r_hat of A_hat (< 1: separable)")
    ax[2].plot(p, get("val_acc"), "o-", label="validation accuracy (median)")
    ax[2].axhline(1 / 3, color="grey", ls=":", label="chance")
    ax[2].set_title("the networks")
    ax[2].legend(fontsize=8)
    for a in ax:
        a.axvline(2 / 3, color="red", lw=0.6, ls="--")
        a.set_xlabel("label corruption p")
        a.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out / "label_corruption_fit.png")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
