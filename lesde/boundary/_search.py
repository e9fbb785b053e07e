"""The batched bracket search: every cell's bracket advances in the same round, each round
one batch of probes, until the brackets are as narrow as the tolerance."""

import math
import time
from collections.abc import Callable

import numpy as np

from .._checks import check_positive_int
from ._order import OrderParameter

CELL_STATUS = {"located": 0, "not_bracketed": 1, "non_monotone": 2, "flagged": 3}
"""The status of a cell of a boundary search: 0 located (the order parameter crosses the
threshold once in the range, and the bracket was narrowed to the tolerance); 1
not_bracketed (the ends of the range lie on the same side of the threshold); 2
non_monotone (the probes show the order parameter crossing more than once, or
decreasing where it increases overall, beyond their confidence intervals); 3 flagged (a
member of a probe was flagged: diverged, solver failed or inaccurate; the probe is no
measurement, its value NaN)."""

LOCATED, NOT_BRACKETED, NON_MONOTONE, FLAGGED = CELL_STATUS.values()


def search_rounds(width: float, tol: float, *, initial: int = 5, points: int = 1) -> int:
    """Rounds after the first that narrow a range of `width` to a bracket of at most
    `tol`: the first round's `initial` evenly spaced probes leave brackets of
    width / (initial - 1), and each later round's `points` interior probes divide a
    bracket into points + 1 equal parts, so R = ceil(log(width / ((initial - 1) tol)) /
    log(points + 1)) (0 when the first round suffices)."""
    ratio = width / ((initial - 1) * tol)
    if ratio <= 1:
        return 0
    return max(0, math.ceil(math.log(ratio) / math.log(points + 1) - 1e-9))


def grid_points(width: float, tol: float) -> int:
    """Points of the evenly spaced grid whose brackets are at most `tol` wide over a
    range of `width`: ceil(width / tol) + 1 (the grid of the same resolution as a
    search to tolerance `tol`)."""
    return math.ceil(width / tol - 1e-9) + 1


def _check_search(tol, points, initial, level):
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    points = check_positive_int("points", points)
    initial = check_positive_int("initial", initial)
    if initial < 2:
        raise ValueError(f"initial must be at least 2 (the ends of the range), got {initial}")
    if not (isinstance(level, (int, float)) and not isinstance(level, bool) and 0 < level < 1):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    return float(tol), points, initial, float(level)


