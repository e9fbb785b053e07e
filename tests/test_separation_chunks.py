"""The separation experiment resumed by chunks of members: `train_separation` keeps each
finished chunk in a `ChunkStore`, an interrupted `lesde train` resumes at the members not
yet trained and ends with the result of an uninterrupted run bit for bit, the chunk size
may change between the two, the chunks of another configuration are removed, a damaged
chunk file is refused with what to do, and the chunks go when the panel's file is written.

A tiny config (2 x 2 cells x 2 seeds = 8 members, chunks of 3) keeps the compiled runs
few; a stand-in for the chunk function interrupts a run at a chosen call."""

import numpy as np
import pytest
import yaml

import lesde.nets._train as nets_train
from lesde.cli import main
from lesde.io import open_result
from lesde.nets import geomnist, train_separation
from lesde.solve import StoreError

SEP = {
    "experiment": "separation",
    "data": {"name": "geomnist", "n_per_class": 10, "val_fraction": 0.3},
    "network": {"width": 8, "depth": 3},
    "grid": {"data_noise": [0.0, 0.5], "negative_slope": [0.0, 1.0]},
    "train": {"seeds": 2, "epochs": 2, "chunk_size": 3},
}


class Stop:
    """A stand-in for `_separation_chunk` that records the members of each call and
    raises KeyboardInterrupt at call number `stop` (1-based; 0: never)."""

    def __init__(self, stop=0):
        self.stop, self.calls, self.real = stop, [], nets_train._separation_chunk

    def __call__(self, data, hyper, member_seed, *args):
        self.calls.append(member_seed.tolist())
        if len(self.calls) == self.stop:
            raise KeyboardInterrupt
        return self.real(data, hyper, member_seed, *args)


def _train(tmp_path, config):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return main(["train", str(path), "--out", str(tmp_path / "out"), "--quiet"])


def _store(out):
    """The one chunk store in out/parts."""
    (store,) = (out / "parts").iterdir()
    return store


def _assert_same(a, b, exact=True):
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for name in a.data_vars:
        if exact:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name, strict=True)
        else:
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The result of an uninterrupted run in chunks of 3."""
    tmp = tmp_path_factory.mktemp("reference")
    assert _train(tmp, SEP) == 0
    assert not (tmp / "out" / "parts").exists()  # the chunks go with the panel's file
    return open_result(tmp / "out" / "separation.nc")


def test_interrupted_run_resumes_at_the_members_not_yet_trained(tmp_path, reference, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(nets_train, "_separation_chunk", Stop(3))  # 2 chunks train, the third stops
    assert _train(tmp_path, SEP) == 130
    err = capsys.readouterr().err
    assert "interrupted; kept 2 finished chunks of members" in err and "run the same command again" in err
    assert sorted(f.name for f in _store(out).glob("*.npz")) == [
        "members_000000000_000000002.npz", "members_000000003_000000005.npz"]
    assert not (out / "separation.nc").exists() and not (out / "summary.json").exists()

    again = Stop()
    monkeypatch.setattr(nets_train, "_separation_chunk", again)
    assert _train(tmp_path, SEP) == 0
    assert again.calls == [[0, 1, 1]]  # only members 6 and 7 (seeds 0, 1), padded to 3
    assert not (out / "parts").exists()
    _assert_same(open_result(out / "separation.nc"), reference)


def test_the_chunk_size_may_change_between_the_runs(tmp_path, reference, capsys, monkeypatch):
    """A run begun in chunks of 3 ends in chunks of 2 (a run begun on one machine may end
    on another): the finished members are kept, the others trained, and a finished
    result is kept whatever the chunk size."""
    out = tmp_path / "out"
    monkeypatch.setattr(nets_train, "_separation_chunk", Stop(2))
    assert _train(tmp_path, SEP) == 130  # members 0-2 kept
    again = Stop()
    monkeypatch.setattr(nets_train, "_separation_chunk", again)
    assert _train(tmp_path, {**SEP, "train": {**SEP["train"], "chunk_size": 2}}) == 0
    assert again.calls == [[1, 0], [1, 0], [1, 1]]  # members 3-4, 5-6, 7 (padded)
    _assert_same(open_result(out / "separation.nc"), reference, exact=False)
    capsys.readouterr()
    assert _train(tmp_path, {**SEP, "train": {**SEP["train"], "chunk_size": 8}}) == 0
    assert "separation.nc: kept (same configuration)" in capsys.readouterr().out
    assert len(again.calls) == 3


def test_chunks_of_another_configuration_are_removed_and_a_damaged_one_refused(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(nets_train, "_separation_chunk", Stop(2))
    assert _train(tmp_path, SEP) == 130
    old = _store(out)
    chunk = old / "members_000000000_000000002.npz"
    chunk.write_bytes(chunk.read_bytes()[:50])  # damaged
    capsys.readouterr()
    assert _train(tmp_path, SEP) == 2
    err = capsys.readouterr().err
    assert f"the chunk file {chunk} is damaged" in err and "remove it and run the same command again" in err

    other = {**SEP, "train": {**SEP["train"], "epochs": 1}}  # another configuration
    again = Stop()
    monkeypatch.setattr(nets_train, "_separation_chunk", again)
    assert _train(tmp_path, other) == 0
    assert f"removed parts/{old.name}/: the finished chunks of another configuration" in capsys.readouterr().out
    assert len(again.calls) == 3 and not (out / "parts").exists()


def test_train_separation_with_a_store(tmp_path, monkeypatch):
    """A second call with the same store and fingerprint trains nothing and returns the
    same result; a store of another fingerprint is refused."""
    data = geomnist(10, val_fraction=0.3)
    kw = dict(seeds=2, epochs=2, width=8, depth=3, negative_slope=[0.0, 1.0],
              data_noise=[0.0, 0.5], chunk_size=3, store=tmp_path / "chunks")
    first = train_separation(data, fingerprint="a", **kw)
    assert len(list((tmp_path / "chunks").glob("members_*.npz"))) == 3
    count = Stop()
    monkeypatch.setattr(nets_train, "_separation_chunk", count)
    _assert_same(train_separation(data, fingerprint="a", **kw), first)
    assert count.calls == []
    with pytest.raises(StoreError, match="holds a different computation"):
        train_separation(data, fingerprint="b", **kw)
