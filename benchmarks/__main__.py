"""``python -m benchmarks [--quick] [--only NAME ...] [--json PATH]``.

Runs every ``BENCHMARKS`` entry of the modules in this folder (or the named ones),
prints each table, and merges the results into ``benchmarks/results.json``, from
which ``benchmarks/RESULTS.md`` is rewritten (machine, library versions, date), so
running one benchmark keeps the others' last results.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fcntl
import importlib
import importlib.metadata
import json
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JSON_PATH = HERE / "results.json"
MARKDOWN_PATH = HERE / "RESULTS.md"
AREAS = ("newton", "least_squares", "em", "optim", "gan", "regularizers", "attribution")
PACKAGES = (
    "jax",
    "jaxlib",
    "optax",
    "flax",
    "numpy",
    "scipy",
    "scikit-learn",
    "faiss-cpu",
    "torch",
    "captum",
    "torchattacks",
    "optimistix",
    "jaxopt",
)


def discover() -> dict:
    """Benchmark name -> (module name, function), in the order of AREAS."""
    found = {m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_")}
    registry = {}
    for area in [a for a in AREAS if a in found] + sorted(found - set(AREAS)):
        module = importlib.import_module(f"benchmarks.{area}")
        for name, fn in getattr(module, "BENCHMARKS", {}).items():
            registry[name] = (area, fn)
    return registry


def machine() -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
    }


def render(results: dict) -> str:
    lines = [
        "# gradjax benchmarks",
        "",
        "Written by `python -m benchmarks`; each table shows the run that produced it.",
        "Times are medians after a warm-up call (compile time reported separately),",
        "every call ends in `block_until_ready`, and the peer runs in the same process.",
        "A ratio above 1 means gradjax is faster.",
        "",
    ]
    for name in sorted(
        results,
        key=lambda n: (AREAS.index(results[n]["area"]) if results[n]["area"] in AREAS else 99, n),
    ):
        entry = results[name]
        m = entry["machine"]
        lines.append(entry["markdown"])
        lines.append(
            f"_Run {entry['date']}{' (--quick)' if entry['quick'] else ''} on {m['cpu_count']} "
            f"CPUs, {m['platform']}; jax {m['versions']['jax']}, "
            + ", ".join(
                f"{k} {v}" for k, v in m["versions"].items() if k != "jax" and v != "not installed"
            )
            + f"; took {entry['seconds']:.0f} s._\n"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--json", type=Path, help="also write this run's results here")
    parser.add_argument(
        "--no-write", action="store_true", help="do not update results.json / RESULTS.md"
    )
    args = parser.parse_args(argv)

    registry = discover()
    names = args.only or list(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(registry)}")

    info = machine()
    this_run = {}
    for name in names:
        area, fn = registry[name]
        print(f"## {name}", flush=True)
        start = time.perf_counter()
        table = fn(args.quick)
        seconds = time.perf_counter() - start
        markdown = table.to_markdown()
        print(markdown, flush=True)
        this_run[name] = {
            "area": area,
            "date": datetime.date.today().isoformat(),
            "quick": args.quick,
            "seconds": seconds,
            "machine": info,
            "markdown": markdown,
            "table": dataclasses.asdict(table),
        }

    if args.json:
        args.json.write_text(json.dumps(this_run, indent=1, default=str))
    if not args.no_write:
        with open(HERE / ".results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            results = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
            results.update(this_run)
            JSON_PATH.write_text(json.dumps(results, indent=1, default=str) + "\n")
            MARKDOWN_PATH.write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
