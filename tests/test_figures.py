"""The figures: one colour scale per metric across save times, colour bars labelled with
the metric's long name and units, the fraction of flagged members only where a member
was flagged, axes named by the parameter registry (alpha - beta where alpha and beta
are zipped), the theory line in a legend, categories and signed values on diverging
maps centred at 0, and the load-curve grid's shape legend and value labels."""

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
        names = ["training loss (cross-entropy)", "training accuracy"] + (
            ["fraction of members flagged"] if flagged else [])
        assert [t for t, _ in meshes] == names * 2  # two rows: the two save times
        for name in names:
            clims = {m.get_clim() for t, m in meshes if t == name}
            assert len(clims) == 1, (name, clims)  # one colour scale for both save times
            if not name.startswith("fraction"):
                lo, hi = clims.pop()
                var = {"training loss (cross-entropy)": "loss", "training accuracy": "accuracy"}[name]
                mean = ds[var].mean("seed", skipna=False).values
                assert (lo, hi) == pytest.approx((np.nanmin(mean), np.nanmax(mean)))
        for title, mesh in meshes:
            assert mesh.colorbar.ax.get_ylabel() == title  # labelled colour bar
        axes = [ax for ax in fig.axes if ax.collections and ax.get_xlabel()]
        # axes named by the parameter registry (this result has no long names)
        assert {ax.get_xlabel() for ax in axes} == {"inter-class impact β"}
        assert {ax.get_ylabel() for ax in axes} == {"intra-class impact α"}
        # the loss panel of the later save time is darker: the halving is visible
        first, later = [m for t, m in meshes if t.startswith("training loss")]
        assert np.nanmean(later.norm(later.get_array())) < np.nanmean(first.norm(first.get_array()))
    finally:
        plt.close(fig)


def _gap_result():
    """A sweep of alpha and beta zipped with alpha + 2 beta = 0 (alpha - beta from -0.3 to
    0.3) against the noise, with CF names as `lesde sweep` writes them, a signed metric
    and the load-curve shape code as a category."""
    alpha = np.linspace(-0.2, 0.2, 5)
    beta = -alpha / 2
    noise = np.array([0.01, 0.1])
    rng = np.random.default_rng(1)
    dims = ("impact_alpha", "noise_independent", "seed")
    return xr.Dataset(
        {
            "min_margin": (dims, rng.normal(size=(5, 2, 3)),
                           {"long_name": "minimum logit margin", "units": "1"}),
            "shape": (dims, rng.integers(-1, 2, size=(5, 2, 3)).astype(float),
                      {"long_name": "load-curve shape", "units": "1", "flag_values": [-1.0, 0.0, 1.0],
                       "flag_meanings": "concave linear convex"}),
            "within_class_trace": (dims, rng.uniform(1, 2, size=(5, 2, 3)),
                                   {"long_name": "within-class trace", "units": "m2"}),
            "status": (dims, np.zeros((5, 2, 3), np.int32)),
        },
        coords={
            "impact_alpha": ("impact_alpha", alpha, {"path": "impact.alpha", "long_name": "intra-class impact α"}),
            "impact_beta": ("impact_alpha", beta, {"path": "impact.beta", "long_name": "inter-class impact β"}),
            "noise_independent": ("noise_independent", noise,
                                  {"path": "noise.independent", "long_name": "independent noise σ"}),
        },
        attrs={"config": "model: {impact: {alpha: 0.0, beta: 0.0}}\n"},
    )


def test_phase_diagram_names_gap_axis_categories_and_signs(tmp_path):
    ds = _gap_result()
    fig = plot_phase_diagram(ds, path=tmp_path / "p.svg")
    try:
        assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")
        meshes = dict(_meshes(fig))
        assert set(meshes) == {"minimum logit margin", "load-curve shape", "within-class trace [m2]"}
        axes = [ax for ax in fig.axes if ax.collections and ax.get_xlabel()]
        assert {ax.get_ylabel() for ax in axes} == {"α - β (intra- minus inter-class impact)"}
        assert {ax.get_xlabel() for ax in axes} == {"independent noise σ"}
        # alpha - beta on the axis: 1.5 alpha, from -0.3 to 0.3; the theory line at 0
        ax = axes[0]
        assert ax.get_ylim()[0] < -0.3 and ax.get_ylim()[1] > 0.3
        assert [tuple(line.get_ydata()) for line in ax.lines] == [(0.0, 0.0)]
        legend = fig.legends[0]
        assert [t.get_text() for t in legend.get_texts()] == ["theory: α = β"]
        # a category: its names on the colour bar, a diverging map centred at 0
        shape = meshes["load-curve shape"]
        assert [t.get_text() for t in shape.colorbar.ax.get_yticklabels()] == ["concave", "linear", "convex"]
        assert shape.get_cmap().name == "RdBu_r" and shape.norm.vcenter == 0
        # a signed metric: a diverging map centred at 0; a positive one: not
        margin = meshes["minimum logit margin"]
        assert margin.get_cmap().name == "RdBu_r" and margin.norm.vcenter == 0
        assert meshes["within-class trace [m2]"].get_cmap().name != "RdBu_r"
        assert meshes["within-class trace [m2]"].colorbar.ax.get_ylabel() == "within-class trace [m2]"
    finally:
        plt.close(fig)


