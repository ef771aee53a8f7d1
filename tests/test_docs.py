"""The documentation site builds with no warnings, and every public name has an API page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings_and_document_every_public_name(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    out = tmp_path / "html"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(ROOT / "docs"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import conf
    finally:
        sys.path.remove(str(ROOT / "docs"))
    missing = [
        f"{module}.{name}"
        for module in conf.PUBLIC_MODULES
        for name in conf.public_names(module)
        if not (out / "generated" / f"{module}.{name}.html").exists()
    ]
    assert not missing, f"public names without an API page: {missing}"
    # The math renders with no network: MathJax is served from _static, not a CDN.
    idea = (out / "idea.html").read_text()
    assert (out / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert 'src="_static/mathjax/tex-chtml.js"' in idea and "cdn.jsdelivr" not in idea
    for page in [
        "idea",
        "areas/newton",
        "moving_from/captum",
        "benchmarks/results",
        "notebooks/01_newton_and_gradient_descent",
    ]:
        assert (out / f"{page}.html").exists(), page
