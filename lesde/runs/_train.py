"""`lesde train`: training real networks and logging what the theories describe."""

import sys
import time
from pathlib import Path

import numpy as np
import yaml

from .. import __version__
from ..io import (
    check_output_dir, INTERRUPTED, output_lock, read_log, remove_stale, versions, write_log,
    write_netcdf,
)
from ..io._results import COMPLETE_MARKER, write_json
from ..metrics import SHAPES
from ..nets import corrupt_labels, log_spaced_steps, train_separation, train_sgd
from ..plot import (
    close, plot_logit_trajectories, plot_noise_nonlinearity, plot_separation_grid, plot_validation,
)
from ..solve import fingerprint_of
from ._cf import describe
from ._report import checked, REFUSED
from ._train_config import load_train_config, TrajectoriesConfig


def run_trajectories(config, out: Path, progress: bool = True) -> dict:
    """Experiment 1 of a `TrajectoriesConfig`: one trajectory log per corruption fraction,
    written to out/log_p<p>.nc as soon as it is complete. A log already there from the
    same configuration is kept (an interrupted run resumes at the next fraction).
    Returns {p: log}."""
    data = config.data.build()
    t = config.train
    base = config.model_dump(mode="json")
    base.pop("corruption")
    stamp = fingerprint_of({**base, "precision": versions()["precision"]})
    snaps = log_spaced_steps(t.steps, t.snapshots, multiple=t.eval_every) if t.snapshots else None
    impacts = None
    if t.impact_checkpoints:
        impacts = log_spaced_steps(t.steps, t.impact_checkpoints, multiple=t.eval_every)
    logs = {}
    for p in config.corruption:
        path = out / _log_name(p)
        if path.is_file():
            old = read_log(path)
            if old.attrs.get("config_fingerprint") == stamp and np.isclose(old.attrs.get("corruption", -1), p):
                print(f"p = {p:.4f}: kept {path.name} (same configuration)")
                logs[p] = old
                continue
        labels, flipped = corrupt_labels(data.y_train, p, data.num_classes, seed=config.corruption_seed)
        print(f"p = {p:.4f}: {int(np.sum(flipped))} of {data.num_train} training labels flipped")
        log = train_sgd(
            data.with_train_labels(labels),
            network=config.network.name,
            network_options=config.network.options(),
            trials=t.trials, steps=t.steps, learning_rate=t.learning_rate,
            eval_every=t.eval_every, snapshot_steps=snaps, impact_steps=impacts,
            impact_samples=t.impact_samples, sampling=t.sampling, seed=t.seed,
            progress=progress,
        )
        log.attrs.update(
            corruption=float(p), config_fingerprint=stamp,
            config=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), **versions(),
        )
        write_log(log, path)
        logs[p] = log
    return logs


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
    validation.png); resumes at the next fraction. 'separation': the BatchNorm MLP on a
    grid (separation.nc, load_curves.png). summary.json is written last.

    **Returns:** the exit status: 0 complete, 2 a bad config, data or output folder,
    130 interrupted.
    """
    source = config

    def prepare():
        cfg = load_train_config(source)
        cfg.data.build()  # data-level checks before any training
        return cfg, check_output_dir(out)

    ready = checked("train", prepare)
    if ready is None:
        return REFUSED
    config, out = ready
    with output_lock(out, "lesde train"):
        stale = [COMPLETE_MARKER, "logits.png", "validation.png", "load_curves.png", "phase_diagram.png"]
        if isinstance(config, TrajectoriesConfig):  # logs of fractions this run does not train
            wanted = {_log_name(p) for p in config.corruption}
            stale += sorted(f.name for f in out.glob("log_p*.nc") if f.name not in wanted)
        else:  # results of panels (or of a single grid) this configuration does not train
            wanted = {_panel_file(name) for name in config.grids()}
            stale += sorted(f.name for f in out.glob("separation*.nc") if f.name not in wanted)
        removed = [n for n in remove_stale(out, stale) if n.endswith(".nc")]
        if removed:
            what = "fractions" if isinstance(config, TrajectoriesConfig) else "grids"
            print(f"removed {', '.join(removed)}: from an earlier run, for {what} this "
                  "configuration does not train")
        try:
            return _train_into(config, source, out, progress)
        except KeyboardInterrupt:
            if isinstance(config, TrajectoriesConfig):
                kept = ("the logs of the finished fractions are kept; run the same command "
                        "again to resume at the next fraction")
            elif config.panels:
                kept = ("the results of the finished panels are kept; run the same command "
                        "again to resume at the next panel")
            else:
                kept = "nothing was written (the grid is trained as one computation)"
            print(f"lesde train: interrupted; {kept}", file=sys.stderr)
            return INTERRUPTED


def _log_name(p: float) -> str:
    """The file of the log of corruption fraction p."""
    return f"log_p{p:.4f}.nc"


def _train_into(config, source, out: Path, progress: bool) -> int:
    marker = out / COMPLETE_MARKER
    print(f"lesde {__version__}: lesde train ({config.experiment}); config: {source}")
    start = time.perf_counter()
    written = []
    if isinstance(config, TrajectoriesConfig):
        logs = run_trajectories(config, out, progress=progress)
        results = _trajectory_summary(logs)
        print(f"{'p':>8} {'final val acc (median)':>24} {'train loss (last 10%)':>22}")
        for p, row in results.items():
            acc = row.get("val_acc_final_median", float("nan"))
            print(f"{p:>8} {acc:24.3f} {row['train_loss_last_10pct']:22.4f}")
        titles = {f"p = {p:.3g}": log for p, log in logs.items()}
        window = max(1, next(iter(logs.values())).sizes["step"] // 200)
        close(plot_logit_trajectories(titles, path=out / "logits.png", window=window))
        written.append("logits.png")
        if next(iter(logs.values())).sizes["eval_step"]:
            close(plot_validation(titles, path=out / "validation.png"))
            written.append("validation.png")
        written = [_log_name(p) for p in logs] + written
    else:
        results = run_separation(config, out, progress=progress)
        datasets = results.pop("_datasets")
        written += [_panel_file(name) for name in datasets]
        if config.panels:
            panels = {name: ds for name, ds in datasets.items()}
            close(plot_noise_nonlinearity(panels, path=out / "phase_diagram.png"))
            written.append("phase_diagram.png")
        else:
            ds = datasets[None]
            dims = [d for d in ds["D"].dims if d not in ("seed", "epoch", "layer")]
            if len(dims) >= 2:
                close(plot_separation_grid(ds, path=out / "load_curves.png"))
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


def run_separation(config, out: Path, progress: bool = True) -> dict:
    """Experiment 2 of a `SeparationConfig`: trains the grid (or each panel in turn),
    writes out/separation.nc (out/separation_<panel>.nc) as soon as each is trained and
    returns a summary per panel: the seed means per cell at the last epoch and, for a
    grid of the leaky slope against one noise axis, `lesde.nets.read_phase_diagram`'s
    reading, with the datasets under '_datasets'. A panel file already there from the
    same configuration is kept (an interrupted run resumes at the next panel)."""
    from ..io import open_result

    data = config.data.build()
    t = config.train
    results, datasets = {}, {}
    base = config.model_dump(mode="json", include={"data", "network", "train"})
    for name, (g, epochs) in config.grids().items():
        path = out / _panel_file(name)
        # what this grid's result depends on: not the other panels
        stamp = fingerprint_of({**base, "grid": g.model_dump(mode="json"), "epochs": epochs,
                                "precision": versions()["precision"]})
        ds = None
        if path.is_file():
            try:
                old = open_result(path)
            except Exception:  # noqa: BLE001 - a damaged file is retrained
                old = None
            if old is not None and old.attrs.get("config_fingerprint") == stamp:
                print(f"{path.name}: kept (same configuration)")
                ds = old.load()
        if ds is None:
            label = "" if name is None else f"panel {name}: "
            print(f"{label}{g.num_cells()} cells x {t.seeds} seeds, {epochs} epochs")
            ds = train_separation(
                data, seeds=t.seeds, epochs=epochs, learning_rate=g.learning_rate,
                negative_slope=g.negative_slope, dropout=g.dropout, data_noise=g.data_noise,
                batch_size=g.batch_size, width=config.network.width, depth=config.network.depth,
                eval_epochs=t.eval_epochs, measure=t.measure, stop_loss=t.stop_loss, seed=t.seed,
                chunk_size=t.chunk_size, progress=progress,
            )
            ds.attrs.update(
                config=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
                config_fingerprint=stamp, panel=name or "", **versions(),
            )
            ds = describe(ds)
            title = "lesde train: the law of data separation over a grid of nonlinearity and noise"
            write_netcdf(path, ds, title=title if name is None else f"{title} (panel {name})")
        datasets[name] = ds
        results[name or "grid"] = _separation_summary(ds)
    summary = {"panels": results} if config.panels else results["grid"]
    return {**summary, "_datasets": datasets}


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
