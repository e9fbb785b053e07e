"""`read_phase_diagram` on synthetic phase diagrams whose boundary and accuracy are known
exactly, and `plot_noise_nonlinearity` on them."""

import numpy as np
import pytest
import xarray as xr

from lesde.nets import NOISE_AXES, read_phase_diagram

SLOPES = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def synthetic(axis="data_noise", values=None, seeds=4, jitter=0.0, seed=0):
    """Curvature c = position - (0.73 - 0.5 a) (concave below the diagonal boundary
    0.73 - 0.5 a, convex above; position: the noise, or -log10 of a batch size mapped to
    the same range), accuracy 0.9 - |c|; seed noise of std `jitter` on both."""
    if values is None:
        values = np.linspace(0.0, 0.8, 9)
    values = np.asarray(values, float)
    direction, log = NOISE_AXES[axis]
    pos = np.log10(values) if log else values
    noise = (pos - pos.min()) / np.ptp(pos) * 0.8 if direction > 0 else (pos.max() - pos) / np.ptp(pos) * 0.8
    rng = np.random.default_rng(seed)
    c = noise[None, :, None] - (0.73 - 0.5 * SLOPES)[:, None, None] + jitter * rng.normal(size=(6, values.size, seeds))
    acc = 0.9 - np.abs(c) + jitter * rng.normal(size=c.shape)
    dims = ("negative_slope", axis, "seed", "epoch")
    layer = np.linspace(1, 0, 4)
    return xr.Dataset(
        {"curvature": (dims, c[..., None]), "test_acc": (dims, acc[..., None]),
         "curve": (dims + ("layer",), np.broadcast_to(layer, c[..., None].shape + (4,)).copy())},
        coords={"negative_slope": SLOPES, axis: values, "seed": np.arange(seeds), "epoch": [10], "layer": np.arange(4)},
        attrs={"dataset": "synthetic", "measure": "log_trace_ratio"},
    )


def test_noiseless_diagonal_boundary_is_read_exactly():
    r = read_phase_diagram(synthetic(), resamples=50)
    want = 0.73 - 0.5 * SLOPES
    np.testing.assert_allclose(r["crossing"], want, atol=1e-6)  # rounded to 6 decimals
    assert r["boundary_rank_correlation"]["value"] == pytest.approx(-1.0)
    # accuracy = 0.9 - |c|: perfectly anti-ranked with |c| in every row, best cell = most linear
    assert r["mean_rank_correlation"]["value"] == pytest.approx(-1.0, abs=1e-2)  # |c| ties in float
    assert r["mean_abs_offset"]["value"] == 0.0
    assert all(v == 0 for v in r["best_minus_linear"])
    # the best cell is the grid cell nearest the crossing: within half a grid step (0.05)
    assert all(abs(v) <= 0.05 + 1e-9 for v in r["best_minus_crossing"])
    assert abs(r["mean_best_minus_crossing"]["value"]) <= 0.05
    c = np.asarray(r["curvature"])
    assert r["convex_fraction"]["value"] == pytest.approx(np.mean(c > 0))
    assert r["positions"] == sorted(r["positions"]) and r["position_scale"] == "linear"


def test_batch_size_axis_is_read_with_small_batches_as_more_noise():
    sizes = [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560]
    r = read_phase_diagram(synthetic("batch_size", sizes), resamples=50)
    assert r["positions"] == sorted(sizes, reverse=True) and r["position_scale"] == "log10"
    # positions are log10(batch size), decreasing with noise; the crossing is where
    # the synthetic noise 0.8 (log10 2560 - p) / log10(512) equals 0.73 - 0.5 a
    want = np.log10(2560) - (0.73 - 0.5 * SLOPES) / 0.8 * np.log10(512)
    finite = [float(v) for v in r["crossing"]]
    np.testing.assert_allclose(finite, want, atol=1e-6)
    assert r["boundary_rank_correlation"]["value"] == pytest.approx(1.0)  # log size grows with a
    # accuracy 0.9 - |c| peaks at the crossing: the best cell lies within half a grid step
    # (log10 2 / 2) of it, signed along the noise
    assert all(abs(v) <= np.log10(2) / 2 + 1e-6 for v in r["best_minus_crossing"])


def test_seed_noise_gives_intervals_that_contain_the_truth():
    r = read_phase_diagram(synthetic(jitter=0.05, seeds=10, seed=3), resamples=300, seed=1)
    for name in ("mean_rank_correlation", "boundary_rank_correlation"):
        e = r[name]
        assert e["low"] <= e["value"] <= e["high"]
        assert e["value"] < -0.8
    assert r["mean_abs_offset"]["low"] <= r["mean_abs_offset"]["value"] <= r["mean_abs_offset"]["high"]


