"""Command line: ``python -m gradjax tour [--out DIR] [--sections NAME ...]``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradjax")
    commands = parser.add_subparsers(dest="command", required=True)
    tour = commands.add_parser("tour", help="run every technique on built-in data, write a report")
    tour.add_argument("--out", default="gradjax-tour", help="output folder (default gradjax-tour)")
    tour.add_argument("--sections", nargs="+", help="run only these sections")
    args = parser.parse_args(argv)

    from gradjax import tour as tour_module

    tour_module.run(args.out, tuple(args.sections or tour_module.SECTIONS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
