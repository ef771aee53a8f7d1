"""Argument checks of the regularisers: each error names the argument it rejects."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._checks import floating_tree, is_concrete

PyTree = Any


def _as_inputs(x: PyTree) -> PyTree:
    """x as a pytree of floating jax arrays; concrete leaves must be finite."""
    x = floating_tree("x", x, " (perturb embeddings, not token ids)")
    for path, leaf in jax.tree_util.tree_leaves_with_path(x):
        if is_concrete(leaf) and not np.isfinite(np.asarray(leaf, np.float64)).all():
            where = jax.tree_util.keystr(path, simple=True, separator="/") or "x"
            raise ValueError(f"x must be finite, got NaN or Inf in {where}")
    return x


def _check_callable(name: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


def _check_array_output(name: str, fn: Callable, x: PyTree) -> jax.ShapeDtypeStruct:
    _check_callable(name, fn)
    out = jax.eval_shape(fn, x)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{name} must return one array, got {type(out).__name__}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return floating values, got dtype {out.dtype}")
    return out


def _check_nonnegative(name: str, value: Any) -> None:
    """Rejects negative (or NaN) Python/NumPy numbers; traced values pass unchecked."""
    if isinstance(value, jax.core.Tracer):
        return
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
    if not float(value) >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _check_count(name: str, value: Any, minimum: int) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if count < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {count}")
    return count


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