def test_load_curve_grid_has_a_shape_legend_and_labels():
    from lesde.plot import plot_load_curves

    rng = np.random.default_rng(2)
    dims = ("mu_fwd", "noise", "seed")
    ds = xr.Dataset(
        {"gains": (dims + ("block",), rng.uniform(0.1, 1.0, size=(2, 3, 2, 4))),
         "status": (dims, np.zeros((2, 3, 2), np.int32))},
        coords={"mu_fwd": ("mu_fwd", [0.1, 0.2], {"path": "mu_fwd"}),
                "noise": ("noise", [0.01, 0.1, 1.0], {"path": "noise"}), "block": [1, 2, 3, 4]},
    )
    fig = plot_load_curves(ds)
    try:
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["concave", "linear", "convex"]
        sub = fig.subfigs[0]
        assert sub._supxlabel.get_text() == "noise level s"
        assert sub._supylabel.get_text() == "friction μ_fwd"
        values = {ax.get_xlabel() for ax in sub.axes} - {""}
        assert values == {"0.01", "0.1", "1"}  # each column labelled with its value
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------
# every figure kind: rendered in each format, every panel with data labelled

MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}


def _log(trials=3, steps=40, K=3, evals=(0, 20, 40)):
    from lesde.io import make_log

    rng = np.random.default_rng(3)
    labels = rng.integers(0, K, size=(trials, steps)).astype(np.int32)
    return make_log(
        rng.integers(0, 30, size=(trials, steps)).astype(np.int32), labels,
        rng.normal(size=(trials, steps, K)).astype(np.float32),
        rng.uniform(0.1, 2, size=(trials, steps)).astype(np.float32),
        rng.uniform(0.1, 2, size=(trials, len(evals))).astype(np.float32),
        rng.uniform(0, 1, size=(trials, len(evals))).astype(np.float32),
        eval_steps=np.asarray(evals),
    )


def _separation():
    rng = np.random.default_rng(4)
    dims = ("negative_slope", "data_noise", "seed", "epoch", "layer")
    d = np.sort(rng.uniform(0.1, 1, size=(2, 3, 2, 2, 5)), axis=-1)[..., ::-1]
    return xr.Dataset(
        {"D_trace": (dims, d), "test_acc": (dims[:-1], rng.uniform(0.5, 1, size=(2, 3, 2, 2)))},
        coords={"negative_slope": [0.0, 0.5], "data_noise": [0.0, 0.1, 0.2], "epoch": [0, 10]},
    )


def _fit_result():
    rng = np.random.default_rng(5)
    T, K = 12, 3
    steps = np.arange(T) * 10.0
    ds = xr.Dataset(
        {"data": (("step", "class", "logit"), rng.normal(size=(T, K, K))),
         "model": (("step", "class", "logit"), rng.normal(size=(T, K, K))),
         "A_hat": ("cf_step", np.linspace(0, 2, T)), "B_hat": ("cf_step", np.linspace(0, -1, T)),
         "alpha_hat": ("cf_step", np.full(T, 0.2)), "beta_hat": ("cf_step", np.full(T, -0.1))},
        coords={"step": steps, "heldout": ("step", steps > 80), "cf_step": steps},
        attrs={"loss": "ClassMeanLoss", "fit_until": 80.0, "closed_form_estimator": "identity"},
    )
    return ds


