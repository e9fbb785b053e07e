"""`lesde train` (trajectories) in blocks of trials: a joined log equals the log of an
unblocked run bit for bit, an interrupted run resumes at the first missing block, a part
of another configuration is trained again, stale parts are removed, and the memory check
and the shipped config at the LE-SDE authors' scale.

One tiny MLP config (3 trials of 20 steps, blocks of 2) keeps the compiled runs few: the
tests that only check which blocks would be trained stop at the first call of
`train_sgd` (a KeyboardInterrupt) instead of training.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import lesde.runs._config as config_module
import lesde.runs._train as train_module
from lesde.cli import main
from lesde.io import read_log, write_log
from lesde.runs import ConfigError, installed_configs, load_train_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

BASE = {
    "experiment": "trajectories",
    "data": {"name": "geomnist", "n_per_class": 8, "val_fraction": 0.25, "seed": 1},
    "network": {"name": "mlp", "width": 12, "depth": 2},
    "corruption": [0.0],
    "corruption_seed": 3,
    "train": {"trials": 3, "steps": 20, "learning_rate": 0.05, "eval_every": 10, "seed": 0},
}
BLOCKED = {**BASE, "train": {**BASE["train"], "trials_per_block": 2}}
PARTS = ("log_p0.0000_trials0000-0001.nc", "log_p0.0000_trials0002-0002.nc")


def _write(tmp_path, config, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _train(tmp_path, config, out="out"):
    return main(["train", str(_write(tmp_path, config)), "--out", str(tmp_path / out), "--quiet"])


def assert_same_log(a, b):
    """The same variables, coordinates, dtypes and values bit for bit, and the same
    attrs but the config text (which holds the block size)."""
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        assert a[name].dims == b[name].dims, name
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name, strict=True)
    drop = lambda attrs: {k: v for k, v in attrs.items() if k != "config"}  # noqa: E731
    assert drop(a.attrs) == drop(b.attrs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The log of the unblocked run (all trials as one computation)."""
    tmp = tmp_path_factory.mktemp("reference")
    assert _train(tmp, BASE) == 0
    assert not (tmp / "out" / "parts").exists()
    return read_log(tmp / "out" / "log_p0.0000.nc")


class Stop:
    """A stand-in for `train_sgd` that records the trial ids of each call and raises
    KeyboardInterrupt at call number `stop` (1-based); the calls before it train."""

    def __init__(self, stop):
        self.stop, self.calls, self.real = stop, [], train_module.train_sgd

    def __call__(self, data, *, trials, **kw):
        self.calls.append(list(np.atleast_1d(trials)) if not isinstance(trials, int) else list(range(trials)))
        if len(self.calls) == self.stop:
            raise KeyboardInterrupt
        return self.real(data, trials=trials, **kw)


def test_interrupted_run_resumes_and_joins_to_the_unblocked_log_bitwise(tmp_path, reference, capsys, monkeypatch):
    out = tmp_path / "out"
    stop = Stop(2)  # the first block trains, the second is interrupted
    monkeypatch.setattr(train_module, "train_sgd", stop)
    assert _train(tmp_path, BLOCKED) == 130
    printed = capsys.readouterr()
    assert "block 1/2 (trials 0-1): trained in" in printed.out and PARTS[0] in printed.out
    assert "interrupted; kept 1 finished block of trials" in printed.err and PARTS[0] in printed.err
    assert "run the same command again" in printed.err
    assert sorted(f.name for f in (out / "parts").iterdir()) == [PARTS[0]]
    # never complete with a block missing
    assert not (out / "summary.json").exists() and not (out / "log_p0.0000.nc").exists()

    again = Stop(0)  # never stops
    monkeypatch.setattr(train_module, "train_sgd", again)
    assert _train(tmp_path, BLOCKED) == 0
    assert again.calls == [[2]]  # only the missing block
    printed = capsys.readouterr().out
    assert f"block 1/2 (trials 0-1): kept parts/{PARTS[0]}" in printed
    assert "block 2/2 (trials 2-2): trained in" in printed
    assert not (out / "parts").exists()  # joined: the parts are gone
    assert json.loads((out / "summary.json").read_text())["results"]["0.0000"]
    joined = read_log(out / "log_p0.0000.nc")
    assert joined.sizes["trial"] == 3
    assert_same_log(joined, reference)
    assert yaml.safe_load(joined.attrs["config"])["train"]["trials_per_block"] == 2


def test_join_takes_the_per_trial_variables_from_each_part_and_the_others_once(reference):
    rng = np.random.default_rng(0)
    log = reference.copy()
    # snapshots and impact matrices, as a run with them writes (no training needed here)
    normal = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    log["features"] = (("trial", "snapshot_step", "train_sample", "class"), normal(3, 2, 18, 3))
    log["train_labels"] = ("train_sample", rng.integers(0, 3, 18).astype(np.int32))
    log["impact"] = (("trial", "impact_step", "class_row", "class_col"), normal(3, 2, 3, 3))
    log = log.assign_coords(snapshot_step=[0, 20], impact_step=[0, 20])
    joined = train_module._join([log.isel(trial=[0, 1]), log.isel(trial=[2])])
    assert joined["train_labels"].dims == ("train_sample",)
    assert_same_log(joined, log)
    other = log.isel(trial=[2]).assign(train_labels=log["train_labels"] + 1)
    with pytest.raises(ValueError):  # the parts of one fraction share their training labels
        train_module._join([log.isel(trial=[0, 1]), other])


