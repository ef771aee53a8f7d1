"""The lean install: the wheel needs jax, optax and numpy only, and the core imports alone.

A wheel is built from this checkout and installed into a fresh virtual environment
without extras; every core module then imports with none of the examples' or the
tests' packages present, and ``gradjax.models`` names the extra it needs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = (
    "gradjax",
    "gradjax.newton",
    "gradjax.em",
    "gradjax.optim",
    "gradjax.gan",
    "gradjax.regularizers",
    "gradjax.attribution",
)
NOT_IN_CORE = (
    "flax",
    "chex",
    "tqdm",
    "matplotlib",
    "sklearn",
    "snownlp",
    "torch",
    "scipy.optimize",
)


def run(*command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def requirements(wheel: Path) -> set[str]:
    """The wheel's Requires-Dist names outside any extra."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    lines = re.findall(r"^Requires-Dist: (.+)$", metadata, flags=re.MULTILINE)
    return {
        re.match(r"[A-Za-z0-9_.-]+", line)[0].lower() for line in lines if "extra ==" not in line
    }


@pytest.mark.slow
def test_the_wheel_needs_the_core_only_and_its_modules_import_without_extras(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", str(tmp_path / "dist"), str(ROOT))  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("gradjax-*.whl")
    assert requirements(wheel) == {"jax", "optax", "numpy"}

    venv.create(tmp_path / "env", with_pip=True)
    python = str(tmp_path / "env" / "bin" / "python")
    # The Makefile's installer (uv, found beside this interpreter, with pip as fallback).
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    run(python, str(ROOT / "tools" / "install.py"), str(wheel), env={**os.environ, "PATH": path})
    probe = f"""
import importlib, sys
for name in {CORE!r}:
    importlib.import_module(name)
loaded = [m for m in {NOT_IN_CORE!r} if m in sys.modules]
assert not loaded, loaded
try:
    import gradjax.models
except ImportError as error:
    assert "gradjax[examples]" in str(error), error
else:
    raise AssertionError("gradjax.models imported without flax")
print(importlib.import_module("gradjax").__file__)
"""
    # Run outside the checkout, so the installed wheel is imported, not ./gradjax.
    where = run(python, "-c", probe, cwd=tmp_path)
    assert str(tmp_path / "env") in where
