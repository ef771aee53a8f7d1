"""Pytree helpers of the regularisers: masks, exact normalisation, Gaussian noise."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def _apply_mask(v: PyTree, mask: PyTree | None) -> PyTree:
    if mask is None:
        return v
    return jax.tree.map(lambda a, m: jnp.where(m, a, jnp.zeros_like(a)), v, mask)


def _sum_squares(v: PyTree) -> jax.Array:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(v))


def _normalize(v: PyTree) -> tuple[PyTree, jax.Array]:
    """``(v / ‖v‖, ‖v‖ ≠ 0)``, exact for tiny vectors, zeros for v = 0, NaN for a NaN v.

    Dividing by the largest |vᵢ| first keeps ‖v‖² from underflowing, so no additive
    epsilon is needed; the double ``where`` keeps the gradient finite at v = 0.
    """
    scale = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(v)]))
    nonzero = scale != 0  # True for NaN, which then propagates instead of becoming zero
    safe_scale = jnp.where(nonzero, scale, jnp.ones_like(scale))
    scaled = jax.tree.map(lambda a: a / safe_scale.astype(a.dtype), v)
    norm = jnp.sqrt(_sum_squares(scaled))  # >= 1 wherever v != 0
    safe_norm = jnp.where(nonzero, norm, jnp.ones_like(norm))
    unit = jax.tree.map(
        lambda a: jnp.where(nonzero, a / safe_norm.astype(a.dtype), jnp.zeros_like(a)), scaled
    )
    return unit, nonzero


def _axpy(alpha: Any, v: PyTree, x: PyTree) -> PyTree:
    """``x + alpha * v`` leafwise, in x's dtypes."""
    return jax.tree.map(lambda a, b: (b + alpha * a).astype(b.dtype), v, x)


def _normal_like(key: jax.Array, x: PyTree) -> PyTree:
    leaves, treedef = jax.tree.flatten(x)
    keys = jax.random.split(key, len(leaves))
    noise = [
        jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)
