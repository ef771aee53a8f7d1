"""The fast gradient method: one normalised gradient step on the input (FGM)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradjax._checks import check_scalar, check_scalar_fun

from ._checks import _as_inputs, _as_mask
from ._tree import _apply_mask, _axpy, _normalize

PyTree = Any


def fgm_perturbation(
    loss_fn: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float,
    mask: PyTree | None = None,
) -> PyTree:
    """The fast-gradient-method perturbation ε·g/‖g‖, g = ∇ₓ loss_fn(x), gradient stopped.

    The norm is the exact global L2 norm (no epsilon added): a zero gradient gives a
    zero perturbation, and nothing is NaN under ``grad``/``jit``. The result is a
    constant for differentiation (``stop_gradient``), so ∇_θ loss(x + Δx) ≈
    ∇_θ [loss + ε‖∇ₓloss‖] to first order in ε.

    Args:
      loss_fn: ``x -> scalar`` (close over parameters and labels).
      x: one example (or a whole batch: one norm over it): floating array or pytree.
      epsilon: the perturbation's norm, >= 0.
      mask: optional bool array (or pytree like x), True where x may be perturbed
        (False at padding); masked entries are zero and excluded from the norm.

    Returns:
      The perturbation, same structure, shapes and dtypes as x, of norm ε (or zero).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> w = jnp.array([3.0, 4.0])
      >>> regularizers.fgm_perturbation(lambda x: w @ x, jnp.zeros(2), epsilon=0.5)
      Array([0.3, 0.4], dtype=float32)
    """
    x = _as_inputs(x)
    check_scalar_fun("loss_fn", loss_fn, x)
    check_scalar("epsilon", epsilon, low=0.0)
    mask = _as_mask(mask, x)
    return _fgm(loss_fn, x, epsilon, mask)


def _fgm(loss_fn: Callable, x: PyTree, epsilon: Any, mask: PyTree | None) -> PyTree:
    grad = _apply_mask(jax.grad(loss_fn)(x), mask)
    unit, _ = _normalize(jax.lax.stop_gradient(grad))
    return jax.tree.map(lambda u, a: (epsilon * u).astype(a.dtype), unit, x)


def adversarial_loss(
    loss_fn: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float,
    mask: PyTree | None = None,
) -> jax.Array:
    """The loss at the FGM point, loss_fn(x + ε·g/‖g‖), the perturbation held constant.

    For a loss linear in x this is exactly loss_fn(x) + ε‖∇ₓloss_fn‖ (first-order
    Taylor bound of the worst case in the ε-ball). Train on it alone or add it to
    the clean loss.

    Args:
      loss_fn: ``x -> scalar`` (close over parameters and labels).
      x: one example (or a whole batch): floating array or pytree.
      epsilon: the perturbation's norm, >= 0.
      mask: optional bool array (or pytree like x) as in :func:`fgm_perturbation`.

    Returns:
      A scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> w = jnp.array([3.0, 4.0])  # linear loss: l(x) + ε‖w‖ = 0 + 0.5 · 5
      >>> regularizers.adversarial_loss(lambda x: w @ x, jnp.zeros(2), epsilon=0.5)
      Array(2.5, dtype=float32)
    """
    x = _as_inputs(x)
    check_scalar_fun("loss_fn", loss_fn, x)
    check_scalar("epsilon", epsilon, low=0.0)
    mask = _as_mask(mask, x)
    return loss_fn(_axpy(1, _fgm(loss_fn, x, epsilon, mask), x))
