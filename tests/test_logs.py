"""Trajectory logs of real networks: the Dataset, the netCDF file, the authors' CSV
layout, malformed files, atomic writes, and class-mean logits."""

import os
import warnings

import numpy as np
import pytest
import xarray as xr
from cf_check import assert_cf

from lesde.fit import class_mean_logits
from lesde.io import (
    check_log,
    LogError,
    LogWarning,
    make_log,
    read_csv,
    read_log,
    write_csv,
    write_log,
)

T, S, K = 3, 12, 4
EVAL = np.array([0, 4, 8, 11])


def random_log(seed=0, *, eval_steps=EVAL, steps=None, attrs=None):
    rng = np.random.default_rng(seed)
    E = len(eval_steps)
    return make_log(
        rng.integers(0, 500, (T, S)),
        rng.integers(0, K, (T, S)),
        rng.normal(size=(T, S, K)) * 10.0 ** rng.integers(-3, 4, (T, S, K)),
        rng.exponential(size=(T, S)),
        rng.exponential(size=(T, E)) if E else None,
        rng.uniform(size=(T, E)) if E else None,
        steps=steps,
        eval_steps=eval_steps if E else None,
        attrs=attrs,
    )


def assert_same_log(a, b, *, attrs=True):
    assert a.sizes == b.sizes
    for name in ("trial", "step", "class", "eval_step"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    for name in ("sample", "label"):
        assert b[name].dtype == np.int32
        np.testing.assert_array_equal(a[name].values, b[name].values)
    for name in ("logits", "train_loss", "val_loss", "val_acc"):
        assert b[name].dtype == np.float32
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-7, atol=0)
    if attrs:
        assert a.attrs == b.attrs


def test_make_log_layout():
    ds = random_log()
    assert ds.attrs["lesde_log"] == "trajectory" and ds.attrs["num_classes"] == K
    assert ds["logits"].dims == ("trial", "step", "class")
    assert ds["val_acc"].dims == ("trial", "eval_step")
    assert ds.sizes == {"trial": T, "step": S, "class": K, "eval_step": len(EVAL)}
    np.testing.assert_array_equal(ds["step"].values, np.arange(S))
    assert ds["sample"].dtype == np.int32 and ds["logits"].dtype == np.float32
    assert check_log(ds) is ds


def test_netcdf_round_trip(tmp_path):
    ds = random_log(attrs={"config": "lr: 0.1\n", "seed": 7, "lr": 0.1})
    path = write_log(ds, tmp_path / "run.nc")
    back = read_log(path)
    assert_cf(path)
    assert_same_log(ds, back)
    for name in ("trial", "step", "class", "eval_step"):
        assert back[name].dtype == ds[name].dtype
    assert type(back.attrs["seed"]) is int and type(back.attrs["lr"]) is float
    xr.testing.assert_identical(ds, back)
    assert os.listdir(tmp_path) == ["run.nc"]  # no temporary file left


def test_netcdf_without_eval_steps(tmp_path):
    ds = random_log(eval_steps=[])
    back = read_log(write_log(ds, tmp_path / "run.nc"))
    assert back.sizes["eval_step"] == 0 and back["val_loss"].shape == (T, 0)
    assert "lesde_empty_eval" not in back.attrs
    xr.testing.assert_identical(ds, back)


def test_csv_round_trip(tmp_path):
    ds = random_log(steps=np.arange(S) * 5 + 1, eval_steps=np.array([1, 21, 56]))
    path = write_csv(ds, tmp_path / "run.csv")
    lines = path.read_text().splitlines()
    logit_cols = ",".join(f"y_logit{k}" for k in range(K))
    assert lines[0] == f"trial,itr,smp,y,{logit_cols},tr_loss,val_loss,val_acc"
    assert len(lines) == 1 + T * S
    first = lines[1].split(",")
    assert first[:2] == ["0", "1"] and first[-2] != "" and lines[2].split(",")[-1] == ""
    assert_same_log(ds, read_log(path), attrs=False)
    assert os.listdir(tmp_path) == ["run.csv"]


