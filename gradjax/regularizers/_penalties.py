"""Gradient and Jacobian penalties (exact, or the one-gradient random-sign estimate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from gradjax._checks import check_array_fun, check_key, check_scalar_fun, floating_inputs

PyTree = Any


def gradient_penalty(fun: Callable[[PyTree], jax.Array], x: PyTree) -> jax.Array:
    """Squared norm of the input gradient, ‖∇ₓ fun(x)‖².

    Added to a loss (with weight ½ε) it is what FGM with the unnormalised step
    ε∇ₓl amounts to to first order; differentiate it w.r.t. parameters as usual
    (double backprop).

    Args:
      fun: ``x -> scalar`` (close over parameters and labels).
      x: one example: a floating array or pytree of them.

    Returns:
      A scalar, the global squared L2 norm of the gradient.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> regularizers.gradient_penalty(lambda x: jnp.sum(x**2), jnp.array([1.0, 2.0]))
      Array(20., dtype=float32)
    """
    x = floating_inputs("x", x, " (perturb embeddings, not token ids)")
    check_scalar_fun("fun", fun, x)
    return optax.tree.norm(jax.grad(fun)(x), squared=True)


def jacobian_penalty(
    key: jax.Array | None, fun: Callable[[PyTree], jax.Array], x: PyTree
) -> jax.Array:
    """Squared Frobenius norm of the Jacobian, Σᵢ ‖∇ₓ funᵢ(x)‖², or its random-sign estimate.

    With ``key=None`` the full Jacobian is formed (reverse mode when fun has fewer
    outputs than inputs, forward mode otherwise): the exact, deterministic value. With a
    key, one vector-Jacobian product gives the unbiased estimator ‖Σᵢ ηᵢ ∇ₓfᵢ‖², ηᵢ iid
    uniform on {−1, +1}: E[ηᵢηⱼ] = δᵢⱼ, so its mean is exactly the sum (Su, 7466).

    Args:
      key: ``None`` for the exact penalty, or a PRNG key for the random-sign estimator.
      fun: ``x -> array`` of any shape (all entries count as outputs fᵢ).
      x: one example: a floating array or pytree of them.

    Returns:
      A scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> w = jnp.array([[1.0, 2.0], [3.0, 4.0]])
      >>> regularizers.jacobian_penalty(None, lambda x: w @ x, jnp.zeros(2))  # ‖W‖²_F
      Array(30., dtype=float32)
    """
    if key is not None:
        check_key("key", key)
    x = floating_inputs("x", x, " (perturb embeddings, not token ids)")
    out = check_array_fun("fun", fun, x)
    if key is None:
        jac = (jax.jacrev if out.size <= optax.tree.size(x) else jax.jacfwd)(fun)(x)
        return optax.tree.norm(jac, squared=True)
    signs = jax.random.rademacher(key, out.shape, out.dtype)
    return _signed_jacobian_penalty(fun, x, signs)


def _signed_jacobian_penalty(fun: Callable, x: PyTree, signs: jax.Array) -> jax.Array:
    """‖Σᵢ ηᵢ ∇ₓfᵢ(x)‖² for given signs η (one vector-Jacobian product)."""
    _, vjp = jax.vjp(fun, x)
    (grad,) = vjp(signs)
    return optax.tree.norm(grad, squared=True)
