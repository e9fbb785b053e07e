"""`lesde train`: training real networks and logging what the theories describe."""

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from .. import __version__
from ..io import (
    check_output_dir, INTERRUPTED, LogError, output_lock, read_log, remove_stale, versions,
    write_log, write_netcdf,
)
from ..io._results import COMPLETE_MARKER, write_json
from ..metrics import SHAPES
from ..nets import corrupt_labels, log_spaced_steps, train_separation, train_sgd
from ..plot import (
    close, plot_logit_trajectories, plot_noise_nonlinearity, plot_separation_grid, plot_validation,
)
from ..solve import fingerprint_of, StoreError
from ._cf import describe
from ._report import checked, REFUSED
from ._train_config import load_train_config, TrajectoriesConfig


PARTS = "parts"
"""The folder, in the output folder, of the part files of blocks of trials and of the
chunk stores of the panels being trained."""


def run_trajectories(config, out: Path, progress: bool = True, data=None) -> dict:
    """Experiment 1 of a `TrajectoriesConfig`: one trajectory log per corruption fraction,
    written to out/log_p<p>.nc as soon as it is complete. `data`: the config's data set
    if already built (else it is built here).

    A fraction is trained in blocks of `train.trials_per_block` trials (default: one
    block of all trials); with several blocks each finished block is written at once to
    out/parts/log_p<p>_trials<first>-<last>.nc, and when all blocks of the fraction are
    there they are joined over `trial` into log_p<p>.nc and the parts removed. A log or
    a part already there from the same configuration (the same `config_fingerprint`,
    which leaves out the fractions and the block size) is kept, so an interrupted run
    resumes at the first missing block; a log of another configuration is removed
    before its fraction is trained. Trial i depends only on (seed, i), so a joined log
    holds the trials of an unblocked run (bitwise for networks whose compiled step does
    not depend on the number of trials trained at once, e.g. the MLP; LeNet's
    convolutions may differ in the last bit of float32).

    **Arguments:**
    - `config`: the `TrajectoriesConfig`.
    - `out`: the output folder (it exists and is writable).
    - `progress`: a progress bar over the SGD steps of each block.

    **Returns:** {p: log} in the order of `config.corruption`.
    """
    data = config.data.build() if data is None else data
    t = config.train
    stamp = _trajectories_fingerprint(config)
    snaps = log_spaced_steps(t.steps, t.snapshots, multiple=t.eval_every) if t.snapshots else None
    impacts = None
    if t.impact_checkpoints:
        impacts = log_spaced_steps(t.steps, t.impact_checkpoints, multiple=t.eval_every)
    blocks = _blocks(t.trials, config.block_size)
    attrs = dict(config_fingerprint=stamp,
                 config=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), **versions())
    logs = {}
    for p in config.corruption:
        path = out / _log_name(p)
        old = _matching_log(path, stamp, p)
        if old is not None:
            print(f"p = {p:.4f}: kept {path.name} (same configuration)")
            logs[p] = old
            _remove_parts(out, p)
            continue
        if path.is_file():
            path.unlink()
            print(f"p = {p:.4f}: removed {path.name} (another configuration, or unreadable)")
        labels, flipped = corrupt_labels(data.y_train, p, data.num_classes, seed=config.corruption_seed)
        print(f"p = {p:.4f}: {int(np.sum(flipped))} of {data.num_train} training labels flipped")

        def train(trials, labels=labels):
            log = train_sgd(
                data.with_train_labels(labels),
                network=config.network.name,
                network_options=config.network.options(),
                trials=trials, steps=t.steps, learning_rate=t.learning_rate,
                eval_every=t.eval_every, snapshot_steps=snaps, impact_steps=impacts,
                impact_samples=t.impact_samples, sampling=t.sampling, seed=t.seed,
                progress=progress,
            )
            log.attrs.update(corruption=float(p), **attrs)
            return log

        if len(blocks) == 1:
            log = train(t.trials)
        else:
            log = _join(_train_blocks(out, p, blocks, stamp, train))
        write_log(log, path)
        _remove_parts(out, p)
        logs[p] = log
    return logs


def _trajectories_fingerprint(config) -> str:
    """The fingerprint of a trajectories configuration that a kept log or part must
    carry: the config without the corruption fractions (each log holds one) and without
    `train.trials_per_block` (how the trials are cut into blocks), and the precision."""
    base = config.model_dump(mode="json")
    base.pop("corruption")
    base["train"].pop("trials_per_block")
    return fingerprint_of({**base, "precision": versions()["precision"]})


