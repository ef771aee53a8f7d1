"""The raw steps: one minimiser of the local model, without safeguards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gradjax._checks import (
    check_finite_tree,
    check_int,
    check_scalar,
    check_scalar_fun,
    floating_tree,
)
from gradjax.newton._cg import conjugate_gradients, hessian_vector_product
from gradjax.newton._model import value_grad_hessian

PyTree = Any


def check_params(params: PyTree) -> PyTree:
    """A non-empty pytree of finite (when concrete) floating arrays with at least one entry."""
    params = floating_tree("params", params)
    if optax.tree.size(params) == 0:
        shapes = [leaf.shape for leaf in jax.tree.leaves(params)]
        raise ValueError(f"params must have at least one entry, got leaves of shapes {shapes}")
    check_finite_tree("params", params)
    return params


def _checked(fun: Callable, params: PyTree, args: tuple) -> PyTree:
    params = check_params(params)
    check_scalar_fun("fun", fun, params, *args)
    return params


def newton_step(fun: Callable, params: PyTree, *args, damping: float = 0.0) -> PyTree:
    """One Newton step with the dense Hessian: ``x⁺ = x + Δ``, ``(H + damping·I) Δ = -g``.

    ``Δ`` minimises the tangent model ``f(x) + gᵀΔ + ½Δᵀ(H + damping·I)Δ``; on a
    strictly convex quadratic it lands on the minimiser in one step. This is the raw
    step (no safeguard): with an indefinite ``H + damping·I`` it may go uphill, which
    :func:`minimize` prevents.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: a pytree of finite floating arrays (flattened for the solve; the Hessian is
        ``n×n`` for ``n`` parameters).
      *args: further arguments of ``fun`` (data), not differentiated.
      damping: Levenberg damping ``λ >= 0`` added to the Hessian's diagonal.

    Returns:
      The new params, same pytree structure and dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import newton
      >>> newton.newton_step(lambda x: jnp.sum((x - 3.0) ** 2), jnp.zeros(2))
      Array([3., 3.], dtype=float32)
    """
    params = _checked(fun, params, args)
    check_scalar("damping", damping, low=0.0)
    flat, unravel = ravel_pytree(params)
    _, g, h = value_grad_hessian(lambda x, *a: fun(unravel(x), *a), args)(flat)
    delta = jnp.linalg.solve(h + damping * jnp.eye(flat.size, dtype=h.dtype), -g)
    return jax.tree.map(lambda p, x: x.astype(p.dtype), params, unravel(flat + delta))


def newton_cg_step(
    fun: Callable,
    params: PyTree,
    *args,
    damping: float = 0.0,
    cg_num_steps: int | None = None,
    cg_tol: float = 1e-5,
) -> PyTree:
    """One matrix-free Newton step: solves ``(H + damping·I) Δ = -g`` by conjugate gradients.

    Only Hessian-vector products ``Hv = ∂/∂ε ∇f(x + εv)`` are used (forward-over-reverse,
    the cost of about two gradients each), so memory stays O(n). CG stops when the
    residual is below ``cg_tol·‖g‖``, after ``cg_num_steps`` iterations, or at the first
    direction whose curvature is not clearly positive (Steihaug: ``pᵀHp <= √ε·‖p‖²·‖H‖``,
    ``‖H‖`` estimated from the curvatures met), keeping the iterate so far, which is a
    descent direction. On an SPD problem with enough iterations this is the dense
    :func:`newton_step`.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: a pytree of finite floating arrays (kept as a pytree, never flattened).
      *args: further arguments of ``fun``, not differentiated.
      damping: ``λ >= 0`` added to the Hessian's diagonal.
      cg_num_steps: at most this many CG iterations (default ``10·n`` for ``n``
        parameters, as :func:`minimize`).
      cg_tol: relative residual tolerance of CG.

    Returns:
      The new params.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import newton
      >>> newton.newton_cg_step(lambda x: jnp.sum((x - 3.0) ** 2), jnp.zeros(2))
      Array([3., 3.], dtype=float32)
    """
    params = _checked(fun, params, args)
    check_scalar("damping", damping, low=0.0)
    check_scalar("cg_tol", cg_tol, low=0.0)
    if cg_num_steps is None:
        cg_num_steps = 10 * optax.tree.size(params)
    cg_num_steps = check_int("cg_num_steps", cg_num_steps, 1)
    grad = jax.grad(fun)(params, *args)
    hvp = hessian_vector_product(fun, args, params, damping)
    delta = conjugate_gradients(
        hvp, optax.tree.scale(-1.0, grad), num_steps=cg_num_steps, tol=cg_tol
    )
    return optax.tree.cast_like(optax.tree.add(params, delta.solution), params)


def gradient_descent_step(fun: Callable, params: PyTree, *args, learning_rate: float) -> PyTree:
    """One gradient-descent step, ``x⁺ = x - η g``: Newton with ``H ≈ I/η``.

    It is the exact minimiser of the isotropic model
    ``m(x + Δ) = f(x) + gᵀΔ + ‖Δ‖²/(2η)``: setting ``∇m = g + Δ/η = 0`` gives
    ``Δ = -ηg``. The model is only first-order accurate, but always convex, so its
    minimiser always exists; with ``η = 1/f''`` on a 1-D quadratic it is Newton.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: a pytree of finite floating arrays.
      *args: further arguments of ``fun``.
      learning_rate: ``η > 0``, the inverse of the model's curvature.

    Returns:
      The new params.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import newton
      >>> newton.gradient_descent_step(lambda x: jnp.sum(x**2), jnp.ones(2), learning_rate=0.25)
      Array([0.5, 0.5], dtype=float32)
    """
    params = _checked(fun, params, args)
    if learning_rate is None:
        raise TypeError("learning_rate is required for gradient descent")
    check_scalar("learning_rate", learning_rate, low=0.0, strict=True)
    g = jax.grad(fun)(params, *args)
    return optax.tree.cast_like(optax.tree.add_scale(params, -learning_rate, g), params)