def test_csv_eval_steps_that_are_not_steps(tmp_path):
    """An eval step that is not a step gets a validation-only row per trial (itr = the
    eval step, training cells empty), read back as an eval step only."""
    ds = random_log(eval_steps=np.array([0, 4, 8, S, S + 3]))
    path = write_csv(ds, tmp_path / "run.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + T * (S + 2)
    alone = lines[S + 1].split(",")  # trial 0 after its S step rows
    assert alone[:2] == ["0", str(S)] and alone[2:2 + 1 + K + 2] == [""] * (K + 3)
    assert alone[-2] != "" and alone[-1] != ""
    back = read_csv(path)
    assert_same_log(ds, back, attrs=False)
    for name in ("val_loss", "val_acc"):
        np.testing.assert_array_equal(back[name].values, ds[name].values)


def test_csv_round_trip_of_a_train_sgd_log(tmp_path):
    """`lesde.nets.train_sgd` evaluates once more after the last update (eval_step =
    steps, no step row): its log goes through the CSV layout with every variable and
    coordinate equal."""
    import lesde

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)  # digits-like: 3 classes of 8 features
    y = np.arange(60) % 3
    log = lesde.nets.train_sgd(lesde.nets.from_arrays(x, y), network="mlp",
                               network_options={"width": 8, "depth": 2}, trials=2, steps=20,
                               eval_every=10)
    np.testing.assert_array_equal(log["eval_step"].values, [0, 10, 20])
    assert 20 not in log["step"].values
    back = read_log(write_csv(log, tmp_path / "log.csv"))
    assert set(back.variables) == set(log.variables)
    for name in log.variables:
        assert back[name].dims == log[name].dims
        assert back[name].dtype == log[name].dtype, name
        np.testing.assert_array_equal(back[name].values, log[name].values, err_msg=name)


def test_csv_rows_in_any_order_and_trial_ids_kept(tmp_path):
    ds = random_log()
    path = write_csv(ds, tmp_path / "run.csv")
    header, *rows = path.read_text().splitlines()
    rows = [r.split(",") for r in rows]
    for r in rows:
        r[0] = str(int(r[0]) * 10 + 3)  # trial ids 3, 13, 23
    rows = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    back = read_csv(path, num_classes=K)
    np.testing.assert_array_equal(back["trial"].values, [3, 13, 23])
    back = back.assign_coords(trial=ds["trial"].values)
    assert_same_log(ds, back, attrs=False)
    with pytest.raises(LogError, match="num_classes = 3.*4 logit columns"):
        read_csv(path, num_classes=3)


def test_csv_with_validation_on_every_row(tmp_path):
    ds = random_log()
    path = write_csv(ds, tmp_path / "run.csv")
    header, *rows = path.read_text().splitlines()
    rows = [r.split(",") for r in rows]
    for r in rows:  # repeat a value on every row, as some writers do
        if r[-1] == "":
            r[-2:] = ["0.25", "0.5"]
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    back = read_csv(path)
    np.testing.assert_array_equal(back["eval_step"].values, back["step"].values)
    assert back["val_acc"].shape == (T, S)
    np.testing.assert_allclose(back["val_loss"].sel(eval_step=EVAL), ds["val_loss"].values)
    assert float(back["val_acc"].sel(trial=0, eval_step=1)) == 0.5


def test_csv_columns_in_another_order_and_blank_lines(tmp_path):
    ds = random_log()
    path = write_csv(ds, tmp_path / "run.csv")
    header, *rows = [r.split(",") for r in path.read_text().splitlines()]
    perm = np.random.default_rng(2).permutation(len(header))
    text = [",".join(np.asarray(r)[perm]) for r in [header, *rows]]
    text.insert(5, "")
    path.write_text("\n".join(text) + "\n")
    assert_same_log(ds, read_csv(path), attrs=False)


def direct_class_means(ds, window):
    """Xbar_k[j] by explicit loops over windows, trials and steps."""
    labels, logits, steps = ds["label"].values, ds["logits"].values, ds["step"].values
    n = ds.sizes["step"] // window
    means = np.full((n, K, K), np.nan)
    counts = np.zeros((n, K), int)
    for w in range(n):
        for k in range(K):
            rows = [
                logits[tr, t]
                for tr in range(ds.sizes["trial"])
                for t in range(w * window, (w + 1) * window)
                if labels[tr, t] == k
            ]
            counts[w, k] = len(rows)
            if rows:
                means[w, k] = np.mean(rows, axis=0, dtype=np.float64)
    step = steps[: n * window].reshape(n, window).mean(axis=1)
    return means, counts, step


