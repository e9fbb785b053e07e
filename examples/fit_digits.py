"""Fit a full 10 x 10 impact matrix to the digits log of
`lesde train configs/train_digits_trajectories.yaml` and compare it with the impact
matrix measured from the network's tangent kernel at the same checkpoints.

    lesde train configs/train_digits_trajectories.yaml --out results/digits
    python examples/fit_digits.py results/digits/log_p0.0000.nc --out results/fit_digits

It runs `lesde fit LOG --config configs/fit_digits.yaml --out OUT` (the LE-SDE of the
softmax cross-entropy model, E(t) piecewise linear with knots at the log's impact
steps), then compares, at each impact step t_c, the fitted E(t_c) with the trial mean
of the log's `impact` (E_hat, the learning rate times the class-averaged empirical
tangent kernel, in the same units: per SGD step). It writes OUT/digits_impact.png and
OUT/digits_impact.json: per checkpoint the mean diagonal (alpha) and off-diagonal
(beta) entries of both, their ratio, and the correlation of the 100 entries.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import lesde
from lesde.cli import main as lesde_main
from lesde.io import read_log
from lesde.plot import _pyplot, _save, draw_matrix

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "fit_digits.yaml"


def _fitted_impact(run: Path, steps: np.ndarray) -> np.ndarray:
    """E(t) of the fit at `steps`: interpolated linearly from fit.nc's E at the data
    times (E is piecewise linear between knots; between data times this is exact when
    the knots are data times or steps beyond them, else a close interpolation)."""
    ds = lesde.open_result(run / "fit.nc")
    t, e = ds["step"].values, ds["impact"].values
    out = np.stack([
        np.stack([np.interp(steps, t, e[:, i, j]) for j in range(e.shape[2])], -1)
        for i in range(e.shape[1])
    ], 1)
    ds.close()
    return out


def _summary(e: np.ndarray) -> dict:
    K = e.shape[-1]
    off = ~np.eye(K, dtype=bool)
    a, b = float(np.trace(e)) / K, float(e[off].mean())
    return {"alpha": a, "beta": b, "ratio": a / b if b else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=str(CONFIG))
    args = ap.parse_args(argv)
    out = Path(args.out)
    log = read_log(args.log)
    if "impact" not in log:
        print("the log has no tangent-kernel impact (train with impact_checkpoints > 0)", file=sys.stderr)
        return 2
    if lesde_main(["fit", args.log, "--config", args.config, "--out", str(out), "--quiet"]) != 0:
        return 1
    report = json.loads((out / "report.json").read_text())
    steps = log["impact_step"].values.astype(float)
    ntk = log["impact"].mean("trial").values  # (checkpoint, K, K)
    fitted = _fitted_impact(out, steps)
    t_fit = float(report["fit_until"])
    rows = []
    for t, en, ef in zip(steps, ntk, fitted):
        rows.append({
            "step": float(t),
            "in_fit_window": bool(t <= t_fit),
            "ntk": _summary(en),
            "fit": _summary(ef),
            "entry_correlation": float(np.corrcoef(en.ravel(), ef.ravel())[0, 1]),
            "offdiag_correlation": float(np.corrcoef(en[~np.eye(len(en), dtype=bool)],
                                                     ef[~np.eye(len(ef), dtype=bool)])[0, 1]),
        })
    (out / "digits_impact.json").write_text(json.dumps(rows, indent=2) + "\n")

    plt = _pyplot()
    n = len(steps)
    fig, ax = plt.subplots(2, n + 1, figsize=(3.2 * (n + 1), 6.2))
    for c in range(n):
        for r, (e, name) in enumerate(((ntk[c], "tangent kernel"), (fitted[c], "fit"))):
            held = "" if rows[c]["in_fit_window"] else " (held out)"
            draw_matrix(ax[r, c], e, title=f"{name}, step {steps[c]:g}{held}", label="impact per step")
    for r, key in enumerate(("alpha", "beta")):
        a = ax[r, n]
        a.plot(steps, [x["ntk"][key] for x in rows], "o-", label="tangent kernel")
        a.plot(steps, [x["fit"][key] for x in rows], "s--", label="fit")
        a.set_xscale("symlog", linthresh=100)
        a.set_title(f"mean {'diagonal (alpha)' if key == 'alpha' else 'off-diagonal (beta)'}", fontsize=9)
        a.set_xlabel("SGD step")
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out / "digits_impact.png")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
