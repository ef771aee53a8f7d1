"""Imports of optional packages with an error that names the extra to install."""

from __future__ import annotations

import importlib


def require(module: str, package: str, extra: str = "examples"):
    """Imports ``module``; if it is missing, raises an ImportError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is needed here but not installed: pip install 'gradjax[{extra}]' "
            f"(or pip install {package})"
        ) from error
