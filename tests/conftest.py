"""Test-session settings shared by every test module."""

from __future__ import annotations

import jax

# XLA's backend optimisations cost most of this suite's time (compiling hundreds of
# small programs) and buy little at test sizes: the tests compile without them. The
# notebooks' kernels, the subprocess tests, the benchmarks and the tour are separate
# processes and run fully optimised.
jax.config.update("jax_disable_most_optimizations", True)

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
