"""The result of an attribution with its completeness check."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradjax._checks import all_finite
from gradjax._status import Status

PyTree = Any


class IntegratedGradientsResult(NamedTuple):
    """Attributions with their completeness check.

    Attributes:
      attributions: same pytree and shapes as the attributed input (or layer), with a
        leading targets axis when ``targets`` is given.
      completeness_gap: ``Σ attributions - (f(x) - f(x̄))``, a scalar, or (K,) with
        ``targets``; it goes to 0 as ``steps`` grows (it measures the quadrature error).
      is_finite: whether every attribution and both outputs are finite.
      evaluations: the number of gradient evaluations used, an int32 scalar (``steps``
        for a fixed rule; at most ``steps`` for ``method="adaptive"``).
      status: an int32 :class:`gradjax.Status` code. ``method="adaptive"``: ``SUCCESS``
        when the completeness tolerance is met, ``MAX_STEPS`` when the budget ran out
        first, ``NONFINITE`` on NaN/Inf. A fixed rule has no tolerance: ``SUCCESS``
        unless something is non-finite (``NONFINITE``).
      converged: ``status == Status.SUCCESS``.
    """

    attributions: PyTree
    completeness_gap: jax.Array
    is_finite: jax.Array
    evaluations: jax.Array
    status: jax.Array
    converged: jax.Array


def tree_total(tree: PyTree, leading: int = 0) -> jax.Array:
    """The sum of every leaf's entries, keeping the first ``leading`` axes."""
    return sum(
        jnp.sum(leaf, axis=tuple(range(leading, leaf.ndim))) for leaf in jax.tree.leaves(tree)
    )


def with_gap(attributions, f_x, f_baseline, evaluations, met=True) -> IntegratedGradientsResult:
    """The result of attributions whose sum should be ``f_x - f_baseline`` (scalars, or
    (K,) vectors for a leading targets axis); ``met``: the tolerance test passed."""
    finite = all_finite(f_x, f_baseline, attributions)
    gap = tree_total(attributions, jnp.ndim(f_x)) - (f_x - f_baseline)
    finite = finite & jnp.all(jnp.isfinite(gap))
    status = jnp.where(
        finite, jnp.where(met, Status.SUCCESS, Status.MAX_STEPS), Status.NONFINITE
    ).astype(jnp.int32)
    return IntegratedGradientsResult(
        attributions,
        gap,
        finite,
        jnp.asarray(evaluations, jnp.int32),
        status,
        status == Status.SUCCESS,
    )
