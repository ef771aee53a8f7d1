"""The benchmark harness: timing semantics, tables, discovery of every benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp

from benchmarks import __main__ as runner
from benchmarks._harness import Table, format_cell, ratio, time_fn, time_fns

ROOT = Path(__file__).resolve().parents[1]


def test_time_fn_counts_calls_and_blocks():
    calls = []

    def fn():
        calls.append(1)
        return jnp.ones(3) * len(calls)

    timing = time_fn(fn, repeats=4, warmup=2)
    assert len(calls) == 6 and timing.repeats == 4
    assert 0 <= timing.min <= timing.median and timing.first > 0 and timing.compile >= 0


def test_time_fns_round_robin_keeps_last_result():
    order = []

    def call(label):
        def fn():
            order.append(label)
            return jnp.full(2, len(order))

        return fn

    timings = time_fns({"a": call("a"), "b": call("b")}, repeats=3)
    assert order == ["a", "b"] * 4  # one warm-up each, then three rounds
    assert timings["b"].result.tolist() == [8, 8] and timings["a"].repeats == 3
    assert all(t.min <= t.median <= t.max for t in timings.values())


def test_table_markdown_and_cells():
    table = Table("demo", "a title", ["a", "b"], [["x", 0.5], ["y", 123456.0]], notes=["n"])
    text = table.to_markdown()
    assert "### `demo`: a title" in text and "| x | 0.5 |" in text and "- n" in text
    assert format_cell(True) == "yes" and format_cell(1.5e-7) == "1.500e-07"
    assert ratio(3.0, 1.5) == "2.00x"


def test_every_area_registers_benchmarks_that_import():
    registry = runner.discover()
    areas = {area for area, _ in registry.values()}
    package = ROOT / "gradjax"
    shipped = {a for a in runner.AREAS if (package / a).is_dir() or (package / f"{a}.py").exists()}
    assert shipped <= areas, f"areas without benchmarks: {shipped - areas}"
    assert all(callable(fn) for _, fn in registry.values())
    assert {"newton_batched", "newton_cg_large"} <= set(registry)


def test_results_json_and_markdown_agree():
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    markdown = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    for name, entry in results.items():
        assert f"`{name}`" in markdown and entry["markdown"].strip() in markdown


def test_cli_rejects_unknown_names():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "unknown benchmark" in out.stderr
