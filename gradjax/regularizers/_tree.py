"""Pytree helpers of the regularisers that ``optax.tree`` lacks: masks and exact normalisation.

Sums of squares, norms, ``x + αv`` and Gaussian noise per leaf are ``optax.tree``'s
(``norm``, ``add_scale``, ``random_like``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def _apply_mask(v: PyTree, mask: PyTree | None) -> PyTree:
    """Zero where the mask is False: a tree of conditions (``optax.tree.where`` takes one)."""
    if mask is None:
        return v
    return jax.tree.map(lambda a, m: jnp.where(m, a, jnp.zeros_like(a)), v, mask)


def _normalize(v: PyTree) -> tuple[PyTree, jax.Array]:
    """``(v / ‖v‖, ‖v‖ ≠ 0)``, exact for tiny vectors, zeros for v = 0, NaN for a NaN v.

    Dividing by the largest |vᵢ| first keeps ‖v‖² from underflowing, so no additive
    epsilon is needed; the double ``where`` keeps the gradient finite at v = 0.
    (``optax.tree.norm`` alone would underflow: 1e-30² is 0 in float32.)
    """
    scale = optax.tree.norm(v, ord="inf")
    nonzero = scale != 0  # True for NaN, which then propagates instead of becoming zero
    safe_scale = jnp.where(nonzero, scale, jnp.ones_like(scale))
    scaled = jax.tree.map(lambda a: a / safe_scale.astype(a.dtype), v)
    norm = optax.tree.norm(scaled)  # >= 1 wherever v != 0
    safe_norm = jnp.where(nonzero, norm, jnp.ones_like(norm))
    unit = jax.tree.map(
        lambda a: jnp.where(nonzero, a / safe_norm.astype(a.dtype), jnp.zeros_like(a)), scaled
    )
    return unit, nonzero


def _axpy(alpha: Any, v: PyTree, x: PyTree) -> PyTree:
    """``x + alpha * v`` in x's dtypes: ``optax.tree.add_scale`` would promote a bf16 x
    by a float32 (e.g. traced) alpha."""
    return optax.tree.cast_like(optax.tree.add_scale(x, alpha, v), x)
