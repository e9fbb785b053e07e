"""Test configuration.

`pytest --x64` (or LESDE_X64=1) runs the whole suite in double precision. Tests that
need double precision regardless (finite-difference gradients) use the `x64` fixture.
"""

import os

import jax
import pytest


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
