"""Result files: netCDF4 to the CF conventions (`lesde.io.write_netcdf`), read back by
`lesde.open_result` whatever wrote them, including files of earlier versions."""

import sys

import numpy as np
import pytest
import xarray as xr
from cf_check import assert_cf

import lesde
from lesde.io import annotate, ResultError, write_netcdf
from lesde.metrics import METRIC_ATTRS, register_metric
from lesde.models import parameter_name


def _dataset():
    ds = xr.Dataset(
        {
            "count": (("cell", "seed"), np.array([[2**40, -3], [7, 2**33]], dtype=np.int64)),
            "status": (("cell", "seed"), np.array([[0, 1], [3, 0]], dtype=np.int32)),
        },
        coords={"cell": [0.5, 1.5], "seed": np.arange(2)},
    )
    return annotate(ds, {
        "count": {"long_name": "a count", "units": "1"},
        "status": {"long_name": "status", "units": "1",
                   **lesde.io.flag_attrs({"success": 0, "diverged": 1, "solver_failed": 2, "inaccurate": 3})},
        "cell": {"long_name": "cell", "units": "1"},
        "seed": {"long_name": "seed", "units": "1"},
    })


def test_write_netcdf_follows_cf_and_keeps_int64(tmp_path):
    path = write_netcdf(tmp_path / "r.nc", _dataset(), title="a test result")
    back = assert_cf(path)
    assert back["count"].dtype == np.int64
    np.testing.assert_array_equal(back["count"], [[2**40, -3], [7, 2**33]])
    assert back.attrs["title"] == "a test result"
    assert back.attrs["Conventions"] == lesde.io.CONVENTIONS
    assert sys.argv[0].split("/")[-1] in back.attrs["history"]  # the command line
    assert back["count"].encoding["zlib"] is True  # compressed
    assert int((back["status"].cf == "inaccurate").sum()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc"]


def test_write_netcdf_refuses_a_variable_without_units(tmp_path):
    ds = _dataset()
    ds["count"].attrs.pop("units")
    with pytest.raises(ValueError, match="variable 'count' has no units"):
        write_netcdf(tmp_path / "r.nc", ds, title="x")
    bad = _dataset()
    bad["status"].attrs["flag_meanings"] = "success diverged"
    with pytest.raises(ValueError, match="'status': flag_values and flag_meanings differ"):
        write_netcdf(tmp_path / "r.nc", bad, title="x")
    assert list(tmp_path.iterdir()) == []


def test_open_result_reads_files_of_earlier_versions(tmp_path):
    old = tmp_path / "sweep.nc"
    ds = _dataset().drop_vars("count")
    ds.to_netcdf(old, engine="scipy")  # netCDF3, as lesde 0.1 wrote results
    assert old.read_bytes()[:3] == b"CDF"
    back = lesde.open_result(tmp_path)  # the folder: its one result file
    np.testing.assert_array_equal(back["status"], ds["status"])
    assert back["status"].attrs["flag_meanings"] == ds["status"].attrs["flag_meanings"]


def test_open_result_names_what_it_cannot_read(tmp_path):
    np.savez(tmp_path / "trajectory.npz", ts=np.arange(3))
    with pytest.raises(ResultError, match=r"trajectory.npz is a NumPy archive .* numpy.load"):
        lesde.open_result(tmp_path / "trajectory.npz")
    with pytest.raises(ResultError, match=r"holds no result file .* trajectory.npz"):
        lesde.open_result(tmp_path)
    write_netcdf(tmp_path / "fit.nc", _dataset(), title="x")
    write_netcdf(tmp_path / "sweep.nc", _dataset(), title="x")
    with pytest.raises(ResultError, match=r"holds several results \(sweep.nc, fit.nc\)"):
        lesde.open_result(tmp_path)
    (tmp_path / "cut.nc").write_bytes((tmp_path / "fit.nc").read_bytes()[:300])
    with pytest.raises(ResultError, match="cut.nc is not a readable netCDF file"):
        lesde.open_result(tmp_path / "cut.nc")
    with pytest.raises(ResultError, match="no such file"):
        lesde.open_result(tmp_path / "missing.nc")


def test_parameter_and_metric_names_for_labels():
    assert parameter_name("impact.alpha") == parameter_name("impact.alpha.value") == "intra-class impact α"
    assert parameter_name("noise.terms.independent.sigma.value") == "independent noise σ"
    assert parameter_name("noise.common") == parameter_name("noise.terms.common.sigma.value") == "common noise σ"
    assert parameter_name("impact.schedule.value[0,1]") == "impact matrix E[0,1]"
    assert parameter_name("impact.alpha.r") == "intra-class impact α, r"
    assert parameter_name("theta") == "theta"  # unknown: its own path

    def norm(t, x, model):
        return x.sum()

    register_metric("test_label_metric", norm, long_name="sum of the features")
    try:
        assert lesde.metrics.metric_attrs("test_label_metric") == {"long_name": "sum of the features", "units": "1"}
    finally:
        lesde.metrics.METRICS.pop("test_label_metric")
        METRIC_ATTRS.pop("test_label_metric")
    assert lesde.metrics.metric_attrs("ncm_error")["long_name"].startswith("NCM error")


def test_write_netcdf_stores_str_subclasses_as_str(tmp_path):
    class Version(str):
        pass

    ds = _dataset()
    ds.attrs.update(version=Version("2.1.0"), name=np.str_("abc"))
    ds["count"].attrs["note"] = np.str_("a note")
    back = lesde.open_result(write_netcdf(tmp_path / "r.nc", ds, title="x"))
    assert back.attrs["version"] == "2.1.0" and back.attrs["name"] == "abc"
    assert back["count"].attrs["note"] == "a note"


def test_bad_names_for_labels_are_refused():
    from lesde.models import register_parameter_name

    with pytest.raises(ValueError, match="units of metric 'x_metric' must be a non-empty string"):
        register_metric("x_metric", lambda t, x, model: x.sum(), units="")
    assert "x_metric" not in lesde.metrics.METRICS and "x_metric" not in METRIC_ATTRS
    with pytest.raises(ValueError, match="the long name of 'theta' must be a non-empty string"):
        register_parameter_name("theta", "  ")
    assert parameter_name("theta") == "theta"
    with pytest.raises(ValueError, match="a flag meaning must be a single word"):
        lesde.io.flag_attrs({"solver failed": 2})