def _blocks(trials: int, per_block: int) -> list[tuple[int, int]]:
    """The blocks of trial ids: [(first, stop), ...] covering 0..trials-1 in order,
    each of `per_block` trials but the last."""
    return [(a, min(a + per_block, trials)) for a in range(0, trials, per_block)]


def _part_name(p: float, first: int, stop: int) -> str:
    """The part file of trials first..stop-1 of corruption fraction p."""
    return f"{_log_name(p)[:-3]}_trials{first:04d}-{stop - 1:04d}.nc"


def _parts_of(out: Path, p: float) -> list[Path]:
    """The part files of corruption fraction p in out/parts."""
    return sorted((out / PARTS).glob(f"{_log_name(p)[:-3]}_trials*.nc"))


def _remove_parts(out: Path, p: float, keep: set[str] = frozenset()) -> None:
    """Remove the part files of fraction p (but those named in `keep`), and the parts
    folder when it is left empty."""
    for f in _parts_of(out, p):
        if f.name not in keep:
            f.unlink()
    _remove_empty_parts(out)


def _remove_empty_parts(out: Path) -> None:
    """Remove out/parts if it is there and empty."""
    folder = out / PARTS
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _matching_log(path: Path, stamp: str, p: float, trials: range | None = None):
    """The log at `path` if it is one of this configuration (fingerprint `stamp`) and
    fraction p (and, given `trials`, holds exactly those trial ids); None otherwise (no
    file, another configuration, a file that cannot be read)."""
    if not path.is_file():
        return None
    try:
        old = read_log(path)
    except (LogError, OSError):
        return None
    if old.attrs.get("config_fingerprint") != stamp or not np.isclose(old.attrs.get("corruption", -1), p):
        return None
    if trials is not None and not np.array_equal(old["trial"].values, np.asarray(trials)):
        return None
    return old


def _train_blocks(out: Path, p: float, blocks, stamp: str, train) -> list:
    """The logs of the blocks of trials of fraction p: a part file of this configuration
    in out/parts is kept, a missing block is trained (`train(trial ids)`) and written
    there at once; a part file under a block's name that is not of this configuration,
    fraction and block is removed before the block is trained, and part files of p for
    other blocks are removed first. Prints per block whether it was kept or trained, and
    how long it took. Returns the blocks' logs in trial order."""
    names = [_part_name(p, a, b) for a, b in blocks]
    _remove_parts(out, p, keep=set(names))
    (out / PARTS).mkdir(exist_ok=True)
    parts, times = [], []
    for i, ((a, b), name) in enumerate(zip(blocks, names), 1):
        where = f"p = {p:.4f}: block {i}/{len(blocks)} (trials {a}-{b - 1})"
        part = _matching_log(out / PARTS / name, stamp, p, range(a, b))
        if part is not None:
            print(f"{where}: kept {PARTS}/{name}")
            parts.append(part)
            continue
        if (out / PARTS / name).is_file():
            (out / PARTS / name).unlink()
            print(f"{where}: removed {PARTS}/{name} (another configuration, or unreadable)")
        start = time.perf_counter()
        part = train(list(range(a, b)))
        write_log(part, out / PARTS / name)
        times.append(time.perf_counter() - start)
        left = len(blocks) - i
        eta = f"; {left} left, about {left * np.mean(times) / 60:.1f} min" if left else ""
        print(f"{where}: trained in {times[-1]:.1f} s, written to {PARTS}/{name}{eta}")
        parts.append(part)
    return parts


def _join(parts: list):
    """The log of all trials of a fraction from the logs of its blocks, in trial order:
    the per-trial variables joined over `trial`, the others (steps, eval steps, training
    labels) equal in every part and taken once; the attrs of the first part."""
    return xr.concat(parts, dim="trial", data_vars="minimal", coords="minimal", compat="equals",
                     join="exact", combine_attrs="override")


