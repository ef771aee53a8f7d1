"""The result of an attribution with its completeness check."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradjax._checks import all_finite

PyTree = Any


class IntegratedGradientsResult(NamedTuple):
    """Attributions with their completeness check.

    Attributes:
      attributions: same pytree and shapes as the attributed input (or layer).
      completeness_gap: ``Σ attributions - (f(x) - f(x̄))``, a scalar; it goes to 0
        as ``steps`` grows (it measures the quadrature error).
      is_finite: whether every attribution and both outputs are finite.
      evaluations: the number of gradient evaluations used, an int32 scalar (``steps``
        for a fixed rule; at most ``steps`` for ``method="adaptive"``).
    """

    attributions: PyTree
    completeness_gap: jax.Array
    is_finite: jax.Array
    evaluations: jax.Array


def tree_total(tree: PyTree) -> jax.Array:
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


def with_gap(attributions, f_x, f_baseline, evaluations) -> IntegratedGradientsResult:
    """The result of attributions whose sum should be ``f_x - f_baseline``."""
    finite = all_finite(f_x, f_baseline, attributions)
    gap = tree_total(attributions) - (f_x - f_baseline)
    return IntegratedGradientsResult(attributions, gap, finite, jnp.asarray(evaluations, jnp.int32))