@pytest.mark.parametrize("window", [1, 3, 5])
def test_class_mean_logits_against_loops(window):
    ds = random_log(steps=np.arange(S) * 2)
    out = class_mean_logits(ds, window=window)
    means, counts, step = direct_class_means(ds, window)
    assert out.dims == ("step", "class", "logit")
    assert out.shape == (S // window, K, K)
    np.testing.assert_allclose(out.values, means, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(out.values), np.isnan(means))
    np.testing.assert_array_equal(out["count"].values, counts)
    np.testing.assert_allclose(out["step"].values, step)
    assert np.isnan(means).any() or window > 1  # some (step, class) pairs have no row
    with pytest.raises(ValueError, match="window"):
        class_mean_logits(ds, window=S + 1)


# --- malformed CSV files -----------------------------------------------------------


@pytest.fixture
def csv_rows(tmp_path):
    """The header and rows (lists of cells) of a written log, and a writer that puts
    edited rows back into a file."""
    path = write_csv(random_log(), tmp_path / "run.csv")
    header, *rows = [r.split(",") for r in path.read_text().splitlines()]

    def save(header=header, rows=rows):
        path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
        return path

    return header, rows, save


def test_csv_missing_and_unknown_columns(csv_rows):
    header, rows, save = csv_rows
    i = header.index("tr_loss")
    cut = lambda r: r[:i] + r[i + 1:]  # noqa: E731
    with pytest.raises(LogError, match="missing column 'tr_loss'"):
        read_csv(save([*cut(header)], [cut(r) for r in rows]))
    with pytest.raises(LogError, match="line 1, column 'lr': unknown column"):
        read_csv(save(header + ["lr"], [r + ["0.1"] for r in rows]))
    j = header.index("y_logit2")
    header2 = [*header]
    header2[j] = "y_logit7"
    with pytest.raises(LogError, match="missing column 'y_logit2'"):
        read_csv(save(header2, rows))


@pytest.mark.parametrize(
    "col, value, message",
    [
        ("y", "4", r"label 4 is out of range 0\.\.3"),
        ("y", "-1", r"label -1 is out of range 0\.\.3"),
        ("y", "1.5", r"label '1\.5' is not an integer"),
        ("y_logit2", "nan", r"value 'nan' is not a finite float32"),
        ("y_logit1", "", "empty cell"),
        ("tr_loss", "inf", r"value 'inf' is not a finite float32"),
        ("y_logit0", "abc", r"non-numeric value 'abc'"),
        ("smp", "-3", r"sample index -3 is out of range"),
    ],
)
def test_csv_bad_cell(csv_rows, col, value, message):
    header, rows, save = csv_rows
    rows[6][header.index(col)] = value
    rows[9][header.index(col)] = value  # a later bad row is not the one reported
    with pytest.raises(LogError, match=f"line 8, column '{col}': {message}"):
        read_csv(save())


def test_csv_half_a_validation_pair(csv_rows):
    header, rows, save = csv_rows
    rows[6][header.index("val_loss")] = "0.5"  # step 6 is no eval step: val_acc is empty
    with pytest.raises(LogError, match="line 8, column 'val_acc': empty, but val_loss on the "
                       "same row is not"):
        read_csv(save())


def test_csv_duplicate_row(csv_rows):
    header, rows, save = csv_rows
    rows.insert(10, [*rows[3]])  # file line 12 repeats line 5
    with pytest.raises(LogError, match=r"line 12, column 'itr': duplicated row for trial 0, "
                       r"itr 3 \(first at line 5\)"):
        read_csv(save())


def test_csv_ragged_trial(csv_rows):
    header, rows0, save = csv_rows
    rows = [[*r] for r in rows0]
    del rows[S + 4]  # trial 1 lacks itr 4; trial 0 has it at line 6
    with pytest.raises(LogError, match=r"line 6, column 'itr': trial 1 has no row with itr 4"):
        read_csv(save(header, rows))
    rows = [[*r] for r in rows0]
    rows[2 * S + 5][1] = "99"  # trial 2 has itr 99 instead of 5; trial 0 has 5 on line 7
    with pytest.raises(LogError, match=r"line 7, column 'itr': trial 2 has no row with itr 5, "
                       r"which trial 0 has at this line"):
        read_csv(save(header, rows))
    rows = [r for r in rows if not (r[0] == "2" and r[1] == "99")]
    rows.append(["1", "12", *rows[0][2:]])  # trial 1 has an extra itr 12
    with pytest.raises(LogError, match=rf"line {len(rows) + 1}, column 'itr': trial 1 has "
                       r"itr 12, which trial 0 does not"):
        read_csv(save(header, rows))


def test_csv_inconsistent_eval_steps(csv_rows):
    header, rows, save = csv_rows
    r = rows[S + 5]  # trial 1, itr 5: not an eval step of trial 0
    r[-2:] = ["0.3", "0.9"]
    with pytest.raises(LogError, match=rf"line {S + 7}, column 'val_loss': trial 1 has "
                       r"validation values at itr 5, unlike trial 0"):
        read_csv(save())
    r[-2:] = ["", ""]
    rows[2 * S + 4][-2:] = ["", ""]  # trial 2 misses eval step 4
    with pytest.raises(LogError, match=rf"line {2 * S + 6}, column 'val_loss': trial 2 has no "
                       r"validation values at itr 4"):
        read_csv(save())


def test_csv_wrong_number_of_fields(csv_rows):
    header, rows, save = csv_rows
    rows[2].append("1")
    with pytest.raises(LogError, match="line 4: .* fields, but the header"):
        read_csv(save())


# --- files of a run cut short (lesde.io.TrajectoryLogger) ----------------------------


def test_csv_a_last_row_cut_short_is_left_out_with_a_warning(tmp_path):
    ds = random_log()
    text = write_csv(ds, tmp_path / "run.csv").read_text()
    path = tmp_path / "torn.csv"
    path.write_text(text + "2,12,7,1,0.5,-1.")  # no line end, 6 of 11 fields
    with pytest.warns(LogWarning, match=rf"torn\.csv: line {T * S + 2}: left out the last line, which "
                      r"has 6 of the header's 11 fields and no line end"):
        assert_same_log(ds, read_csv(path), attrs=False)
    path.write_text(text + "2,12")  # also a row of one or two cells
    with pytest.warns(LogWarning, match="has 2 of the header's 11 fields"):
        assert_same_log(ds, read_log(path), attrs=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path.write_text(text.rstrip("\n"))  # a complete last row without its line end
        assert_same_log(ds, read_csv(path), attrs=False)
        path.write_text(text + "2,12,7,1,0.5,-1.\n")  # a short row that ends its line
        with pytest.raises(LogError, match=rf"line {T * S + 2}, column 'y_logit2': empty cell"):
            read_csv(path)
        lines = text.splitlines()
        lines.insert(5, "0,3,7,1,0.5")  # a short row that is not the last
        path.write_text("\n".join(lines))
        with pytest.raises(LogError, match="line 6, column 'y_logit1': empty cell"):
            read_csv(path)


def _cut(path, keep):
    """Keep the data rows (trial, itr) of the CSV file `path` for which `keep` is true."""
    header, *rows = path.read_text().splitlines()
    rows = [r for r in rows if keep(int(r.split(",")[0]), int(r.split(",")[1]))]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_csv_a_run_cut_short_reads_with_ragged(tmp_path):
    ds = random_log(eval_steps=np.array([0, 4, 8, S]))  # a validation-only row at itr S
    # trials one after another, the last cut after itr 6
    path = _cut(write_csv(ds, tmp_path / "a.csv"), lambda t, i: t < 2 or i <= 6)
    with pytest.raises(LogError, match=r"trial 2 has no row with itr 7, .*ragged='common_steps'"):
        read_csv(path)
    with pytest.warns(LogWarning, match=r"ragged='complete_trials': kept trials \[0, 1\], which have "
                      r"all 12 itr values \(0\.\.11\), and left out trials \[2\]; left out 7 rows "
                      rf"\(trial 2: 7 from line {2 * (S + 1) + 2}\)"):
        assert_same_log(ds.isel(trial=[0, 1]), read_csv(path, ragged="complete_trials"), attrs=False)
    with pytest.warns(LogWarning, match=r"ragged='common_steps': kept the 7 itr values every trial "
                      r"has \(0\.\.6\); left out 12 rows \(trial 0: 6 from line 9, trial 1: 6 from line 22\)"):
        back = read_log(path, ragged="common_steps")
    assert_same_log(ds.isel(step=slice(0, 7), eval_step=[0, 1]), back, attrs=False)
    # every trial at each step, trial 0 one step ahead
    path = _cut(write_csv(ds, tmp_path / "b.csv"), lambda t, i: i <= 8 if t == 0 else i <= 7)
    with pytest.warns(LogWarning, match=r"kept the 8 itr values every trial has \(0\.\.7\); left out 1 rows"):
        back = read_csv(path, ragged="common_steps")
    assert_same_log(ds.isel(step=slice(0, 8), eval_step=[0, 1]), back, attrs=False)
    with pytest.warns(LogWarning, match=r"kept trials \[0\].*left out trials \[1, 2\]; left out 16 rows"):
        assert_same_log(ds.isel(trial=[0], step=slice(0, 9), eval_step=[0, 1, 2]),
                        read_csv(path, ragged="complete_trials"), attrs=False)
    # a log that is not ragged reads the same, without a warning
    path = write_csv(ds, tmp_path / "c.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for ragged in ("common_steps", "complete_trials"):
            assert_same_log(ds, read_csv(path, ragged=ragged), attrs=False)


# --- checks of the Dataset -----------------------------------------------------------


def test_check_log_names_the_problem():
    ds = random_log()
    with pytest.raises(LogError, match="missing data variable 'logits'"):
        check_log(ds.drop_vars("logits"))
    with pytest.raises(LogError, match="'lesde_log'"):
        check_log(ds.assign_attrs(lesde_log="sweep"))
    bad = ds.copy(deep=True)
    bad["logits"].values[1, 5, 2] = np.nan
    with pytest.raises(LogError, match="logits must be finite, got at trial 1, step 5, class 2"):
        check_log(bad)
    bad = ds.copy(deep=True)
    bad["label"].values[2, 3] = K
    with pytest.raises(LogError, match="label must lie in 0..3.*trial 2, step 3"):
        check_log(bad)
    with pytest.raises(LogError, match="coordinate 'step' must be strictly increasing"):
        check_log(ds.assign_coords(step=np.r_[0, 2, 1, np.arange(3, S)]))
    with pytest.raises(LogError, match="must have shape \\(trial, step\\)"):
        make_log(np.zeros((T, S)), np.zeros((T, S + 1)), np.zeros((T, S, K)), np.zeros((T, S)))
    with pytest.raises(LogError, match="label must hold integers, got 0.5"):
        make_log(np.zeros((T, S)), np.full((T, S), 0.5), np.zeros((T, S, K)), np.zeros((T, S)))
    with pytest.raises(LogError, match="attribute 'cfg' must be a str, int or float"):
        random_log(attrs={"cfg": {"lr": 1}})


# --- atomic writes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["run.nc", "run.csv"])
def test_failing_write_leaves_no_file(tmp_path, name):
    bad = random_log().copy(deep=True)
    bad["train_loss"].values[0, 0] = np.inf
    with pytest.raises(LogError, match="train_loss must be finite"):
        write_log(bad, tmp_path / name)
    assert os.listdir(tmp_path) == []
    good = random_log(attrs={"big": 1})
    good.attrs["big"] = 2**40  # fits no int32, the type of the log format's integer attributes
    with pytest.raises(LogError, match="'big'"):
        write_log(good, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_write_error_mid_file_removes_the_temporary(tmp_path, monkeypatch):
    ds = random_log()
    path = write_log(ds, tmp_path / "run.nc")
    before = path.read_bytes()

    def broken(self, target, **kw):
        open(target, "wb").write(b"CDF\x01 partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        write_log(random_log(1), path)
    assert os.listdir(tmp_path) == ["run.nc"] and path.read_bytes() == before


def test_unknown_suffix(tmp_path):
    with pytest.raises(LogError, match="suffix '.txt'"):
        write_log(random_log(), tmp_path / "run.txt")
    (tmp_path / "run.txt").write_text("x")
    with pytest.raises(LogError, match="use .nc .* or .csv"):
        read_log(tmp_path / "run.txt")
