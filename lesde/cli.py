"""Command line: `lesde simulate`, `lesde sweep`, `lesde boundary`, `lesde spring`, `lesde train`, `lesde fit`,
`lesde plot`, `lesde configs`. Argument parsing only: each command calls its function in `lesde.runs`,
whose return value is the exit status. Ctrl-C (exit status 130) and SIGTERM (143) stop a
command alike: it keeps what it finished and says so."""

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

import jax

from . import __version__, runs
from .io import INTERRUPTED, OutputError, TERMINATED


@contextlib.contextmanager
def _sigterm_as_interrupt(received: list[int]) -> Iterator[None]:
    """While a command runs, SIGTERM (a batch scheduler's stop, `kill PID`) stops it as
    Ctrl-C does: it raises KeyboardInterrupt where the command is, so the command keeps
    what it finished, writes nothing that looks complete and says what it kept. The
    signal is appended to `received` (the exit status is then 143, not 130); a second
    SIGTERM while the command winds down is only recorded, so that it can finish saving.
    Outside the main thread (where no handler can be set) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:  # None: a handler not set from Python, which cannot be put back; the default then
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _positive_int(text: str) -> int:
    """An argparse type: an int >= 1 (argparse's error, exit status 2, otherwise)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {n}")
    return n


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (argparse's error, exit status 2, otherwise)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (x > 0 and x < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="lesde", description="Simulate locally elastic SDEs of training dynamics.",
        epilog="Exit status: 0 complete, every member healthy; 1 complete, but members "
        "flagged (diverged, inaccurate: their results are NaN) or the run failed; 2 a bad "
        "config, input or output location (refused before any compute) or an output "
        "folder that another lesde command is writing; 130 interrupted (Ctrl-C): no "
        "summary.json, what was kept is printed. Every command takes --x64 and "
        "--import EXTENSION (modules that register gradient models or metrics).",
    )
    parser.add_argument("--version", action="version", version=f"lesde {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "simulate",
        help="solve one LE-SDE run from a YAML config",
        description="Solve one LE-SDE run; writes config.yaml, trajectory.nc and "
        "summary.json (written last: its presence marks a complete run) to --out.",
    )
    p.add_argument("config", nargs="?", default=None, help="YAML config (default: embedded)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda a: runs.simulate_command(a.config, a.out, progress=not a.quiet))
    p = sub.add_parser(
        "sweep",
        help="solve a parameter sweep as one batched computation",
        description="Solve every cell x seed of a sweep config; writes sweep.nc (xarray, "
        "netCDF) and phase_diagram.png to --out. Rerunning after an interruption resumes.",
    )
    p.add_argument("config", help="YAML sweep config (`lesde configs` lists the installed ones)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--chunk-size", type=_positive_int, default=None, help="members per compiled call")
    p.add_argument(
        "--distributed", action="store_true",
        help="several hosts: call jax.distributed.initialize() (run the same command on each)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda a: runs.sweep_command(
        a.config, a.out, chunk_size=a.chunk_size, distributed=a.distributed, progress=not a.quiet
    ))
    p = sub.add_parser(
        "boundary",
        help="locate a phase boundary by a batched bracket search, with confidence intervals",
        description="For every cell of the outer axes (and every horizon), locate where the "
        "order parameter crosses its threshold along the inner axis, all brackets advancing "
        "together (one compiled solve); measure the transition's width and its scaling with "
        "the horizon. Writes boundary.nc, boundary.png and summary.json (last) to --out. "
        "Exit status 1: cells not located (not bracketed, non-monotone, flagged members). "
        "`lesde configs` lists the installed boundary_* configs.",
    )
    p.add_argument("config", help="YAML boundary config (`lesde configs` lists the installed boundary_* ones)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda a: runs.boundary_command(a.config, a.out, progress=not a.quiet))
    p = sub.add_parser(
        "spring",
        help="run one spring-block model (default: the authors' map setting) over seeds",
        description="Run a spring-block model (kind spring_map or spring_sde) for several "
        "seeds; writes config.yaml, trajectory.nc (block positions), spring.png and "
        "summary.json (last) to --out. `lesde configs` lists the installed configs "
        "(spring_map_authors, spring_sde_authors).",
    )
    p.add_argument("config", nargs="?", default=None, help="YAML config (default: embedded)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=lambda a: runs.spring_command(a.config, a.out))
    p = sub.add_parser(
        "train",
        help="train real networks and log what the theories describe",
        description="Experiment 'trajectories': SGD with batch size 1, many trials, one "
        "log per label-corruption fraction (log_p<p>.nc, logits.png, validation.png). "
        "Experiment 'separation': the BatchNorm MLP on a noise x nonlinearity grid "
        "(separation.nc, load_curves.png), or on several grids, its `panels` "
        "(separation_<panel>.nc each, kept when rerun; phase_diagram.png). summary.json "
        "is written last. See the installed train_* and separation_* configs (`lesde configs`).",
    )
    p.add_argument("config", help="YAML training config (`lesde configs` lists the installed ones)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda a: runs.train_command(a.config, a.out, progress=not a.quiet))
    p = sub.add_parser(
        "fit",
        help="fit an LE-ODE / LE-SDE to a trajectory log through the solver",
        description="Fit an LE-ODE or LE-SDE (`lesde configs`: fit_*) to a trajectory log (.nc "
        "from `lesde train`, or the LE-SDE authors' .csv): closed-form estimates, the "
        "gradient fit with standard errors, the prediction of the held-out later window. "
        "Writes report.json, fit.nc, fit.png, closed_form.png and summary.json (last) to "
        "--out. Exit status 2: an invalid config, log or --out (nothing computed); 1: the "
        "fit failed (nothing written) or its loss became non-finite (outputs marked "
        "\"converged\": false); 130: interrupted (report.json and fit.nc marked "
        "\"complete\": false, no summary.json).",
    )
    p.add_argument("log", help="trajectory log (.nc or .csv)")
    p.add_argument("--config", required=True, help="YAML fit config (`lesde configs` lists the installed fit_* ones)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--ragged", choices=("error", "common_steps", "complete_trials"), default="error",
        help="a .csv log whose trials stopped at different steps (a run killed while it "
        "was logged): refuse it (error, the default), fit the steps every trial has "
        "(common_steps), or the trials that reached the last step (complete_trials)",
    )
    p.set_defaults(func=lambda a: runs.fit_command(a.log, a.config, a.out, progress=not a.quiet,
                                                   ragged=a.ragged))
    p = sub.add_parser(
        "plot",
        help="draw the phase diagram of a sweep result (and its load-curve grid for a "
        "spring-block sweep)",
    )
    p.add_argument("result", help="a sweep.nc file")
    p.add_argument("--out", default=None, help="figure path, .png, .pdf or .svg (default: "
                   "the result's name, .png); a missing folder is created")
    p.add_argument("--metrics", nargs="+", default=None, help="metrics to draw")
    p.add_argument("--dpi", type=_positive_float, default=None,
                   help="resolution of a PNG (default 110)")
    p.set_defaults(func=lambda a: runs.plot_command(a.result, a.out, metrics=a.metrics,
                                                    dpi=a.dpi))
    for command in sub.choices.values():
        if not any(action.dest == "quiet" for action in command._actions):
            command.add_argument(  # so that a script may pass --quiet to every command
                "--quiet", action="store_true", help="no progress bar (this command shows none)",
            )
        command.add_argument(
            "--x64", action="store_true",
            help="compute in double precision (float64; default float32): for long horizons "
            "or growing states whose float32 results are flagged inaccurate",
        )
        command.add_argument(
            "--import", dest="imports", action="append", default=[], metavar="EXTENSION",
            help="a module name or .py file to import first, which registers gradient "
            "models or metrics that the config names (repeatable)",
        )
    p = sub.add_parser(
        "configs",
        help="list the configs installed with lesde, or copy one out to edit and run",
        description="Without NAME: list the installed configs (the command that runs each, "
        "and what it does). With NAME: copy that config to --out (a file, or a folder that "
        "receives NAME.yaml, created if missing; default ./NAME.yaml).",
    )
    p.add_argument("name", nargs="?", default=None, help="an installed config, e.g. phase_transition")
    p.add_argument("--out", default=None, help="where to copy it (default ./NAME.yaml)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--quiet", action="store_true", help="no progress bar (this command shows none)")
    p.set_defaults(func=lambda a: runs.configs_command(a.name, a.out, force=a.force))
    args = parser.parse_args(argv)
    imports = getattr(args, "imports", [])
    if runs.checked(args.command, lambda: runs.import_extensions(imports)) is None:
        return runs.REFUSED
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", bool(getattr(args, "x64", False)) or old)
    received: list[int] = []
    try:
        with _sigterm_as_interrupt(received):
            code = args.func(args)
    except OutputError as e:  # e.g. another run holds the output folder
        print(f"lesde {args.command}: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"lesde {args.command}: interrupted; no result was completed", file=sys.stderr)
        code = INTERRUPTED
    finally:
        jax.config.update("jax_enable_x64", old)
    return TERMINATED if received and code == INTERRUPTED else code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
