"""Argument checks of the attribution functions (the shared rules live in gradjax._checks)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradjax._checks import check_finite_tree, check_int, check_scalar_fun, floating_tree

PyTree = Any


def check_chunk_size(chunk_size: Any) -> int | None:
    return None if chunk_size is None else check_int("chunk_size", chunk_size, 1)


def input_tree(name: str, x: PyTree) -> PyTree:
    """A non-empty pytree of floating arrays, finite where concrete."""
    x = floating_tree(name, x)
    check_finite_tree(name, x)
    return x


def as_baseline(baseline: PyTree, x: PyTree, name: str = "baseline") -> PyTree:
    """Zeros by default; otherwise x's structure, each leaf of x's shape or a scalar."""
    if baseline is None:
        return jax.tree.map(jnp.zeros_like, x)
    x_def, b_def = jax.tree.structure(x), jax.tree.structure(baseline)
    if x_def != b_def:
        raise ValueError(f"{name} must have the pytree structure of x {x_def}, got {b_def}")

    def leaf(b, xi):
        b = jnp.asarray(b)
        if b.shape not in ((), xi.shape):
            raise ValueError(
                f"{name} must have the shape of x {xi.shape} (or be a scalar), got {b.shape}"
            )
        return jnp.broadcast_to(b, xi.shape).astype(xi.dtype)

    baseline = jax.tree.map(leaf, baseline, x)
    check_finite_tree(name, baseline)
    return baseline


def check_scalar_output(name: str, fun: Any, x: PyTree) -> None:
    """``fun(x)`` must be a floating scalar: the class to explain, selected."""
    check_scalar_fun(
        name, fun, x, hint="; select the class to explain, e.g. lambda x: model(x)[label]"
    )
