"""Argument checks shared by the areas: each error names the argument it rejects."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def is_concrete(value: Any) -> bool:
    """False for a value traced under ``jit``/``vmap``, whose entries cannot be checked."""
    return not isinstance(value, jax.core.Tracer)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """A Python or NumPy int (not bool) in ``[low, high]``; returned as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def floating_tree(name: str, tree: PyTree, hint: str = "") -> PyTree:
    """A non-empty pytree of floating arrays, leaves converted to jax arrays.

    ``hint`` is appended to the dtype error (say, what to pass instead).
    """
    tree = jax.tree.map(jnp.asarray, tree)
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} must contain at least one array, got an empty pytree")
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{name} must be floating-point arrays{hint}, got a leaf of dtype {leaf.dtype}"
            )
    return tree