def _part(reference, trials, **attrs):
    """A part file's log: trials of the reference log, with changed attrs."""
    part = reference.isel(trial=trials)
    part.attrs = {**reference.attrs, **attrs}  # a new dict: the reference's stays as it is
    return part


def test_which_parts_are_kept(tmp_path, reference, capsys, monkeypatch):
    out, parts = tmp_path / "out", tmp_path / "out" / "parts"
    parts.mkdir(parents=True)
    # a part of this configuration is kept: the next block is the first trained
    write_log(_part(reference, [0, 1]), parts / PARTS[0])
    write_log(_part(reference, [0, 1]), parts / "log_p0.5000_trials0000-0001.nc")  # p not trained
    write_log(_part(reference, [0, 1, 2]), parts / "log_p0.0000_trials0000-0002.nc")  # other blocks
    stop = Stop(1)
    monkeypatch.setattr(train_module, "train_sgd", stop)
    assert _train(tmp_path, BLOCKED) == 130
    assert stop.calls == [[2]]
    assert "removed parts/log_p0.5000_trials0000-0001.nc" in capsys.readouterr().out
    assert sorted(f.name for f in parts.iterdir()) == [PARTS[0]]

    # a part of another configuration (fingerprint) is trained again
    write_log(_part(reference, [0, 1], config_fingerprint="0123456789abcdef"), parts / PARTS[0])
    stop = Stop(1)
    monkeypatch.setattr(train_module, "train_sgd", stop)
    assert _train(tmp_path, BLOCKED) == 130
    assert stop.calls == [[0, 1]]
    # so is a part of another fraction or of other trials under the block's name
    for wrong in (_part(reference, [0, 1], corruption=0.5), _part(reference, [0, 2])):
        write_log(wrong, parts / PARTS[0])
        stop = Stop(1)
        monkeypatch.setattr(train_module, "train_sgd", stop)
        assert _train(tmp_path, BLOCKED) == 130
        assert stop.calls == [[0, 1]]
    assert "no fraction or block of trials was finished" in capsys.readouterr().err

    # a joined log of this configuration is kept and its leftover parts removed
    write_log(reference, out / "log_p0.0000.nc")
    write_log(_part(reference, [0, 1]), parts / PARTS[0])
    assert _train(tmp_path, BLOCKED) == 0
    assert "kept log_p0.0000.nc" in capsys.readouterr().out and not parts.exists()


def test_memory_check_counts_a_block_in_training_and_all_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "physical_memory", lambda: 24 * 10**9)
    big = {**BASE, "corruption": [0.0, 0.5], "network": {"name": "lenet"},
           "train": {"trials": 10**6, "steps": 10**3, "learning_rate": 0.05, "trials_per_block": 10}}
    with pytest.raises(ConfigError) as e:
        load_train_config(_write(tmp_path, big))
    # 10^6 trials x 10^3 steps x 6 values x 4 bytes = 24 GB a fraction, held for 2 fractions
    # and once more while a fraction's parts are joined; a block of 10 trials is small
    assert ("3 fractions x 10^6 trials x 1000 steps x 6 values per step need 72 GB for the "
            "logs of all corruption fractions and the joining of one") in str(e.value)
    assert "one block of trials" not in str(e.value)
    big["train"]["trials"] = 10**5
    assert load_train_config(_write(tmp_path, big)).block_size == 10
    # the arrays of training are those of one block
    one = {**big, "corruption": [0.0], "train": {**big["train"], "steps": 10**6, "trials": 10**4,
                                                  "trials_per_block": 2000}}
    with pytest.raises(ConfigError, match=r"2000 trials x 10\^6 steps x 6 values per step need 48 GB "
                                          r"for the log of one block of trials"):
        load_train_config(_write(tmp_path, one))


def test_block_size_is_checked(tmp_path):
    for value, match in ((0, "greater than or equal to 1"), (2.5, "valid integer"), (True, "valid integer")):
        bad = {**BASE, "train": {**BASE["train"], "trials_per_block": value}}
        with pytest.raises(ConfigError, match=rf"train\.trials_per_block: .*{match}"):
            load_train_config(_write(tmp_path, bad))
    larger = {**BASE, "train": {**BASE["train"], "trials_per_block": 50}}
    assert load_train_config(_write(tmp_path, larger)).block_size == 3  # one block of all trials


def test_authors_config(capsys):
    config = load_train_config(CONFIGS / "train_label_corruption_authors.yaml")
    d, t = config.data, config.train
    assert (d.name, config.network.name) == ("geomnist", "lenet")
    # 1000 images per class, half of each class held out: 500 training + 500 validation
    assert d.n_per_class == 1000 and round(d.val_fraction * d.n_per_class) == 500
    assert d.num_train == 1500
    assert (t.trials, t.steps, t.learning_rate, t.eval_every) == (100, 10_000, 0.005, 500)
    assert config.block_size == 10 and (t.snapshots, t.impact_checkpoints) == (0, 0)
    np.testing.assert_allclose(config.corruption, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 2 / 3, 0.7, 0.8])
    assert installed_configs()["train_label_corruption_authors"]["command"] == "train"
    assert main(["configs"]) == 0
    assert "train_label_corruption_authors" in capsys.readouterr().out
