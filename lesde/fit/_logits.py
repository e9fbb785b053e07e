"""Class-mean logits of trajectory logs: the windowed pooling of rows that the
closed-form estimators and the fits of class means read."""

import numpy as np
import xarray as xr

from ..io import check_log


def window_rows(ds: xr.Dataset, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a log pooled in windows of `window` consecutive steps (a trailing
    partial window dropped): the class one-hot a (window, class, rows), the float64
    logits b (window, rows, logit), and each window's mean step. Per-class sums of
    the logits are a @ b, the row counts a.sum(-1)."""
    ds = check_log(ds)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    T, S, K = ds.sizes["trial"], ds.sizes["step"], ds.sizes["class"]
    w = int(window)
    n = S // w
    if n == 0:
        raise ValueError(f"window = {w} is longer than the log's {S} steps")
    labels = ds["label"].values[:, : n * w].reshape(T, n, w)
    logits = ds["logits"].values[:, : n * w].astype(np.float64).reshape(T, n, w, K)
    onehot = (labels[..., None] == np.arange(K)).astype(np.float64)  # (T, n, w, K)
    a = onehot.transpose(1, 3, 0, 2).reshape(n, K, T * w)  # (window, class, rows)
    b = logits.transpose(1, 0, 2, 3).reshape(n, T * w, K)  # (window, rows, logit)
    steps = ds["step"].values[: n * w]
    return a, b, steps if w == 1 else steps.reshape(n, w).mean(axis=1)


def class_mean_logits(ds: xr.Dataset, *, window: int = 1) -> xr.DataArray:
    """The class-mean logit trajectories of a log, as the LE-SDE authors compute them.

    For window = 1: Xbar_k(t)[j] = mean of logits[trial, t, j] over the trials whose
    label at step t is k. For window = w > 1 the steps are pooled in non-overlapping
    windows of w consecutive steps (a trailing partial window is dropped) and the mean
    runs over all rows of all trials in the window with label k; the `step` coordinate
    becomes the mean step of each window. Returns a float64 DataArray with dims
    (`step`, `class`, `logit`), NaN where no row has label k, and the number of rows
    averaged as the non-dimension coordinate `count` (step, class).
    """
    a, b, step = window_rows(ds, window)
    w = int(window)
    sums = a @ b  # (window, class, logit)
    counts = a.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts[..., None] > 0, sums / counts[..., None], np.nan)
    K = ds.sizes["class"]
    return xr.DataArray(
        means,
        dims=("step", "class", "logit"),
        coords={
            "step": step,
            "class": np.arange(K),
            "logit": np.arange(K),
            "count": (("step", "class"), counts.astype(np.int64)),
        },
        name="class_mean_logits",
        attrs={"window": w},
    )
