"""The implicit adjoint: gradients of a minimiser through its optimality condition.

At the solution ``x*(θ)`` of ``min_x f(x, θ)`` the gradient vanishes,
``∇ₓf(x*, θ) = 0``. Differentiating that identity gives ``H ∂x*/∂θ = -∂²f/∂x∂θ`` with
``H = ∇²ₓf(x*, θ)``, so for a cotangent ``x̄`` of the solution one linear solve
``Hu = x̄`` and one vector-Jacobian product of ``θ ↦ ∇ₓf(x*, θ)`` give
``θ̄ = -(∂²f/∂θ∂x)ᵀu``. Memory and time do not depend on how many steps the forward
solve took. The solve is dense (Cholesky, or the eigendecomposition's pseudo-inverse
when ``H`` is not positive definite) for ``"newton"`` and CG on Hessian-vector products
for the matrix-free methods.

Where ``H`` is singular the minimiser is not unique (a valley of minima along ``H``'s
null space) and ``H u = x̄`` is solved in the least-norm sense: eigenvalues within
``√ε·max|λ|`` of zero are dropped (CG from ``u = 0`` stays in ``H``'s range, the same
solution). The gradient is then that of the minimiser with no movement along the
valley, the one that a solver started where this one ended would return.

The identity holds only at a stationary point: after
``MAX_STEPS`` (or any status but SUCCESS) the gradient is that of the point
reached, an approximation. The initial point gets a zero cotangent.

References:
  Blondel et al., "Efficient and modular implicit differentiation", NeurIPS 2022.
  Krantz & Parks, *The Implicit Function Theorem* (2002).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gradjax.newton._cg import conjugate_gradients, hessian_vector_product

PyTree = Any


def least_norm_solve(matrix: jax.Array, rhs: jax.Array) -> jax.Array:
    """``A⁺ b`` for a symmetric ``A``: eigenvalues ``|λ| <= √ε·max|λ|`` count as zero."""
    eigvals, eigvecs = jnp.linalg.eigh(matrix)
    cutoff = jnp.sqrt(jnp.finfo(eigvals.dtype).eps) * jnp.max(jnp.abs(eigvals))
    kept = jnp.abs(eigvals) > cutoff
    inverse = jnp.where(kept, 1 / jnp.where(kept, eigvals, 1.0), 0.0)
    return eigvecs @ (inverse * (eigvecs.T @ rhs))


def solve_hessian(
    fun: Callable, x: PyTree, args: tuple, cotangent: PyTree, *, dense: bool, factor: Any = None
):
    """``u`` with ``∇²ₓf(x) u = cotangent``: dense Cholesky (the least-norm
    pseudo-inverse solve if not PD) or CG.

    ``factor = (chol, positive_definite)`` is the forward pass's Cholesky factor of the
    same Hessian at ``x``; where it exists no Hessian is formed again.
    """
    if dense:
        flat, unravel = ravel_pytree(x)
        rhs = ravel_pytree(cotangent)[0]

        def refactor(rhs):
            hessian = jax.hessian(lambda v: fun(unravel(v), *args))(flat)
            hessian = (hessian + hessian.T) / 2
            chol = jnp.linalg.cholesky(hessian)
            ok = jnp.all(jnp.isfinite(chol))
            chol = jnp.where(ok, chol, jnp.eye(flat.size, dtype=chol.dtype))
            by_cholesky = jax.scipy.linalg.cho_solve((chol, True), rhs)
            return jnp.where(ok, by_cholesky, least_norm_solve(hessian, rhs))

        if factor is None:
            return unravel(refactor(rhs))
        chol, positive_definite = factor
        reuse = lambda rhs: jax.scipy.linalg.cho_solve((chol, True), rhs)  # noqa: E731
        return unravel(jax.lax.cond(positive_definite, reuse, refactor, rhs))
    size = sum(leaf.size for leaf in jax.tree.leaves(x))
    eps = jnp.finfo(jnp.result_type(*jax.tree.leaves(x))).eps
    hvp = hessian_vector_product(fun, args, x)
    return conjugate_gradients(hvp, cotangent, num_steps=max(10, 2 * size), tol=eps**0.75).solution


def implicit_adjoint(solve: Callable, fun: Callable, *, dense: bool) -> Callable:
    """Wraps ``solve(params, args) -> (x*, aux, factor)`` into ``(params, args) -> (x*, aux)``
    whose VJP w.r.t. ``args`` is implicit.

    ``aux`` (traces, status) gets no gradient; ``params`` gets a zero cotangent;
    ``factor`` is handed to :func:`solve_hessian` (``None``: form the Hessian again).
    """

    @jax.custom_vjp
    def solved(params, args):
        return solve(params, args)[:2]

    def forward(params, args):
        x, aux, factor = solve(params, args)
        return (x, aux), (x, args, factor)

    def backward(residuals, cotangents):
        x, args, factor = residuals
        x_bar = cotangents[0]
        u = solve_hessian(fun, x, args, x_bar, dense=dense, factor=factor)
        _, vjp = jax.vjp(lambda a: jax.grad(fun)(x, *a), args)
        (args_bar,) = vjp(optax.tree.scale(-1.0, u))
        return optax.tree.zeros_like(x), args_bar

    solved.defvjp(forward, backward)
    return solved