def test_rows_without_a_crossing_are_marked_infinite():
    ds = synthetic()
    ds["curvature"][:] = ds["curvature"] - 5.0  # concave everywhere
    r = read_phase_diagram(ds, resamples=20)
    assert r["crossing"] == ["+inf"] * 6
    assert r["boundary_rank_correlation"]["value"] is None
    ds["curvature"][:] = ds["curvature"] + 10.0  # convex everywhere
    assert read_phase_diagram(ds, resamples=20)["crossing"] == ["-inf"] * 6


def test_a_result_that_is_not_a_two_axis_phase_diagram_is_refused():
    ds = synthetic()
    with pytest.raises(ValueError, match="exactly two swept axes"):
        read_phase_diagram(ds.isel(data_noise=0, drop=True))
    with pytest.raises(ValueError, match="confidence"):
        read_phase_diagram(ds, confidence=1.5)


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_noise_nonlinearity_figure(tmp_path, fmt):
    from lesde.plot import close, plot_noise_nonlinearity

    panels = {"(a)": synthetic(), "(b)": synthetic("batch_size", [10, 40, 160, 640])}
    path = tmp_path / f"phase.{fmt}"
    fig = plot_noise_nonlinearity(panels, path)
    assert path.stat().st_size > 1000
    ax = fig.axes[0]
    # columns with more noise first (left), as the paper
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "0.8" and labels[-1] == "0"
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()][0] == "10"
    close(fig)
    with pytest.raises(ValueError, match="negative_slope and one noise axis"):
        plot_noise_nonlinearity({"x": synthetic().isel(negative_slope=0, drop=True)})


@pytest.mark.parametrize("axis, values", [("data_noise", None), ("batch_size", [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560])])
def test_best_cell_beyond_the_boundary_reads_positive_on_every_axis(axis, values):
    """Accuracy peaking where the load curve is already convex (c = +0.2: more noise than
    the crossing) gives best_minus_crossing > 0, on the batch-size axis too."""
    ds = synthetic(axis, values)
    ds["test_acc"][:] = 0.9 - np.abs(ds["curvature"] - 0.2)
    r = read_phase_diagram(ds, resamples=20)
    assert r["mean_best_minus_crossing"]["value"] > 0
    assert all(v > 0 for v in r["best_minus_crossing"] if v is not None)


def test_separation_grid_draws_the_measure_curve_by_default(tmp_path):
    """`plot_separation_grid` draws the result's `curve` (the load curve of its measure)
    unless told another variable, and says which."""
    from lesde.plot import close, plot_separation_grid

    ds = synthetic()
    ds["D_trace"] = ds["curve"] * 2.0 + 1.0
    fig = plot_separation_grid(ds, tmp_path / "grid.png")
    titles = [t.get_text() for sub in fig.subfigs for t in sub.texts]
    assert any("load curves of log trace ratio" in t for t in titles), titles
    close(fig)
    fig = plot_separation_grid(ds, tmp_path / "grid_d.png", variable="D_trace")
    assert not any("log trace ratio" in t.get_text() for sub in fig.subfigs for t in sub.texts)
    close(fig)


def test_the_two_normalisations_of_the_drawn_curves(tmp_path):
    """'cell' min-max normalises each cell's curve; 'panel' draws the measure (here log
    D_tr) on one range for all cells, so a cell that separates half as much spans half
    the height; the figures say which they draw."""
    from lesde.plot import _drawn_curves, close, plot_noise_nonlinearity, plot_separation_grid

    ds = synthetic()
    layer = np.exp(np.linspace(1.0, 0.0, 4))  # D_tr from e to 1: log D_tr from 1 to 0
    scale = np.where(ds["negative_slope"].values == 1.0, 0.5, 1.0)  # a = 1 separates half as much
    d_trace = np.exp(np.log(layer)[None, None, None, None, :] * scale[:, None, None, None, None])
    ds["D_trace"] = (ds["curve"].dims, np.broadcast_to(d_trace, ds["curve"].shape).copy())
    dims = ["negative_slope", "data_noise"]
    cell = _drawn_curves(ds, 10, dims, "cell")
    np.testing.assert_allclose(cell[..., 0], 1.0)
    np.testing.assert_allclose(cell[..., -1], 0.0)
    panel = _drawn_curves(ds, 10, dims, "panel")
    np.testing.assert_allclose(panel[:-1, :, 0], 1.0)  # a < 1: from 1 to 0
    np.testing.assert_allclose(panel[-1, :, 0], 0.5)   # a = 1: from 0.5 to 0
    np.testing.assert_allclose(panel[..., -1], 0.0, atol=1e-12)
    fig = plot_noise_nonlinearity({"(a)": ds}, tmp_path / "p.png", normalisation="panel")
    assert "on one range for all cells" in fig._suptitle.get_text()
    close(fig)
    fig = plot_separation_grid(ds, tmp_path / "g.png", normalisation="panel")
    assert any("on one range" in t.get_text() for sub in fig.subfigs for t in sub.texts)
    close(fig)
    with pytest.raises(ValueError, match="normalisation"):
        plot_noise_nonlinearity({"(a)": ds}, normalisation="global")
