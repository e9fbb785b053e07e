"""What the commands say before and after computing: inputs refused (exit status 2) and
flagged members (one line with the counts and the fix)."""

import sys
from collections.abc import Callable
from typing import TypeVar

import jax
import numpy as np

from ..solve import status_counts

T = TypeVar("T")

REFUSED = 2
"""The exit status of a command whose config, input or output folder is refused before
any compute."""


def checked(command: str, prepare: Callable[[], T]) -> T | None:
    """prepare() (reading and checking every input and the output folder), or None after
    printing `lesde {command}: {the error}` to stderr when it refuses one (a
    ValueError, which ConfigError is, or a missing file): the command then exits with
    `REFUSED` before any compute."""
    try:
        return prepare()
    except (ValueError, FileNotFoundError) as e:
        print(f"lesde {command}: {e}", file=sys.stderr)
        return None


def flagged_warning(command: str, status, what: str = "members") -> str | None:
    """One line saying how many members are flagged and what to do, or None."""
    counts = status_counts(status)
    total = int(np.size(status))
    flagged = total - counts.get("success", 0)
    if not flagged:
        return None
    parts = ", ".join(f"{n} {name}" for name, n in counts.items() if name != "success")
    fixes = []
    if "inaccurate" in counts:
        precision = "float64" if jax.config.jax_enable_x64 else "float32"
        fixes.append(
            f"inaccurate: the state's dynamic range swamped {precision} (see "
            "lesde.solve.PRECISION_BITS); rerun "
            + ("" if precision == "float64" else "with --x64 or ")
            + "with a shorter horizon (with the identity model, impacts with alpha + (K-1) "
            "beta = 0 keep the common mode from growing, as configs/phase_transition.yaml does)"
        )
    if "diverged" in counts:
        fixes.append("diverged: the state became non-finite; try a smaller dt or smaller impacts")
    if "solver failed" in counts:
        fixes.append("solver failed: diffrax stopped (max_steps); see the solver options")
    return (
        f"lesde {command}: warning: {flagged} of {total} {what} flagged ({parts}), their "
        f"results are NaN; " + "; ".join(fixes)
    )


def warn(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr)

