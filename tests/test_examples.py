"""The example gallery runs: each script of examples/ on small sizes, on synthetic
training logs planted from an exact identity LE-ODE (so the logged class means are the
closed form) and a small fit config. (examples/log_pytorch_training.py is run by
tests/test_logger.py where PyTorch is installed.)"""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

import lesde
from lesde.io import make_log, write_log

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
K, TRIALS, STEPS = 3, 3, 200
ALPHA, BETA = 4e-3, 1e-3
X0 = np.array([[1.0, -0.3, 0.2], [-0.4, 0.8, 0.1], [0.2, 0.1, -0.9]])


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _planted_log(alpha=ALPHA, beta=BETA, impact_steps=None):
    """Trial r draws a sample of class (r + t) mod K at step t, whose logits are the
    class mean of the identity LE-ODE with impacts alpha, beta; validation every 50
    steps; with `impact_steps`, the planted impact matrix as the measured one."""
    model = lesde.LEODE(lesde.LocallyElastic(alpha, beta), "identity", K)
    ts = jnp.arange(STEPS, dtype=float)
    xbar = np.asarray(jax.vmap(lambda t: lesde.closed_form(model, jnp.asarray(X0), t))(ts))
    label = (np.arange(TRIALS)[:, None] + np.arange(STEPS)[None, :]) % K
    evals = np.arange(0, STEPS + 1, 50)
    log = make_log(
        label, label, xbar[np.arange(STEPS)[None, :], label], np.zeros((TRIALS, STEPS)),
        np.ones((TRIALS, evals.size)), np.full((TRIALS, evals.size), 0.9), eval_steps=evals,
    )
    if impact_steps is not None:
        # the planted matrix, its entries made distinct (their correlation is reported)
        e = (alpha - beta) * np.eye(K) + beta + 1e-5 * np.arange(K * K).reshape(K, K)
        log = log.assign(impact=(("trial", "impact_step", "class_row", "class_col"),
                                 np.broadcast_to(e, (TRIALS, len(impact_steps), K, K)).astype(np.float32)))
        log = log.assign_coords(impact_step=np.asarray(impact_steps, np.int32))
    return log


def _config(tmp_path, impact: dict) -> Path:
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"window": 4, "fit_until": 0.75},
        "model": {"kind": "le_ode", "gradient": "identity", "fit_initial": False, "impact": impact},
        "loss": {"kind": "class_mean", "num_steps": 50},
        "optimizer": {"steps": 40, "learning_rate": 0.1, "patience": None},
        "closed_form": {"estimator": "identity", "savgol_window": 11},
    }))
    return path


def test_label_corruption_example(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for p, (a, b) in {0.0: (ALPHA, BETA), 0.5: (2e-3, 1e-3)}.items():
        write_log(_planted_log(a, b), logs / f"log_p{p:.4f}.nc")
    cfg = _config(tmp_path, {"form": "alpha_beta", "time": "constant", "alpha": 1e-3, "beta": 0.0})
    out = tmp_path / "out"
    assert _example("fit_label_corruption").main([str(logs), "--out", str(out), "--config", str(cfg)]) == 0
    rows = json.loads((out / "label_corruption_fit.json").read_text())
    assert [r["p"] for r in rows] == [0.0, 0.5]
    for r, (a, b) in zip(rows, [(ALPHA, BETA), (2e-3, 1e-3)]):
        span = r["t_end"] - r["t_start"]
        # the planted constant impacts, integrated over the window the example reports
        assert r["A_fit"] == np.float64(r["A_fit"]) and abs(r["A_fit"] - a * span) < 0.2 * a * span
        assert abs(r["B_fit"] - b * span) < 0.2 * a * span
        assert r["val_acc"] == np.float32(0.9) and r["r2_fit"] > 0.99
    assert (out / "label_corruption_fit.png").stat().st_size > 10_000
    assert (out / "p0.0000" / "fit.nc").is_file() and (out / "p0.5000" / "summary.json").is_file()


def test_digits_example(tmp_path):
    steps = [0, 50, 150]
    log = write_log(_planted_log(impact_steps=steps), tmp_path / "log_p0.0000.nc")
    cfg = _config(tmp_path, {"form": "general", "time": "piecewise_linear", "knots": steps,
                             "alpha": 1e-3, "beta": 0.0})
    out = tmp_path / "out"
    assert _example("fit_digits").main([str(log), "--out", str(out), "--config", str(cfg)]) == 0
    rows = json.loads((out / "digits_impact.json").read_text())
    assert [r["step"] for r in rows] == steps
    report = json.loads((out / "report.json").read_text())
    assert [r["in_fit_window"] for r in rows] == [t <= report["fit_until"] for t in steps]
    for r in rows:
        assert abs(r["ntk"]["alpha"] - ALPHA) < 1e-4 and abs(r["ntk"]["beta"] - BETA) < 1e-4
        assert np.isfinite(r["entry_correlation"])
    # the fitted E(t) at the first checkpoint is that of the planted impacts
    assert abs(rows[1]["fit"]["alpha"] - ALPHA) < 0.3 * ALPHA
    assert (out / "digits_impact.png").stat().st_size > 10_000
