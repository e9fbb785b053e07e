"""The phase-diagram figure: one colour scale per metric across save times, labelled
colour bars, the fraction of flagged members only where a member was flagged, and axes
labelled by the swept parameters' paths."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from lesde.plot import plot_phase_diagram


def _result(flagged: bool) -> xr.Dataset:
    """A sweep result over alpha (3) x beta (2), 4 seeds, 2 save times, whose loss
    halves from the first save time to the second (so one scale per row would hide it)."""
    rng = np.random.default_rng(0)
    alpha, beta = np.array([0.5, 1.0, 1.5]), np.array([0.0, 0.2])
    loss = rng.uniform(1.0, 2.0, size=(3, 2, 4, 1)) * np.array([1.0, 0.5])
    acc = rng.uniform(0.3, 1.0, size=(3, 2, 4, 2))
    status = np.zeros((3, 2, 4), np.int8)
    if flagged:
        status[0, 1, 2] = 1
        loss[0, 1, 2] = acc[0, 1, 2] = np.nan
    dims = ("impact_alpha", "impact_beta", "seed")
    return xr.Dataset(
        {"loss": (dims + ("time",), loss), "accuracy": (dims + ("time",), acc),
         "status": (dims, status)},
        coords={"impact_alpha": ("impact_alpha", alpha, {"path": "impact.alpha"}),
                "impact_beta": ("impact_beta", beta, {"path": "impact.beta"}),
                "time": [10.0, 100.0]},
    )


def _meshes(fig):
    """(title, mesh) of each heat map, row by row."""
    return [(ax.get_title().split("\n")[0], ax.collections[0]) for ax in fig.axes
            if ax.collections and ax.get_xlabel()]


@pytest.mark.parametrize("flagged", [False, True])
def test_phase_diagram_scales_labels_and_flagged_panel(flagged):
    ds = _result(flagged)
    fig = plot_phase_diagram(ds)
    try:
        meshes = _meshes(fig)
        names = ["loss", "accuracy"] + (["fraction flagged"] if flagged else [])
        assert [t for t, _ in meshes] == names * 2  # two rows: the two save times
        for name in names:
            clims = {m.get_clim() for t, m in meshes if t == name}
            assert len(clims) == 1, (name, clims)  # one colour scale for both save times
            if name != "fraction flagged":
                lo, hi = clims.pop()
                mean = ds[name].mean("seed", skipna=False).values
                assert (lo, hi) == pytest.approx((np.nanmin(mean), np.nanmax(mean)))
        for title, mesh in meshes:
            assert mesh.colorbar.ax.get_ylabel() == title  # labelled colour bar
        axes = [ax for ax in fig.axes if ax.collections and ax.get_xlabel()]
        assert {ax.get_xlabel() for ax in axes} == {"impact.beta"}
        assert {ax.get_ylabel() for ax in axes} == {"impact.alpha"}
        # the loss panel of the later save time is darker: the halving is visible
        first, later = [m for t, m in meshes if t == "loss"]
        assert np.nanmean(later.norm(later.get_array())) < np.nanmean(first.norm(first.get_array()))
    finally:
        plt.close(fig)
