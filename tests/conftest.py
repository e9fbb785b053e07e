"""Test configuration.

`pytest --x64` (or LESDE_X64=1) runs the whole suite in double precision. Tests that
need double precision regardless (finite-difference gradients) use the `x64` fixture.

Most of a test's time is XLA compiling small programs, so the suite compiles with the
backend's optimisation level 0 (`--xla_backend_optimization_level=0` in XLA_FLAGS, for
this process and the ones it starts): about a third less time, the same results up to
rounding. LESDE_TEST_XLA_OPT_LEVEL=3 (or a flag already in XLA_FLAGS) runs it as users
run lesde.
"""

import os

_OPT = "--xla_backend_optimization_level"
if _OPT not in os.environ.get("XLA_FLAGS", ""):  # before jax starts its backend
    level = os.environ.get("LESDE_TEST_XLA_OPT_LEVEL", "0")
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_OPT}={level}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--x64", action="store_true", help="enable jax_enable_x64 for all tests")


def pytest_configure(config):
    if config.getoption("--x64") or os.environ.get("LESDE_X64", "") not in ("", "0"):
        jax.config.update("jax_enable_x64", True)


@pytest.fixture
def x64():
    """Double precision for one test, restored afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.fixture
def getkey():
    """A fresh, deterministic key on each call."""
    state = {"i": 0}

    def _getkey():
        state["i"] += 1
        return jax.random.key(state["i"])

    return _getkey
