"""How the test processes compile, shared with the subprocesses the tests start.

XLA's backend optimisations and its fusion emitters cost most of this suite's time
(compiling hundreds of small programs) and buy little at test sizes. Without them,
``tests/em/test_kmeans.py`` with ``tests/newton/test_least_squares.py`` ran in 54-80 s
against 90-94 s (serial, several runs on a noisy machine), and the 8-device K-Means
test in 7 s against 13 s.
"""

from __future__ import annotations

import os

XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false"


def subprocess_env(devices: int) -> dict[str, str]:
    """``os.environ`` for a test subprocess on ``devices`` forced CPU devices, compiled
    as the tests are."""
    flags = f"--xla_force_host_platform_device_count={devices} {XLA_FLAGS}"
    return dict(
        os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1"
    )
