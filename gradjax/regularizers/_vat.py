"""Virtual adversarial training: power iteration on the KL Hessian, and its loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import (
    as_mask,
    check_array_fun,
    check_int,
    check_key,
    check_scalar,
    floating_inputs,
    nan_outside,
)

from ._tree import _apply_mask, _axpy, _normalize

PyTree = Any


def _kl_from_logits(target_probs: jax.Array, logits: jax.Array) -> jax.Array:
    """Σ KL(p ‖ softmax(logits)) over the leading axes; classes on the last axis (pᵢ = 0 adds 0)."""
    log_q = jax.nn.log_softmax(logits, axis=-1)
    return jnp.sum(optax.losses.kl_divergence(log_q, target_probs, axis=-1))


def check_logits_fun(fun: Any, x: PyTree) -> jax.ShapeDtypeStruct:
    """``fun(x)`` must return floating logits of shape (..., classes), classes >= 1.

    One class is valid (its softmax is 1, so every KL is 0); none is an error.
    """
    out = check_array_fun("fun", fun, x)
    if out.ndim < 1:
        raise ValueError(f"fun must return logits of shape (..., classes), got {out.shape}")
    if out.shape[-1] == 0:
        raise ValueError(f"fun must return logits of at least one class, got {out.shape}")
    return out


def _check_vat(key: Any, fun: Callable, x: Any, xi: Any, num_steps: Any, mask: Any):
    x = floating_inputs("x", x, " (perturb embeddings, not token ids)")
    check_key("key", key)
    check_logits_fun(fun, x)
    xi = nan_outside(check_scalar("xi", xi, low=0.0), 0.0)
    return x, xi, check_int("num_steps", num_steps, 0), as_mask("mask", mask, x)


def _power_iteration(key, fun, x, target_probs, xi, num_steps, mask):
    def kl_at(v):
        return _kl_from_logits(target_probs, fun(_axpy(xi, v, x)))

    def step(_, u):
        # ∇ᵥ KL at v = ξu is ξ·Hu + O(ξ²): a finite-difference Hessian-vector product.
        hu, nonzero = _normalize(_apply_mask(jax.grad(kl_at)(u), mask))
        return jax.tree.map(lambda new, old: jnp.where(nonzero, new, old), hu, u)

    u, _ = _normalize(_apply_mask(optax.tree.random_like(key, x), mask))
    # Unrolled when short (the usual one or two iterations compile faster that way).
    u = jax.lax.fori_loop(0, num_steps, step, u, unroll=num_steps <= 4)
    return jax.tree.map(jax.lax.stop_gradient, u)


def vat_direction(
    key: jax.Array,
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    xi: float = 10.0,
    num_steps: int = 1,
    mask: PyTree | None = None,
) -> PyTree:
    """Unit direction of steepest increase of KL(f(x) ‖ f(x + d)): VAT's power iteration.

    With p = softmax(logits(x)) held fixed, KL(p ‖ softmax(logits(x + d))) ≈ ½dᵀHd.
    Starting from u ~ N(0, I), each iteration sets u ← Hu/‖Hu‖ with
    Hu ≈ ∇ᵤ KL(p ‖ softmax(logits(x + ξu)))/ξ, so many iterations converge to the
    top eigenvector of H (up to sign); zero iterations return the random direction.
    Normalisations are exact (no additive epsilon, underflow-safe); if an iteration
    yields Hu = 0 the previous direction is kept. Gradient stopped.

    Args:
      key: PRNG key for the starting direction.
      fun: ``x -> logits`` of shape (..., classes); KL is summed over leading axes.
      x: one example (or a whole batch): floating array or pytree.
      xi: finite-difference step ξ >= 0 (10 is Su's value for a whole embedding matrix;
        per example on raw inputs, something small such as 1e-2 is closer to H); a traced
        negative one gives NaN.
      num_steps: power iterations, >= 0.
      mask: optional bool array (or pytree like x), True where x may be perturbed.

    Returns:
      A unit vector (global L2 norm 1, zero where masked), structured like x.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> w = jnp.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]])
      >>> d = regularizers.vat_direction(jax.random.key(0), lambda x: w @ x, jnp.ones(3), xi=1e-2)
      >>> round(float(jnp.linalg.norm(d)), 6)
      1.0
    """
    x, xi, num_steps, mask = _check_vat(key, fun, x, xi, num_steps, mask)
    target = jax.lax.stop_gradient(jax.nn.softmax(fun(x), axis=-1))
    return _power_iteration(key, fun, x, target, xi, num_steps, mask)


def vat_loss(
    key: jax.Array,
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float = 1.0,
    xi: float = 10.0,
    num_steps: int = 1,
    mask: PyTree | None = None,
) -> jax.Array:
    """Virtual adversarial loss KL(stop_grad softmax(logits(x)) ‖ softmax(logits(x + ε·d))).

    d is :func:`vat_direction`. No label is used, so it applies to unlabelled data.
    The clean prediction is a constant, so gradients flow only through the
    perturbed branch (Su's "knock-off" VAT; the difference is second order).

    Args:
      key: PRNG key for the power iteration's starting direction.
      fun: ``x -> logits`` of shape (..., classes); KL is summed over leading axes.
      x: one example (or a whole batch): floating array or pytree.
      epsilon: perturbation norm, >= 0 (a traced negative one gives NaN).
      xi: finite-difference step of the power iteration, >= 0.
      num_steps: power iterations, >= 0 (0: a random direction of norm ε).
      mask: optional bool array (or pytree like x), True where x may be perturbed.

    Returns:
      A non-negative scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> w = jnp.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]])
      >>> xs, keys = jnp.ones((4, 3)), jax.random.split(jax.random.key(0), 4)
      >>> losses = jax.vmap(lambda k, x: regularizers.vat_loss(k, lambda z: w @ z, x))(keys, xs)
      >>> losses.shape, bool(jnp.all(losses >= 0))
      ((4,), True)
    """
    x, xi, num_steps, mask = _check_vat(key, fun, x, xi, num_steps, mask)
    epsilon = nan_outside(check_scalar("epsilon", epsilon, low=0.0), 0.0)
    target = jax.lax.stop_gradient(jax.nn.softmax(fun(x), axis=-1))
    d = _power_iteration(key, fun, x, target, xi, num_steps, mask)
    return _kl_from_logits(target, fun(_axpy(epsilon, d, x)))
