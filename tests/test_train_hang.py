"""`lesde train` always finishes: the separation experiment with the default network
(width 100, depth 8) on 4 leaky slopes x 2 seeds, each run in a fresh process under a
timeout.

The hang guarded against is a deadlock on XLA's CPU thread pool: batched LAPACK calls
that each block a pool thread while waiting for chunks queued on that same pool, several
of them running at once in one compiled program (why `lesde.nets._train` measures the
separation of all layers with one SVD; see `_fuzziness_by_layer`). It needs every pool
thread to block at once, and XLA sizes the pool by the CPUs the process may use, so the
child is pinned to two CPUs: the test behaves alike on any machine with at least two.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

CONFIG = {
    "experiment": "separation",
    "data": {"name": "digits", "val_fraction": 0.2, "seed": 0},
    "network": {"width": 100, "depth": 8},
    "grid": {"negative_slope": [0.0, 0.25, 0.5, 1.0]},
    "train": {"seeds": 2, "epochs": 1, "seed": 0},
}

# `lesde train ARGS` on at most two CPUs.
CHILD = textwrap.dedent(
    """
    import os, sys
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
    from lesde.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)

TIMEOUT_S = 240  # a run takes 10-40 s (the first, which compiles, the longest)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_hang")
    config = root / "separation.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # The runs after the first load the compiled programs from this cache: the deadlock is
    # in running them, so the cache saves time without hiding it.
    env.update(
        JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return root, config, env


def _train(setup, name: str, run: int) -> None:
    root, config, env = setup
    out = root / f"{name}{run}"
    cmd = [sys.executable, "-c", CHILD, "train", str(config), "--out", str(out), "--quiet"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:  # the child is killed
        proc = None
    if proc is None:
        pytest.fail(
            f"run {run}: `lesde train` (separation) did not finish within {TIMEOUT_S} s: it hung",
            pytrace=False,
        )
    assert proc.returncode == 0, f"run {run}: exit status {proc.returncode}\n{proc.stderr[-3000:]}"
    assert (out / "summary.json").is_file(), f"run {run}: no summary.json\n{proc.stdout}"


def test_separation_training_finishes(setup):
    _train(setup, "default", 0)  # before the fix, every run (10 of 10) hung


@pytest.mark.slow
def test_separation_training_finishes_20_times(setup):
    for run in range(20):
        _train(setup, "slow", run)
