"""The tour's HTML report: a summary table, one section per area, PNG plots."""

from __future__ import annotations

import html
import re
from pathlib import Path

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


class Section:
    """One area of the tour: paragraphs, tables, figures and raw HTML, in order."""

    def __init__(self, report: Report, title: str):
        self.report = report
        self.title = title
        self.parts: list[str] = []
        self.figures: list[tuple[Path, str]] = []
        self.tables: list[tuple[list[str], list[list]]] = []

    def text(self, paragraph: str) -> None:
        """A paragraph of plain text (escaped); `code` spans in backticks."""
        self.parts.append(f"<p>{_inline(paragraph)}</p>")

    def table(self, columns: list[str], rows: list[list]) -> None:
        """A table of plain-text cells, as :meth:`text` renders them (floats to 4 digits)."""
        self.tables.append((columns, rows))
        self.parts.append(_table(columns, rows))

    def figure(self, fig, name: str, caption: str) -> Path:
        """Saves a matplotlib figure as ``<out>/<name>.png``, closes it, and shows it."""
        import matplotlib.pyplot as plt

        path = self.report.out_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append((path, caption))
        self.parts.append(
            f'<figure><img src="{html.escape(path.name)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        return path

    def html(self, fragment: str) -> None:
        """Trusted HTML produced by gradjax itself (e.g. ``attribution.render_html``)."""
        self.parts.append(fragment)


class Report:
    """Collects the summary rows and sections, then writes ``index.html``."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.summary: list[list] = []
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        section = Section(self, title)
        self.sections.append(section)
        return section

    def add_summary(self, technique: str, result: str, check: str) -> None:
        """One row of the summary table: what ran, what it gave, what that is checked against."""
        self.summary.append([technique, result, check])
        print(f"  {technique:<38} {result}  [{check}]", flush=True)

    def write(self, timings: dict[str, float]) -> Path:
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'><title>gradjax tour</title>",
            f"<style>{_STYLE}</style></head><body>",
            "<h1>gradjax tour</h1>",
            "<p>Every step minimises a local model of the loss. This report was written by "
            "<code>python -m gradjax tour</code> on built-in data; every number below was "
            "computed in that run.</p>",
            "<h2>Summary</h2>",
            _table(["technique", "result", "checked against"], self.summary),
        ]
        parts.append(
            "<p>Section times: "
            + ", ".join(f"{html.escape(k)} {v:.1f} s" for k, v in timings.items())
            + "</p>"
        )
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
            parts.extend(section.parts)
        parts.append("</body></html>")
        path = self.out_dir / "index.html"
        path.write_text("\n".join(parts), encoding="utf-8")
        return path


def line_styles(n: int) -> list[dict]:
    """Matplotlib keywords for ``n`` lines that stay visible where they coincide: each is
    thinner than the one before, with its own dash pattern and marker."""
    dashes, markers = ("-", "--", "-.", ":"), ("o", "s", "^", "v", "D", "x")
    return [
        {
            "linestyle": dashes[i % len(dashes)],
            "marker": markers[i % len(markers)],
            "linewidth": 1.0 + 2.5 * (n - 1 - i) / max(n - 1, 1),
            "markersize": 4.0 + 4.0 * (n - 1 - i) / max(n - 1, 1),
            "markevery": 0.08,
        }
        for i in range(n)
    ]


def _inline(text) -> str:
    """Escaped text with `code` spans in backticks as <code>; floats to 4 digits."""
    text = f"{text:.4g}" if isinstance(text, float) else str(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _table(columns, rows) -> str:
    head = "".join(f"<th>{_inline(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