def _trajectory_summary(logs: dict) -> dict:
    rows = {}
    for p, log in logs.items():
        tail = max(1, log.sizes["step"] // 10)
        row = {"train_loss_last_10pct": float(log["train_loss"][:, -tail:].mean())}
        if log.sizes["eval_step"]:
            row.update(
                val_acc_final_median=float(np.median(log["val_acc"][:, -1])),
                val_loss_final_median=float(np.median(log["val_loss"][:, -1])),
            )
        if "impact" in log.data_vars:
            e = np.asarray(log["impact"][:, -1])  # (trials, K, K) at the last checkpoint
            k = e.shape[-1]
            off = ~np.eye(k, dtype=bool)
            row.update(
                ntk_alpha_final_median=float(np.median(np.trace(e, axis1=1, axis2=2) / k)),
                ntk_beta_final_median=float(np.median(e[:, off].mean(axis=1))),
                ntk_ratio_final_median=float(np.median(log["impact_ratio"][:, -1])),
            )
        rows[f"{p:.4f}"] = row
    return rows


def train_command(config: str | Path, out: str | Path, *, progress: bool = True) -> int:
    """`lesde train`: the experiment of the YAML file `config`. 'trajectories': SGD with
    batch size 1, one log per label-corruption fraction (log_p<p>.nc, logits.png,
    validation.png), each fraction trained in blocks of trials (`train.trials_per_block`)
    written to parts/ as they finish; a rerun resumes at the first missing block.
    'separation': the BatchNorm MLP on a grid (separation.nc, load_curves.png).
    summary.json is written last, when everything is done.

    **Returns:** the exit status: 0 complete, 2 a bad config, data or output folder,
    130 interrupted.
    """
    source = config

    def prepare():
        cfg = load_train_config(source)
        data = cfg.data.build()  # data-level checks before any training; trained on below
        return cfg, data, check_output_dir(out)

    ready = checked("train", prepare)
    if ready is None:
        return REFUSED
    config, data, out = ready
    with output_lock(out, "lesde train"):
        stale = [COMPLETE_MARKER, "logits.png", "validation.png", "load_curves.png", "phase_diagram.png"]
        if isinstance(config, TrajectoriesConfig):  # logs and parts of fractions this run does not train
            wanted = {_log_name(p) for p in config.corruption}
            stale += sorted(f.name for f in out.glob("log_p*.nc") if f.name not in wanted)
            stale += sorted(f"{PARTS}/{f.name}" for f in (out / PARTS).glob("log_p*_trials*.nc")
                            if f"{f.name.split('_trials')[0]}.nc" not in wanted)
        else:  # results and chunks of panels (or of a single grid) this configuration does not train
            wanted = {_panel_file(name) for name in config.grids()}
            stale += sorted(f.name for f in out.glob("separation*.nc") if f.name not in wanted)
            stores = {_store_name(name, stamp) for name, stamp in _panel_stamps(config).items()}
            for folder in sorted((out / PARTS).glob("separation*.*")):
                if folder.is_dir() and folder.name not in stores:
                    shutil.rmtree(folder)
                    print(f"removed {PARTS}/{folder.name}/: the finished chunks of another configuration")
        removed = [n for n in remove_stale(out, stale) if n.endswith(".nc")]
        if removed:
            what = "fractions" if isinstance(config, TrajectoriesConfig) else "grids"
            print(f"removed {', '.join(removed)}: from an earlier run, for {what} this "
                  "configuration does not train")
        try:
            return _train_into(config, source, out, progress, data)
        except StoreError as e:  # finished chunks that cannot be used: the message says what to do
            print(f"lesde train: {e}", file=sys.stderr)
            return REFUSED
        except KeyboardInterrupt:
            if isinstance(config, TrajectoriesConfig):
                kept = _kept_files(config, out)
            else:
                kept = _kept_chunks(config, out)
            print(f"lesde train: interrupted; {kept}", file=sys.stderr)
            return INTERRUPTED


def _kept_files(config, out: Path) -> str:
    """What an interrupted trajectories run leaves for the next one: the logs of the
    finished fractions and the part files of the finished blocks of trials."""
    logs = [_log_name(p) for p in config.corruption if (out / _log_name(p)).is_file()]
    blocks = _blocks(config.train.trials, config.block_size)
    wanted = {_part_name(p, a, b) for p in config.corruption for a, b in blocks} if len(blocks) > 1 else set()
    parts = [f.name for p in config.corruption for f in _parts_of(out, p) if f.name in wanted]
    said = []
    if logs:
        said.append(f"the logs of {len(logs)} of {len(config.corruption)} fractions ({', '.join(logs)})")
    if parts:
        blocks = "1 finished block" if len(parts) == 1 else f"{len(parts)} finished blocks"
        said.append(f"{blocks} of trials in {out / PARTS} ({', '.join(parts)})")
    if not said:
        return "no fraction or block of trials was finished; nothing was kept"
    return (f"kept {' and '.join(said)}; run the same command again to train only the "
            "missing blocks and fractions")


def _kept_chunks(config, out: Path) -> str:
    """What an interrupted separation run leaves for the next one: the files of the
    finished panels (or of the grid) and the finished chunks of members."""
    stamps = _panel_stamps(config)
    files = [_panel_file(name) for name in stamps]
    done = [f for f in files if (out / f).is_file()]
    parts = [f for name, stamp in stamps.items()
             for f in (out / PARTS / _store_name(name, stamp)).glob("members_*.npz")]
    said = []
    if done:
        said.append(f"{', '.join(done)} ({len(done)} of {len(files)} {'panels' if config.panels else 'grids'})")
    if parts:
        said.append(f"{len(parts)} finished {'chunk' if len(parts) == 1 else 'chunks'} of members in {out / PARTS}")
    if not said:
        return "no panel or chunk of members was finished; nothing was kept"
    return f"kept {' and '.join(said)}; run the same command again to train only the rest"


def _log_name(p: float) -> str:
    """The file of the log of corruption fraction p."""
    return f"log_p{p:.4f}.nc"


def _train_into(config, source, out: Path, progress: bool, data) -> int:
    marker = out / COMPLETE_MARKER
    print(f"lesde {__version__}: lesde train ({config.experiment}); config: {source}")
    start = time.perf_counter()
    written = []
    if isinstance(config, TrajectoriesConfig):
        logs = run_trajectories(config, out, progress=progress, data=data)
        results = _trajectory_summary(logs)
        print(f"{'p':>8} {'final val acc (median)':>24} {'train loss (last 10%)':>22}")
        for p, row in results.items():
            acc = row.get("val_acc_final_median", float("nan"))
            print(f"{p:>8} {acc:24.3f} {row['train_loss_last_10pct']:22.4f}")
        titles = {f"p = {p:.3g}": logs[p] for p in sorted(logs)}  # figures in increasing p
        window = max(1, next(iter(logs.values())).sizes["step"] // 200)
        close(plot_logit_trajectories(titles, path=out / "logits.png", window=window))
        written.append("logits.png")
        if next(iter(logs.values())).sizes["eval_step"]:
            close(plot_validation(titles, path=out / "validation.png"))
            written.append("validation.png")
        written = [_log_name(p) for p in logs] + written
    else:
        results = run_separation(config, out, progress=progress, data=data)
        datasets = results.pop("_datasets")
        written += [_panel_file(name) for name in datasets]
        if config.panels:
            panels = {name: ds for name, ds in datasets.items()}
            close(plot_noise_nonlinearity(panels, path=out / "phase_diagram.png",
                                          normalisation=config.figure.normalisation))
            written.append("phase_diagram.png")
        else:
            ds = datasets[None]
            dims = [d for d in ds["D"].dims if d not in ("seed", "epoch", "layer")]
            if len(dims) >= 2:
                close(plot_separation_grid(ds, path=out / "load_curves.png",
                                           normalisation=config.figure.normalisation))
                written.append("load_curves.png")
    elapsed = time.perf_counter() - start
    summary = {
        "experiment": config.experiment,
        "results": results,
        "wall_time_s": round(elapsed, 3),
        **versions(),
    }
    write_json(marker, summary)
    print(f"{elapsed:.1f} s; results in {out}/ ({', '.join(written)}, summary.json)")
    return 0


def _panel_file(name: str | None) -> str:
    """The result file of a separation panel (of the single grid: separation.nc)."""
    return "separation.nc" if name is None else f"separation_{name}.nc"


def run_separation(config, out: Path, progress: bool = True, data=None) -> dict:
    """Experiment 2 of a `SeparationConfig` (`data`: its data set if already built, else
    built here): trains the grid (or each panel in turn),
    writes out/separation.nc (out/separation_<panel>.nc) as soon as each is trained and
    returns a summary per panel: the seed means per cell at the last epoch and, for a
    grid of the leaky slope against one noise axis, `lesde.nets.read_phase_diagram`'s
    reading, with the datasets under '_datasets'. A panel file already there from the
    same configuration is kept. Each chunk of members (`train.chunk_size`; all members of
    a batch size by default) is written when trained to the panel's chunk store,
    out/parts/separation[_<panel>].<fingerprint>/ (`lesde.solve.ChunkStore`), removed
    when the panel's file is written: an interrupted run resumes, losing at most the
    chunk that was running."""
    from ..io import open_result, ResultError

    data = config.data.build() if data is None else data
    t = config.train
    results, datasets = {}, {}
    stamps = _panel_stamps(config)
    for name, (g, epochs) in config.grids().items():
        path = out / _panel_file(name)
        stamp = stamps[name]
        store = out / PARTS / _store_name(name, stamp)
        ds = None
        if path.is_file():
            try:
                with open_result(path) as old:
                    if old.attrs.get("config_fingerprint") == stamp:
                        ds = old.load()
                        print(f"{path.name}: kept (same configuration)")
            except (ResultError, OSError):  # a damaged file is trained again
                ds = None
        if ds is None:
            label = "" if name is None else f"panel {name}: "
            print(f"{label}{g.num_cells()} cells x {t.seeds} seeds, {epochs} epochs")
            ds = train_separation(
                data, seeds=t.seeds, epochs=epochs, learning_rate=g.learning_rate,
                negative_slope=g.negative_slope, dropout=g.dropout, data_noise=g.data_noise,
                batch_size=g.batch_size, width=config.network.width, depth=config.network.depth,
                eval_epochs=t.eval_epochs, measure=t.measure, stop_loss=t.stop_loss, seed=t.seed,
                chunk_size=t.chunk_size, store=store, fingerprint=stamp, progress=progress,
            )
            ds.attrs.update(
                config=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
                config_fingerprint=stamp, panel=name or "", **versions(),
            )
            ds = describe(ds)
            title = "lesde train: the law of data separation over a grid of nonlinearity and noise"
            write_netcdf(path, ds, title=title if name is None else f"{title} (panel {name})")
        shutil.rmtree(store, ignore_errors=True)  # the panel's file holds them all
        _remove_empty_parts(out)
        datasets[name] = ds
        results[name or "grid"] = _separation_summary(ds)
    summary = {"panels": results} if config.panels else results["grid"]
    return {**summary, "_datasets": datasets}


def _panel_stamps(config) -> dict:
    """{panel name (None for a single grid): the fingerprint its result file and chunk
    store carry}: what the panel's result depends on (data, network, training, its grid
    and epochs, the precision), not the other panels, nor `train.chunk_size`."""
    base = config.model_dump(mode="json", include={"data", "network", "train"})
    base["train"].pop("chunk_size")  # how the members are cut into chunks
    return {name: fingerprint_of({**base, "grid": g.model_dump(mode="json"), "epochs": epochs,
                                  "precision": versions()["precision"]})
            for name, (g, epochs) in config.grids().items()}


def _store_name(name: str | None, stamp: str) -> str:
    """The folder, in out/parts, of the finished chunks of a panel (None: the grid) of
    the configuration with fingerprint `stamp`."""
    return f"{_panel_file(name)[:-3]}.{stamp}"


def _separation_summary(ds) -> dict:
    """Seed means per cell at the last epoch, and the phase-diagram reading when the
    grid is the leaky slope against one noise axis."""
    from ..nets import NOISE_AXES, read_phase_diagram

    last = ds.isel(epoch=-1).mean("seed")
    cells = []
    dims = [d for d in last["test_acc"].dims]
    for idx in np.ndindex(*[last.sizes[d] for d in dims]):
        sel = dict(zip(dims, idx))
        cell = {d: float(last[d][i]) for d, i in sel.items()}
        c = last.isel(sel)
        cell.update(
            test_acc=float(c["test_acc"]), curvature=float(c["curvature"]),
            nonuniformity=float(c["nonuniformity"]), correlation=float(c["correlation"]),
            stop_epoch=float(c["stop_epoch"]),
            shape=SHAPES.get(int(np.sign(np.round(float(c["shape"])))), "undefined")
            if np.isfinite(float(c["shape"])) else "undefined",
        )
        cells.append(cell)
    print(f"{len(cells)} cells; test accuracy {min(c['test_acc'] for c in cells):.3f} .. "
          f"{max(c['test_acc'] for c in cells):.3f}")
    out = {"cells": cells}
    swept = set(dims)
    if "negative_slope" in swept and len(swept) == 2 and len(swept & set(NOISE_AXES)) == 1:
        reading = read_phase_diagram(ds)
        out["reading"] = reading
        print(f"  {reading['axis']}: convex cells {reading['convex_fraction']['value']}, "
              f"boundary vs slope rank correlation {reading['boundary_rank_correlation']['value']}, "
              f"rank correlation of |curvature| with accuracy {reading['mean_rank_correlation']['value']}")
    return out
