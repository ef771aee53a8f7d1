"""The README's quick start runs as written, and its commands are the Makefile's."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def quick_start() -> str:
    section = README.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_start_is_short_and_runs():
    code = quick_start()
    assert len(code.strip().splitlines()) <= 15
    exec(compile(code, "README quick start", "exec"), {})


def test_the_two_commands_exist():
    makefile = (ROOT / "Makefile").read_text()
    for command in ("make demo", "make test"):
        assert command in README
        assert re.search(rf"^{command.split()[1]}:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
