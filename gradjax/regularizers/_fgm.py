"""The fast gradient method: one normalised gradient step on the input (FGM)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from gradjax._checks import (
    as_mask,
    check_scalar,
    check_scalar_fun,
    floating_inputs,
    nan_outside,
)

from ._tree import _apply_mask, _axpy, _normalize

PyTree = Any


def fgm_perturbation(
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float,
    mask: PyTree | None = None,
) -> PyTree:
    """The fast-gradient-method perturbation ε·g/‖g‖, g = ∇ₓ fun(x), gradient stopped.

    The norm is the exact global L2 norm (no epsilon added): a zero gradient gives a
    zero perturbation, and nothing is NaN under ``grad``/``jit``. The result is a
    constant for differentiation (``stop_gradient``), so ∇_θ loss(x + Δx) ≈
    ∇_θ [loss + ε‖∇ₓloss‖] to first order in ε.

    Args:
      fun: ``x -> scalar``, the loss (close over parameters and labels).
      x: one example (or a whole batch: one norm over it): floating array or pytree.
      epsilon: the perturbation's norm, >= 0 (a traced negative one gives NaN).
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
    x, epsilon, mask = _check_fgm(fun, x, epsilon, mask)
    return _fgm(fun, x, epsilon, mask)


def _check_fgm(fun: Any, x: Any, epsilon: Any, mask: Any) -> tuple[PyTree, Any, PyTree | None]:
    x = floating_inputs("x", x, " (perturb embeddings, not token ids)")
    check_scalar_fun("fun", fun, x)
    epsilon = nan_outside(check_scalar("epsilon", epsilon, low=0.0), 0.0)
    return x, epsilon, as_mask("mask", mask, x)


def _fgm(fun: Callable, x: PyTree, epsilon: Any, mask: PyTree | None) -> PyTree:
    grad = _apply_mask(jax.grad(fun)(x), mask)
    unit, _ = _normalize(jax.lax.stop_gradient(grad))
    return optax.tree.cast_like(optax.tree.scale(epsilon, unit), x)


def adversarial_loss(
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float,
    mask: PyTree | None = None,
) -> jax.Array:
    """The loss at the FGM point, fun(x + ε·g/‖g‖), the perturbation held constant.

    For a loss linear in x this is exactly fun(x) + ε‖∇ₓfun‖ (first-order
    Taylor bound of the worst case in the ε-ball). Train on it alone or add it to
    the clean loss.

    Args:
      fun: ``x -> scalar``, the loss (close over parameters and labels).
      x: one example (or a whole batch): floating array or pytree.
      epsilon: the perturbation's norm, >= 0 (a traced negative one gives NaN).
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
    x, epsilon, mask = _check_fgm(fun, x, epsilon, mask)
    return fun(_axpy(1, _fgm(fun, x, epsilon, mask), x))
