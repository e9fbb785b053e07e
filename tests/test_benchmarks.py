"""The benchmark driver's bookkeeping (benchmarks/bench_performance.py): `--parts` runs
only the named parts and keeps every other part's figures from the previous results file,
each part recording when and under what load it was measured, and the table says so."""

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_performance as bp

    monkeypatch.setattr(bp, "RESULTS", tmp_path)
    monkeypatch.setattr(bp, "table", lambda res: "table\n")
    monkeypatch.setattr(bp, "environment", lambda: {
        "machine": {"load_average_1_5_15min_at_end": (1.0, 1.0, 1.0)}})
    runs = []
    for name in bp.PARTS:
        fn = (lambda a, *rest, name=name: runs.append(name) or
              {"figure": f"{name} first", "ratio numpy / lesde": 0})
        monkeypatch.setattr(bp, f"part_{name}", fn)
    return bp, runs


def test_parts_rerun_only_the_named_parts_and_keep_the_others(bench, monkeypatch, tmp_path):
    bp, runs = bench
    bp.main(["--no-docs", "--quick"])
    assert runs == list(bp.PARTS)
    first = json.loads((tmp_path / "performance.json").read_text())
    assert set(first["part_runs"]) == set(bp.PARTS)

    runs.clear()
    monkeypatch.setattr(bp, "part_authors", lambda a: runs.append("authors") or
                        {"figure": "new", "ratio numpy / lesde": 0})
    bp.main(["--no-docs", "--quick", "--parts", "authors"])
    assert runs == ["authors"]
    res = json.loads((tmp_path / "performance.json").read_text())
    assert res["authors"]["figure"] == "new"
    assert all(res[p]["figure"] == f"{p} first" for p in bp.PARTS if p != "authors")
    assert set(res["part_runs"]) == set(bp.PARTS)


def test_the_table_names_parts_measured_in_separate_runs(bench):
    bp, _ = bench
    load = (2.0, 2.0, 2.0)
    res = {"part_runs": {"reference": {"date": "2026-11-30", "load_average_1_5_15min_at_end": load},
                         "authors": {"date": "2026-12-02", "load_average_1_5_15min_at_end": load}}}
    said = bp._part_dates(res)
    assert "reference on 2026-11-30" in said and "authors on 2026-12-02" in said
    res["part_runs"]["authors"]["date"] = "2026-11-30"
    assert bp._part_dates(res) == ""


def test_unknown_part_is_refused(bench):
    bp, _ = bench
    with pytest.raises(SystemExit):
        bp.main(["--parts", "nonsense"])
