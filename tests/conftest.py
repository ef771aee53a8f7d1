"""Test-session settings shared by every test module."""

from __future__ import annotations

import os

import _compile
import jax

# The tests compile without XLA's backend optimisations and fusion emitters (_compile.py
# says why). The flags are read once, when the backend starts (here); XLA_FLAGS is then
# restored, so the notebooks' kernels run fully optimised, and the subprocess tests opt in
# through _compile.subprocess_env.
jax.config.update("jax_disable_most_optimizations", True)
_user_flags = os.environ.get("XLA_FLAGS")
os.environ["XLA_FLAGS"] = f"{_user_flags or ''} {_compile.XLA_FLAGS}".strip()
jax.devices()
if _user_flags is None:
    del os.environ["XLA_FLAGS"]
else:
    os.environ["XLA_FLAGS"] = _user_flags

# Modules whose tests are long single runs (a docs build, a wheel install, subprocesses
# with 8 forced devices or two processes): marked slow, so `make test-fast` leaves them out.
SLOW_MODULES = {
    "test_docs.py",
    "test_install.py",
    "test_multiprocess.py",
    "test_kmeans_sharded.py",
    "test_plsa_sharded.py",
}


def is_long(item) -> bool:
    return any(item.iter_markers(name="slow")) or any(item.iter_markers(name="notebook"))


def pytest_collection_modifyitems(config, items):
    """Marks the slow modules, then puts every long test first: under pytest-xdist they
    run beside the unit tests instead of after them (tests go out in collection order)."""
    import pytest

    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: not is_long(item))
