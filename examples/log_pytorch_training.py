"""Log the training of a small PyTorch CNN with `lesde.io.TrajectoryLogger`, then fit
an LE-ODE to the log with `lesde fit`.

    pip install 'lesde[torch]'
    python examples/log_pytorch_training.py --out results/pytorch_digits

It trains a few trials of a small CNN (two 3 x 3 convolutions with max pooling, then a
linear layer) on the first `--classes` digits of scikit-learn's 8 x 8 handwritten
digits (bundled with scikit-learn: nothing is downloaded) with plain SGD and batch
size 1, the way the LE-SDE authors train: at each step a training sample drawn at
random, its logits and loss before the update logged by `log.step`, and the
validation loss and accuracy every `--eval-every` steps and after the last update
logged by `log.validation`. The log is written row by row to OUT/log.csv (a run killed
part-way leaves the steps done so far) and converted to OUT/log.nc when the run ends.
Then it writes OUT/fit.yaml (the identity-model LE-ODE with locally elastic impacts
alpha, beta constant in time, fitted to the class-mean logits of `--window`-step
windows of the first 75% of the steps) and runs

    lesde fit OUT/log.nc --config OUT/fit.yaml --out OUT/fit

which writes report.json, fit.nc, fit.png, closed_form.png and summary.json (skipped
with --no-fit). (The
identity model's class means grow exponentially; the network's stop growing once its
training loss is small, so the prediction of the held-out last quarter overshoots.)
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from lesde.cli import main as lesde_main
from lesde.io import TrajectoryLogger


def _data(classes: int, seed: int):
    """The digits 0..classes-1 (8 x 8, scaled to [0, 1]) split into training and
    validation halves, class by class."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    keep = y < classes
    x, y = (x[keep] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), y[keep].astype(np.int64)
    rng = np.random.default_rng(seed)
    train = np.zeros(len(y), bool)
    for k in range(classes):
        idx = rng.permutation(np.flatnonzero(y == k))
        train[idx[: len(idx) // 2]] = True
    return x[train], y[train], x[~train], y[~train]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--classes", type=int, default=4, help="number of digit classes K")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--steps", type=int, default=600, help="SGD steps per trial")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    ap.add_argument("--window", type=int, default=20, help="steps per class-mean window of the fit")
    ap.add_argument("--fit-steps", type=int, default=300, help="optimiser steps of the fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fit", action="store_true", help="only train and log")
    args = ap.parse_args(argv)
    try:
        import torch
        from torch import nn
    except ImportError:
        print("this example needs PyTorch: pip install 'lesde[torch]'", file=sys.stderr)
        return 1

    class SmallCNN(nn.Module):
        def __init__(self, classes):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 8 x 4 x 4
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 2 x 2
                nn.Flatten(),
            )
            self.head = nn.Linear(64, classes)

        def forward(self, x):
            return self.head(self.features(x))

    K = args.classes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, x_val, y_val = _data(K, args.seed)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    x_val, y_val = torch.from_numpy(x_val), torch.from_numpy(y_val)
    loss_fn = nn.CrossEntropyLoss()
    torch.set_num_threads(1)  # batch size 1: threads cost more than they bring

    @torch.no_grad()
    def evaluate(net):
        z = net(x_val)
        return loss_fn(z, y_val).item(), (z.argmax(1) == y_val).float().mean().item()

    start = time.perf_counter()
    attrs = {"model": "SmallCNN", "data": f"sklearn digits 0..{K - 1}", "optimizer": "SGD, batch size 1",
             "learning_rate": args.lr, "seed": args.seed, "version_torch": torch.__version__}
    with TrajectoryLogger(out / "log.nc", num_classes=K, attrs=attrs, overwrite=True) as log:
        for trial in range(args.trials):
            torch.manual_seed(args.seed + trial)
            net = SmallCNN(K)
            opt = torch.optim.SGD(net.parameters(), lr=args.lr)
            draws = np.random.default_rng([args.seed, trial]).integers(len(y), size=args.steps)
            for t, i in enumerate(draws):
                if t % args.eval_every == 0:  # the state before update t
                    log.validation(trial, t, *evaluate(net))
                logits = net(x[i:i + 1])  # (1, K)
                loss = loss_fn(logits, y[i:i + 1])
                log.step(trial, t, i, y[i], logits, loss)  # before the update
                opt.zero_grad()
                loss.backward()
                opt.step()
            val_loss, val_acc = evaluate(net)
            log.validation(trial, args.steps, val_loss, val_acc)  # after the last update
            print(f"trial {trial}: validation loss {val_loss:.3f}, accuracy {val_acc:.3f}")
    print(f"logged {args.trials} trials x {args.steps} steps in {time.perf_counter() - start:.1f} s: "
          f"{log.path} (rows in {log.csv_path})")

    config = {
        "data": {"window": args.window, "fit_until": 0.75},
        "model": {"kind": "le_ode", "gradient": "identity", "fit_initial": True,
                  "impact": {"form": "alpha_beta", "time": "constant", "alpha": 1e-3, "beta": 0.0}},
        "loss": {"kind": "class_mean", "num_steps": 100},
        "optimizer": {"method": "lbfgs", "steps": args.fit_steps, "patience": 50},
        "uncertainty": {"method": "curvature"},
        "closed_form": {"estimator": "identity", "savgol_window": 5, "tail_last": 0.5},
    }
    (out / "fit.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if args.no_fit:
        return 0
    return lesde_main(["fit", str(log.path), "--config", str(out / "fit.yaml"),
                       "--out", str(out / "fit"), "--quiet"])


if __name__ == "__main__":
    sys.exit(main())
