"""Argument checks of the regularisers alone: inputs, masks and array-valued functions.

Numbers, ints, keys and callables go through the shared rules of ``gradjax._checks``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradjax._checks import check_callable, check_finite_tree, floating_tree

PyTree = Any


def _as_inputs(x: PyTree) -> PyTree:
    """x as a non-empty pytree of floating jax arrays; concrete leaves must be finite."""
    x = floating_tree("x", x, " (perturb embeddings, not token ids)")
    if not any(leaf.size for leaf in jax.tree.leaves(x)):
        shapes = [leaf.shape for leaf in jax.tree.leaves(x)]
        raise ValueError(f"x must have at least one entry, got arrays of shapes {shapes}")
    check_finite_tree("x", x)
    return x


def _check_array_output(name: str, fn: Callable, x: PyTree) -> jax.ShapeDtypeStruct:
    """``fn(x)`` must return one floating array (logits, a vector-valued function)."""
    check_callable(name, fn)
    out = jax.eval_shape(fn, x)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{name} must return one array, got {type(out).__name__}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return floating values, got dtype {out.dtype}")
    return out


def _as_mask(mask: PyTree | None, x: PyTree) -> PyTree | None:
    """Validates ``mask`` and broadcasts each leaf to its x leaf (trailing axes added)."""
    if mask is None:
        return None
    x_leaves, treedef = jax.tree.flatten(x)
    mask_leaves, mask_def = jax.tree.flatten(mask)
    if mask_def != treedef:
        raise ValueError(f"mask must have the structure of x ({treedef}), got {mask_def}")
    out = []
    for m, leaf in zip(mask_leaves, x_leaves, strict=True):
        m = jnp.asarray(m)
        if m.shape != leaf.shape[: m.ndim]:
            raise ValueError(
                f"mask's shape must be a prefix of x's shape {leaf.shape}, got {m.shape}"
            )
        out.append(m.reshape(m.shape + (1,) * (leaf.ndim - m.ndim)))
    return jax.tree.unflatten(treedef, out)
