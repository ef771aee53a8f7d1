"""The one timer of the tour, the examples and the benchmarks.

Every call is warmed up first (the first call, compilation included, is kept as
``first``), every timed call ends in ``jax.block_until_ready`` so asynchronous
dispatch is counted, and several calls timed together run round-robin, so that
load from other processes spreads over all of them instead of hitting one.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call: ``median``, ``min`` and ``max`` over ``repeats`` timed calls, and
    ``first`` for the first warm-up call (compilation + one run). ``times`` are the timed
    calls in order (round by round, for :func:`time_fns`); ``result`` is the output of
    the last call."""

    median: float
    min: float
    first: float
    repeats: int
    max: float = math.nan
    times: tuple[float, ...] = ()
    result: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def compile(self) -> float:
        """Warm-up time minus one steady-state call: an estimate of compile time."""
        return max(self.first - self.median, 0.0)


def time_fns(
    calls: Mapping[Hashable, Callable[[], Any]], *, repeats: int = 5, warmup: int = 1
) -> dict[Hashable, Timing]:
    """Times each ``fn()`` of ``calls`` (no arguments: close over the inputs), round-robin.

    Each call is warmed up ``max(warmup, 1)`` times, then ``repeats`` rounds call every
    function once. Outputs pass through ``jax.block_until_ready`` (a no-op for NumPy,
    torch or scikit-learn peers).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    first = {}
    for label, fn in calls.items():
        for i in range(max(warmup, 1)):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            if i == 0:
                first[label] = time.perf_counter() - start
    times = {label: [] for label in calls}
    results = {}
    for _ in range(repeats):
        for label, fn in calls.items():
            start = time.perf_counter()
            results[label] = jax.block_until_ready(fn())
            times[label].append(time.perf_counter() - start)
    return {
        label: Timing(
            statistics.median(t), min(t), first[label], repeats, max(t), tuple(t), results[label]
        )
        for label, t in times.items()
    }


def time_fn(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> Timing:
    """Times ``fn()`` alone: :func:`time_fns` with one call."""
    return time_fns({None: fn}, repeats=repeats, warmup=warmup)[None]
