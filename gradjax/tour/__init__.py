"""``python -m gradjax tour``: every capability on built-in data, as an HTML report.

Each area is a module of this package with ``run(report: Report) -> None``; the
tour runs them in the order of ``SECTIONS`` and writes ``<out>/index.html``.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from ._report import Report, Section

__all__ = ["SECTIONS", "Report", "Section", "run"]

SECTIONS = ("newton", "em", "optim", "gan", "regularizers", "attribution")


def run(out_dir: str | Path = "gradjax-tour", sections: tuple[str, ...] = SECTIONS) -> Path:
    """Runs the tour sections and writes the report; returns the path of index.html."""
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"sections: unknown {unknown}; known {list(SECTIONS)}")
    from gradjax._optional import require

    require("matplotlib", "matplotlib").use("Agg")
    report = Report(Path(out_dir))
    timings = {}
    for name in sections:
        print(f"[{name}]", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"gradjax.tour.{name}").run(report)
        timings[name] = time.perf_counter() - start
    path = report.write(timings)
    print(f"wrote {path} ({sum(timings.values()):.0f} s)")
    return path