def bracket_search(
    evaluate: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    lo,
    hi,
    *,
    order: OrderParameter,
    tol: float,
    points: int = 1,
    initial: int = 5,
    level: float = 0.95,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    r"""Locate, in each of C cells, where an order parameter f(x) crosses a threshold
    theta along x in [lo_c, hi_c], by a batched bracket search.

    Round 0 probes `initial` evenly spaced points of every cell (ends included). A cell
    whose ends lie on the same side of theta is `not_bracketed`; otherwise its bracket
    [a, b] is the first pair of neighbouring probes whose estimates lie on either side
    of theta. Every later round probes `points` evenly spaced interior points of every
    open bracket, all cells in one call of `evaluate`, and keeps the sub-bracket where
    the estimates cross, until b - a <= tol (`search_rounds` rounds; `points = 1` is
    bisection). The located value is the linear interpolation of theta between the
    estimates at a and b, so it lies within tol of the crossing whenever the estimates
    at a and b lie on the true sides of theta.

    Each probe is `seeds` members; `order.estimate` reduces them to an estimate with a
    confidence interval at the level 1 - (1 - level) / m, m = initial + R points the
    probes a cell can have (Bonferroni), so that all the probes of a cell cover their
    true values together with probability at least `level`. A probe is significantly
    above theta when its interval lies above theta, below when it lies below; for a
    cell where f increases (the estimate at hi is above theta) the confidence interval
    of the critical value is

        [max{x : probe at x significantly below}, min{x : probe at x significantly above}]

    (mirrored where f decreases; a side with no significant probe is the end of the
    range). For a monotone f it covers the crossing with probability at least `level`,
    whatever the search did. A cell is `non_monotone` when its significant probes change
    side more than once, or in the direction opposite to the one of its ends, or when
    a probe's interval lies wholly above (increasing f) that of a probe further right;
    and `flagged` when a probe has a NaN seed (a flagged member). Such cells stop; the
    others go on.

    **Arguments:**
    - `evaluate`: evaluate(cell, x, probe_id) -> (values, status), for n probes at once
      (int arrays `cell`, `probe_id` and floats `x`, each of length n): values (n,
      seeds) of the metric, NaN where a member is flagged, and status (n, seeds) of
      the members (0 healthy). `probe_id` numbers the probes of the search from 0, for
      the random keys of their members.
    - `lo`, `hi`: the range of each cell (arrays of length C, or scalars with `lo`
      an array); lo < hi.
    - `order`: the `OrderParameter` (reduction and threshold).
    - `tol`: the largest width of a final bracket.
    - `points`: interior probes per bracket and round (1: bisection).
    - `initial`: probes of each cell in round 0 (>= 2).
    - `level`: the confidence level of the intervals of the critical values.
    - `progress`: a progress bar over the rounds.

    **Returns:** a dict of NumPy arrays: per cell (length C) `critical`,
    `critical_low`, `critical_high`, `cell_status` (`CELL_STATUS`), `rounds`,
    `num_probes`, `bracket_low`, `bracket_high`, `direction` (+1 increasing, -1
    decreasing, 0 unknown); per cell and probe (C, m), padded with NaN (-1 for ints)
    and in the order probed, `probe_x`, `probe_mean`, `probe_low`, `probe_high`,
    `probe_se`, `probe_round`, `probe_status` (the worst member status); and scalars
    `members_solved`, `probe_level`, `max_rounds`, `wall_time_s`.

    Example (a logistic order parameter centred at 0.3 in one cell, 32 Bernoulli seeds):

        rng = np.random.default_rng(0)
        def evaluate(cell, x, ids):
            p = 1 / (1 + np.exp(-(x - 0.3) / 0.02))
            return (rng.random((len(x), 32)) < p[:, None]).astype(float), np.zeros((len(x), 32), int)
        out = bracket_search(evaluate, np.array([0.0]), 1.0,
                             order=OrderParameter("hit", 0.5), tol=0.01)
        out["critical"]  # about 0.3
    """
    from .._progress import progress_bar

    tol, points, initial, level = _check_search(tol, points, initial, level)
    lo = np.atleast_1d(np.asarray(lo, dtype=float))
    hi = np.broadcast_to(np.asarray(hi, dtype=float), lo.shape).copy()
    if lo.ndim != 1 or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError(f"lo and hi must be finite numbers per cell, got {lo!r}, {hi!r}")
    bad = np.flatnonzero(~(hi > lo))
    if bad.size:
        c = int(bad[0])
        raise ValueError(f"cell {c}: the range must have lo < hi, got lo = {lo[c]:g}, hi = {hi[c]:g}")
    C = lo.size
    rounds_needed = search_rounds(float((hi - lo).max()), tol, initial=initial, points=points)
    m = initial + rounds_needed * points
    probe_level = 1 - (1 - level) / m
    theta = float(order.threshold)

    xs = [[] for _ in range(C)]
    est = [[] for _ in range(C)]  # (mean, low, high, se, round, status)
    status = np.full(C, LOCATED, np.int32)
    direction = np.zeros(C, np.int32)
    bracket = np.stack([lo, hi], axis=1)
    rounds = np.zeros(C, np.int32)
    next_id = 0
    members = 0
    start = time.perf_counter()

    def run(cells: np.ndarray, x: np.ndarray, r: int):
        nonlocal next_id, members
        ids = np.arange(next_id, next_id + len(cells))
        next_id += len(cells)
        values, st = evaluate(cells, x, ids)
        values = np.asarray(values, dtype=float)
        st = np.asarray(st)
        if values.shape[0] != len(cells) or values.ndim != 2 or st.shape != values.shape:
            raise ValueError(
                f"evaluate must return values and status of shape (probes, seeds) = ({len(cells)}, "
                f"seeds), got {values.shape} and {st.shape}"
            )
        members += values.size
        mean, low, high, se, _ = order.estimate(values, probe_level)
        worst = st.max(axis=1)
        for i, c in enumerate(cells):
            xs[c].append(float(x[i]))
            est[c].append((mean[i], low[i], high[i], se[i], r, int(worst[i])))
            rounds[c] = r

    def update(c: int):
        """The status, direction and bracket of cell c from all its probes."""
        order_x = np.argsort(xs[c], kind="stable")
        x = np.asarray(xs[c])[order_x]
        e = np.asarray(est[c], dtype=float)[order_x]
        mean, low, high = e[:, 0], e[:, 1], e[:, 2]
        if np.isnan(mean).any():
            status[c] = FLAGGED
            return
        above = mean >= theta
        sig = np.where(low > theta, 1, np.where(high < theta, -1, 0))
        seq = sig[sig != 0]
        changes = int(np.count_nonzero(np.diff(seq)))
        if above[0] == above[-1]:
            status[c] = NON_MONOTONE if changes >= 2 else NOT_BRACKETED
            return
        d = 1 if above[-1] else -1
        direction[c] = d
        wrong_way = changes == 1 and seq[0] == d  # e.g. increasing overall, but + then -
        if d > 0:
            reversed_pair = (np.maximum.accumulate(low)[:-1] > high[1:]).any()
        else:
            reversed_pair = (np.minimum.accumulate(high)[:-1] < low[1:]).any()
        if changes > 1 or wrong_way or reversed_pair:
            status[c] = NON_MONOTONE
            return
        a, b = bracket[c]
        inside = np.flatnonzero((x >= a) & (x <= b))
        flips = np.flatnonzero(above[inside][:-1] != above[inside][1:])
        i = inside[flips[0]]
        bracket[c] = x[i], x[i + 1]

    bar = progress_bar(total=rounds_needed + 1, unit="round", desc="boundary", disable=not progress)
    try:
        cells = np.repeat(np.arange(C), initial)
        frac = np.tile(np.linspace(0.0, 1.0, initial), C)
        run(cells, lo[cells] + frac * (hi - lo)[cells], 0)
        for c in range(C):
            update(c)
        bar.update(1)
        for r in range(1, rounds_needed + 1):
            width = bracket[:, 1] - bracket[:, 0]
            active = np.flatnonzero((status == LOCATED) & (width > tol * (1 + 1e-9)))
            if not active.size:
                break
            cells = np.repeat(active, points)
            frac = np.tile(np.arange(1, points + 1) / (points + 1), active.size)
            run(cells, bracket[cells, 0] + frac * width[cells], r)
            for c in active:
                update(c)
            bar.update(1)
    finally:
        bar.close()

    crit = np.full(C, np.nan)
    crit_lo = np.full(C, np.nan)
    crit_hi = np.full(C, np.nan)
    for c in range(C):
        if status[c] != LOCATED:
            continue
        x = np.asarray(xs[c])
        e = np.asarray(est[c], dtype=float)
        a, b = bracket[c]
        fa, fb = (e[np.flatnonzero(x == v)[0], 0] for v in (a, b))
        w = (theta - fa) / (fb - fa) if fb != fa else 0.5
        crit[c] = a + float(np.clip(w, 0.0, 1.0)) * (b - a)
        sig = np.where(e[:, 1] > theta, 1, np.where(e[:, 2] < theta, -1, 0))
        before, after = (-1, 1) if direction[c] > 0 else (1, -1)
        left = x[sig == before]
        right = x[sig == after]
        crit_lo[c] = left.max() if left.size else lo[c]
        crit_hi[c] = right.min() if right.size else hi[c]

    P = max(len(v) for v in xs)
    def padded(k, fill=np.nan, dtype=float):
        out = np.full((C, P), fill, dtype=dtype)
        for c in range(C):
            col = np.asarray(xs[c]) if k is None else np.asarray(est[c], dtype=float)[:, k]
            out[c, : len(col)] = col
        return out

    return {
        "critical": crit,
        "critical_low": crit_lo,
        "critical_high": crit_hi,
        "cell_status": status,
        "rounds": rounds,
        "num_probes": np.asarray([len(v) for v in xs], np.int32),
        "bracket_low": bracket[:, 0].copy(),
        "bracket_high": bracket[:, 1].copy(),
        "direction": direction,
        "probe_x": padded(None),
        "probe_mean": padded(0),
        "probe_low": padded(1),
        "probe_high": padded(2),
        "probe_se": padded(3),
        "probe_round": padded(4, -1, np.int32),
        "probe_status": padded(5, -1, np.int32),
        "members_solved": members,
        "probe_level": probe_level,
        "max_rounds": rounds_needed,
        "wall_time_s": time.perf_counter() - start,
    }
