"""Gradient and Jacobian penalties (exact, or the one-gradient random-sign estimate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from gradjax._checks import check_key, check_scalar_fun

from ._checks import _as_inputs, _check_array_output

PyTree = Any


def gradient_penalty(fn: Callable[[PyTree], jax.Array], x: PyTree) -> jax.Array:
    """Squared norm of the input gradient, ‖∇ₓ fn(x)‖².

    Added to a loss (with weight ½ε) it is what FGM with the unnormalised step
    ε∇ₓl amounts to to first order; differentiate it w.r.t. parameters as usual
    (double backprop).

    Args:
      fn: ``x -> scalar`` (close over parameters and labels).
      x: one example: a floating array or pytree of them.

    Returns:
      A scalar, the global squared L2 norm of the gradient.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> regularizers.gradient_penalty(lambda x: jnp.sum(x**2), jnp.array([1.0, 2.0]))
      Array(20., dtype=float32)
    """
    x = _as_inputs(x)
    check_scalar_fun("fn", fn, x)
    return optax.tree.norm(jax.grad(fn)(x), squared=True)


def jacobian_penalty(
    fn: Callable[[PyTree], jax.Array], x: PyTree, key: jax.Array | None = None
) -> jax.Array:
    """Squared Frobenius norm of the Jacobian, Σᵢ ‖∇ₓ fnᵢ(x)‖², or its random-sign estimate.

    Without ``key`` the full Jacobian is formed (reverse mode when fn has fewer
    outputs than inputs, forward mode otherwise). With ``key`` one vector-Jacobian
    product gives the unbiased estimator ‖Σᵢ ηᵢ ∇ₓfᵢ‖², ηᵢ iid uniform on {−1, +1}:
    E[ηᵢηⱼ] = δᵢⱼ, so its mean is exactly the sum (Su, 7466).

    Args:
      fn: ``x -> array`` of any shape (all entries count as outputs fᵢ).
      x: one example: a floating array or pytree of them.
      key: optional PRNG key selecting the random-sign estimator.

    Returns:
      A scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> w = jnp.array([[1.0, 2.0], [3.0, 4.0]])
      >>> regularizers.jacobian_penalty(lambda x: w @ x, jnp.zeros(2))  # ‖W‖²_F
      Array(30., dtype=float32)
    """
    x = _as_inputs(x)
    out = _check_array_output("fn", fn, x)
    if key is None:
        jac = (jax.jacrev if out.size <= optax.tree.size(x) else jax.jacfwd)(fn)(x)
        return optax.tree.norm(jac, squared=True)
    check_key("key", key)
    signs = jax.random.rademacher(key, out.shape, out.dtype)
    return _signed_jacobian_penalty(fn, x, signs)


def _signed_jacobian_penalty(fn: Callable, x: PyTree, signs: jax.Array) -> jax.Array:
    """‖Σᵢ ηᵢ ∇ₓfᵢ(x)‖² for given signs η (one vector-Jacobian product)."""
    _, vjp = jax.vjp(fn, x)
    (grad,) = vjp(signs)
    return optax.tree.norm(grad, squared=True)
