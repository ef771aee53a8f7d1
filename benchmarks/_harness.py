"""Timing and reporting helpers shared by every benchmark.

A benchmark module ``benchmarks/<area>.py`` exposes ``BENCHMARKS``, a dict from a
benchmark name to ``fn(quick: bool) -> Table``. The timer is the tour's,
:mod:`gradjax.examples._timing` (re-exported here): medians over repeats, after a
warm-up call whose time is reported separately as the compile time; every timed call
ends in ``jax.block_until_ready``. Peers run in the same process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradjax.examples._timing import Timing, time_fn, time_fns

__all__ = ["Table", "Timing", "format_cell", "ms", "ratio", "time_fn", "time_fns", "tour_table"]


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
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            # A "|" inside a cell (|x|, a norm) would end the cell: escape it.
            cells = (format_cell(c).replace("|", "\\|") for c in row)
            lines.append("| " + " | ".join(cells) + " |")
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


def tour_table(
    name: str,
    title: str,
    run: Callable[[Any], None],
    notes: list[str],
    *,
    section_table: bool = False,
) -> Table:
    """Records a tour section: ``run(report)`` writes its figures next to RESULTS.md, and
    the table is the section's summary rows (or, with ``section_table``, the section's
    own last table, the summary going to the notes), followed by ``notes`` and the figures.

    The tour's code is the one implementation of the experiment; the benchmark only
    keeps its numbers and plots in RESULTS.md.
    """
    from gradjax.tour import Report

    report = Report(Path(__file__).parent)
    run(report)
    figures = [figure for section in report.sections for figure in section.figures]
    columns, rows = ["experiment", "result", "checked against"], report.summary
    if section_table:
        summary = [f"{what}: {result} (against {peer})" for what, result, peer in report.summary]
        notes = [*summary, *notes]
        columns, rows = [t for section in report.sections for t in section.tables][-1]
    return Table(
        name,
        title,
        columns,
        rows=rows,
        notes=[*notes, *(f"![{caption}]({path.name})" for path, caption in figures)],
    )
