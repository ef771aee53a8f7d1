"""Timing and reporting helpers shared by every benchmark.

A benchmark module ``benchmarks/<area>.py`` exposes ``BENCHMARKS``, a dict from a
benchmark name to ``fn(quick: bool) -> Table``. Times are medians over repeats,
after a warm-up call whose time is reported separately as the compile time; every
timed call ends in ``jax.block_until_ready``. Peers run in the same process.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call: ``median`` and ``min`` over ``repeats`` timed calls,
    and ``first`` for the warm-up call (compilation + one run)."""

    median: float
    min: float
    first: float
    repeats: int

    @property
    def compile(self) -> float:
        """Warm-up time minus one steady-state call: an estimate of compile time."""
        return max(self.first - self.median, 0.0)


def time_fn(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> Timing:
    """Times ``fn()`` (no arguments: close over the inputs).

    The outputs are passed to ``jax.block_until_ready``, so asynchronous JAX
    dispatch is included; for NumPy/torch/scikit-learn peers it is a no-op.
    """
    first = None
    for _ in range(max(warmup, 1)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        if first is None:
            first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), min(times), first, repeats)


@dataclasses.dataclass
class Table:
    """One benchmark's result: a markdown table plus notes, and its raw numbers.

    ``rows`` are lists of cells (str, int or float) matching ``columns``;
    ``data`` is free-form JSON-serialisable detail kept in the JSON file.
    """

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_markdown(self) -> str:
        lines = [f"### `{self.name}`: {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            lines.append("| " + " | ".join(format_cell(c) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {n}" for n in self.notes)
        return "\n".join(lines) + "\n"


def format_cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def ratio(peer_seconds: float, gradjax_seconds: float) -> str:
    """Speed-up of gradjax over a peer, as a table cell: ``"3.2x"`` (> 1 is faster)."""
    return f"{peer_seconds / gradjax_seconds:.2f}x"


def ms(seconds: float) -> float:
    return seconds * 1e3
