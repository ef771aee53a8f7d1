"""Sphinx configuration of the gradjax documentation (``make docs``)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

project = "gradjax"
author = "the gradjax authors"
copyright = "2026, the gradjax authors"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax from _static/mathjax, not a CDN: math renders offline
    "sphinx.ext.viewcode",
]
autosummary_generate = True
# API pages titled by the short name (the signature shows the module): the sidebar lists
# ``integrated_gradients``, not ``gradjax.attribution.integrated_gradients`` cut mid-word.
templates_path = ["_templates"]
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"  # no second, untyped "Parameters" list
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # NamedTuple fields are documented once, by autodoc
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
nb_execution_mode = "off"  # the notebooks are rendered, not executed (make test runs them)
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["gradjax.css"]
html_title = "gradjax"
html_theme_options = {
    "repository_url": "https://github.com/gradjax/gradjax",
    "use_repository_button": True,
    "show_toc_level": 2,
    # pydata-sphinx-theme >= 0.18 adds its own header with a second search button above
    # the book theme's layout; the sidebar keeps the search field.
    "navbar_persistent": [],
}


def _copy_generated_sources() -> None:
    """The notebooks and the benchmark report live outside docs/: copy them in."""
    notebooks = HERE / "notebooks"
    notebooks.mkdir(exist_ok=True)
    for path in sorted((ROOT / "colab").glob("*.ipynb")):
        shutil.copy(path, notebooks / path.name)
    bench = HERE / "benchmarks"
    bench.mkdir(exist_ok=True)
    for path in sorted((ROOT / "benchmarks").glob("*.png")):
        shutil.copy(path, bench / path.name)
    # RESULTS.md re-rendered from results.json's tables, so that every table gets the
    # harness's current markdown (a "|" in a cell escaped) even if it ran before that fix.
    from benchmarks.__main__ import render
    from benchmarks._harness import Table

    entries = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    for entry in entries.values():
        entry["markdown"] = Table(**entry["table"]).to_markdown()
    results = render(entries)
    results = results.replace("# gradjax benchmarks", "# Benchmarks", 1)
    # "### `name`: title" becomes a short heading (the page's contents list) and a lead line.
    results = re.sub(r"^### (`[^`]+`): (.*)$", r"## \1\n\n**\2**", results, flags=re.M)
    (bench / "results.md").write_text(results)


_copy_generated_sources()

PUBLIC_MODULES = (
    "gradjax",
    "gradjax.newton",
    "gradjax.em",
    "gradjax.optim",
    "gradjax.gan",
    "gradjax.regularizers",
    "gradjax.attribution",
)


def public_names(module_name: str) -> list[str]:
    """A module's public names (its ``__all__``, else what it defines without a leading _),
    less submodules, which have sections of their own."""
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", "").startswith(module_name)
        ]
    return sorted(n for n in names if not inspect.ismodule(getattr(module, n)))


def _write_api_page() -> None:
    """api.md: one autosummary per public module, so every public name gets a page."""
    lines = [
        "# API reference",
        "",
        "Rendered from the docstrings. Every name is importable as `gradjax.<module>.<name>`",
        "(`gradjax.Status` at the top level).",
        "",
    ]
    for module_name in PUBLIC_MODULES:
        lines += [f"## `{module_name}`", "", "```{eval-rst}", f".. currentmodule:: {module_name}"]
        lines += ["", ".. autosummary::", "   :toctree: generated", ""]
        lines += [f"   {name}" for name in public_names(module_name)]
        lines += ["```", ""]
    (HERE / "api.md").write_text("\n".join(lines))


_write_api_page()


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
    """NamedTuple fields are documented once, in the class docstring, not as "Alias for field
    number N" members."""
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