def _figures():
    from lesde import plot as P

    log = _log()
    return {
        "phase_diagram": lambda path: P.plot_phase_diagram(_result(True), path=path),
        "phase_diagram_1d": lambda path: P.plot_phase_diagram(_result(False).isel(impact_beta=0), path=path),
        "load_curves": lambda path: P.plot_load_curves(xr.Dataset(
            {"gains": (("mu_fwd", "noise", "seed", "block"), np.random.default_rng(6).uniform(0.1, 1, (2, 2, 2, 4))),
             "status": (("mu_fwd", "noise", "seed"), np.zeros((2, 2, 2), np.int32))},
            coords={"mu_fwd": ("mu_fwd", [0.1, 0.2], {"path": "mu_fwd"}),
                    "noise": ("noise", [0.1, 1.0], {"path": "noise"})}), path=path),
        "spring_run": lambda path: P.plot_spring_run(
            np.arange(5.0), np.cumsum(np.ones((2, 5, 3)), axis=-1),
            theory={"elongations": [1.0, 1.0, 1.0, 1.0], "kind": "mean-field stationary state"}, path=path),
        "logit_trajectories": lambda path: P.plot_logit_trajectories({"p = 0": log, "p = 0.5": log}, path=path, window=4),
        "validation": lambda path: P.plot_validation({"p = 0": log, "p = 0.5": log}, path=path),
        "separation_grid": lambda path: P.plot_separation_grid(_separation(), path=path),
        "fit": lambda path: P.plot_fit(_fit_result(), path=path),
        "closed_form": lambda path: P.plot_closed_form(_fit_result(), path=path),
        "impact_matrix": _matrix_figure,
    }


def _matrix_figure(path):
    from lesde.plot import _save, draw_matrix

    fig, ax = plt.subplots()
    e = np.array([[0.3, -0.1, 0.05], [-0.1, 0.2, 0.0], [0.02, -0.3, 0.4]])
    draw_matrix(ax, e, title="fitted E", label="impact per step")
    _save(fig, path)
    return fig


def test_signed_matrices_are_centred_at_zero_with_class_labels():
    from lesde.plot import draw_matrix

    fig, ax = plt.subplots()
    try:
        im = draw_matrix(ax, [[0.3, -0.1], [-0.5, 0.2]])
        assert im.get_cmap().name == "RdBu_r" and im.norm.vcenter == 0
        assert im.norm.vmin == pytest.approx(-0.5) and im.norm.vmax == pytest.approx(0.5)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1"]
        assert ax.get_xlabel() == "class of the updated sample" and ax.get_ylabel() == "impacted class"
        assert im.colorbar.ax.get_ylabel() == "impact"
        with pytest.raises(ValueError, match="K x K"):
            draw_matrix(ax, np.zeros((2, 3)))
    finally:
        plt.close(fig)


def test_validation_shows_the_chance_level_in_its_legend():
    from lesde.plot import plot_validation

    fig = plot_validation({"p = 0": _log(K=4)})
    try:
        texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "chance (1/K = 0.25)" in texts and "p = 0" in texts
    finally:
        plt.close(fig)


def _labelled(fig) -> list[str]:
    """What is unlabelled: a panel with data but no axis labels (a panel of a grid of
    small curves is labelled by its subfigure's sup-labels), a colour bar with no label."""
    missing = []
    for ax in fig.axes:
        has_data = bool(ax.lines or ax.collections or ax.images or ax.patches)
        if not has_data or not ax.get_visible() or not ax.axison:
            continue
        if ax.get_label() == "<colorbar>":
            if not (ax.get_ylabel() or ax.get_xlabel()):
                missing.append("a colour bar")
            continue
        sub = ax.get_figure(root=False)
        grid = sub is not fig and sub._supxlabel is not None and sub._supylabel is not None
        row_labelled = any(o.get_ylabel() for o in fig.axes if o.get_subplotspec() is not None
                           and ax.get_subplotspec() is not None
                           and o.get_subplotspec().rowspan == ax.get_subplotspec().rowspan)
        if not grid and not (ax.get_xlabel() or ax.get_title()) :
            missing.append(f"x of {ax.get_title()!r}")
        if not grid and not (ax.get_ylabel() or row_labelled):
            missing.append(f"y of {ax.get_title()!r}")
    return missing


@pytest.mark.parametrize("kind", list(_figures()))
def test_every_figure_kind_is_labelled_and_written_in_each_format(kind, tmp_path):
    draw = _figures()[kind]
    for i, ext in enumerate((".png", ".pdf", ".svg")):
        path = tmp_path / "sub" / f"{kind}{ext}"  # a missing folder is created
        fig = draw(path)
        try:
            assert path.read_bytes()[:5].startswith(MAGIC[ext]), (kind, ext)
            if i == 0:
                assert _labelled(fig) == [], kind
        finally:
            plt.close(fig)
