"""Box constraints ``lower <= x <= upper``: the projection, the active set, the adjoint.

Projected Newton (Bertsekas 1982) keeps the iterate in the box by projecting each
trial point, ``P(x) = min(max(x, lower), upper)``, and takes its model step on the
*free* coordinates only. A coordinate is bound (in the active set) when it sits on
a bound and the gradient pushes it outwards (``x_i = l_i`` and ``g_i > 0``, or
``x_i = u_i`` and ``g_i < 0``); its step is zero. The first-order optimality
measure is the projected gradient ``x - P(x - g)``, zero exactly at a KKT point.

At a solution the free coordinates satisfy the reduced condition ``∇_F f(x*, θ) = 0``
and the bound ones ``x*_B = l_B`` or ``u_B``, which do not move with ``θ``. So the
implicit gradient solves with the free block of the Hessian and gives the bound
coordinates a zero cotangent.

References:
  Bertsekas, "Projected Newton methods for optimization problems with simple
  constraints", SIAM J. Control Optim. 20 (1982).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gradjax._checks import concrete_any
from gradjax.newton._adjoint import solve_hessian

PyTree = Any


class Box(NamedTuple):
    """Flat bounds, in the layout of ``ravel_pytree(params)``; ``±inf`` where unbounded."""

    lower: jax.Array
    upper: jax.Array


def check_bounds(bounds: Any, params: PyTree) -> Box | None:
    """``bounds = (lower, upper)``, pytrees with the structure and shapes of ``params``.

    Returns them flattened and cast to the params' dtype, or None. A bound tree that
    does not match ``params``, a non-real leaf, NaN, or ``lower > upper`` (where
    concrete) is a ValueError/TypeError naming ``bounds``.
    """
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(
            f"bounds must be a pair (lower, upper) of pytrees like params, got "
            f"{type(bounds).__name__}"
        )
    structure = jax.tree.structure(params)
    flat_params, _ = ravel_pytree(params)
    flat = []
    for name, tree in zip(("lower", "upper"), bounds, strict=True):
        if jax.tree.structure(tree) != structure:
            raise ValueError(
                f"bounds ({name}) must have the pytree structure of params, {structure}, "
                f"got {jax.tree.structure(tree)}"
            )
        leaves = []
        for leaf, ref in zip(jax.tree.leaves(tree), jax.tree.leaves(params), strict=True):
            leaf = jnp.asarray(leaf)
            if not (
                jnp.issubdtype(leaf.dtype, jnp.floating) or jnp.issubdtype(leaf.dtype, jnp.integer)
            ):
                raise TypeError(f"bounds ({name}) must be real arrays, got dtype {leaf.dtype}")
            if leaf.shape != ref.shape:
                try:
                    leaf = jnp.broadcast_to(leaf, ref.shape)
                except ValueError:
                    raise ValueError(
                        f"bounds ({name}) must have the shapes of params, got a leaf of shape "
                        f"{leaf.shape} for params of shape {ref.shape}"
                    ) from None
            leaves.append(leaf.astype(ref.dtype).ravel())
        vector = jnp.concatenate(leaves) if leaves else jnp.zeros(0, flat_params.dtype)
        if concrete_any(vector, jnp.isnan):
            raise ValueError(f"bounds ({name}) must not contain NaN")
        flat.append(vector.astype(flat_params.dtype))
    lower, upper = flat
    if concrete_any(lower - upper, lambda v: v > 0):
        raise ValueError("bounds must satisfy lower <= upper, got lower > upper in some entries")
    return Box(lower, upper)


def project(x: jax.Array, box: Box | None) -> jax.Array:
    """``P(x)``, the nearest point of the box (identity without bounds)."""
    if box is None:
        return x
    return jnp.clip(x, box.lower, box.upper)


def free_coordinates(x: jax.Array, grad: jax.Array, box: Box | None) -> jax.Array:
    """Bool mask of the coordinates the Newton step may move (not in the active set)."""
    if box is None:
        return jnp.ones(x.shape, bool)
    at_lower = (x <= box.lower) & (grad > 0)
    at_upper = (x >= box.upper) & (grad < 0)
    return ~(at_lower | at_upper)


def projected_gradient_norm(x: jax.Array, grad: jax.Array, box: Box | None) -> jax.Array:
    """``‖x - P(x - g)‖``: ``‖g‖`` without bounds, zero exactly at a KKT point of the box."""
    if box is None:
        return jnp.linalg.norm(grad)
    return jnp.linalg.norm(x - project(x - grad, box))


def bounded_implicit_adjoint(solve: Callable, fun: Callable, *, dense: bool = True) -> Callable:
    """Wraps ``solve(x0, args, box) -> (x*, aux, free)`` (flat ``x``, ``free`` the bool
    mask of free coordinates at ``x*``) into ``(x0, args, box) -> (x*, aux)`` with the
    implicit VJP through the active set (the box gets a zero cotangent).

    The backward pass applies :func:`gradjax.newton._adjoint.solve_hessian` to
    ``f_M(x) = f(M x + (1 - M) x*) + ½‖(1 - M)(x - x*)‖²`` (``M = diag(free)``): its
    Hessian at ``x*`` is the free block of ``∇²f`` with the identity on the bound
    coordinates, and its gradient's bound part does not depend on ``θ``, so the bound
    coordinates pass no gradient to ``θ``. ``dense=False`` solves by CG on
    Hessian-vector products of ``f_M``.
    """

    @jax.custom_vjp
    def solved(x0, args, box):
        return solve(x0, args, box)[:2]

    def forward(x0, args, box):
        x, aux, free = solve(x0, args, box)
        return (x, aux), (x, args, free, box)

    def backward(residuals, cotangents):
        x, args, free, box = residuals
        mask = free.astype(x.dtype)

        def masked(v, *a):
            inside = mask * v + (1 - mask) * x
            return fun(inside, *a) + 0.5 * jnp.sum(((1 - mask) * (v - x)) ** 2)

        x_bar = mask * cotangents[0]
        u = solve_hessian(masked, x, args, x_bar, dense=dense)
        _, vjp = jax.vjp(lambda a: jax.grad(masked)(x, *a), args)
        (args_bar,) = vjp(optax.tree.scale(-1.0, mask * u))
        return jnp.zeros_like(x), args_bar, jax.tree.map(jnp.zeros_like, box)

    solved.defvjp(forward, backward)
    return solved


class BoundedCurvature(NamedTuple):
    """Projected Newton's knowledge at a point: the true gradient, the free mask, and the
    Cholesky factor of the reduced Hessian (or the eigen-step where it has none)."""

    grad: jax.Array
    free: jax.Array
    step: jax.Array


def projected_newton_model(
    fun: Callable,
    args: tuple,
    box: Box,
    damping: Any,
    *,
    unrolled: bool,
    cg_num_steps: int | None = None,
    cg_tol: Any = None,
):
    """Projected Newton (Bertsekas 1982) as a :class:`LocalModel` in flat parameters.

    At ``x`` (projected onto the box) with gradient ``g`` and free set ``F``: the step
    solves the reduced Newton system ``(H_FF + damping·I) s_F = -g_F`` (Cholesky; where
    ``H_FF`` is not positive definite, its eigenvalues' magnitudes floored at
    ``√ε·max|λ|``), ``s`` is zero on the bound coordinates, and every trial point is
    projected. The point's ``grad`` is the projected gradient ``x - P(x - g)``, so the
    driver's ``‖grad‖ <= tol`` is the bounded optimality test. With ``cg_num_steps``
    (Newton-CG) the reduced system is solved by CG on the masked Hessian-vector product
    ``v ↦ M H M v + (I - M) v`` (no Hessian formed; ``cg_tol=None`` is the forcing term
    ``min(0.5, √‖g‖)``).
    """
    from gradjax._loop import branch
    from gradjax.newton._model import LocalModel, Point, value_grad_hessian

    evaluate_fgh = value_grad_hessian(fun, args)

    def eigen_step(operand):
        hessian, grad = operand
        lam, vecs = jnp.linalg.eigh(hessian)
        eps = jnp.finfo(lam.dtype).eps
        floor = jnp.sqrt(eps) * jnp.max(jnp.abs(lam)) + jnp.finfo(lam.dtype).tiny
        return -(vecs @ ((vecs.T @ grad) / (jnp.maximum(jnp.abs(lam), floor) + damping)))

    def evaluate(x, active):
        if cg_num_steps is not None:
            return evaluate_cg(x)
        x = project(x, box)
        value, grad, hessian = evaluate_fgh(x)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)) & jnp.all(jnp.isfinite(hessian))
        free = free_coordinates(x, grad, box)
        both = free[:, None] & free[None, :] & finite
        pinned = jnp.where(free, 0.0, 1.0).astype(x.dtype)
        reduced = jnp.where(both, (hessian + hessian.T) / 2, 0.0) + jnp.diag(pinned)
        free_grad = jnp.where(free & finite, grad, 0.0)
        chol = jnp.linalg.cholesky(reduced + damping * jnp.diag(1 - pinned))
        positive = jnp.all(jnp.isfinite(chol))
        safe = jnp.where(positive, chol, jnp.eye(x.size, dtype=x.dtype))
        newton = jax.scipy.linalg.cho_solve((safe, True), -free_grad)
        step = branch(
            active & finite & ~positive,
            eigen_step,
            (reduced, free_grad),
            newton,
            unrolled=unrolled,
        )
        step = jnp.where(free, step, 0.0)
        pgrad = x - project(x - grad, box)
        curvature = BoundedCurvature(grad, free, step)
        return Point(x, value, pgrad, finite, jnp.array(True), curvature)

    def evaluate_cg(x):
        from gradjax.newton._cg import conjugate_gradients, hessian_vector_product

        x = project(x, box)
        value, grad = jax.value_and_grad(fun)(x, *args)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        free = free_coordinates(x, grad, box)
        mask = jnp.where(free & finite, 1.0, 0.0).astype(x.dtype)
        hvp = hessian_vector_product(fun, args, x)

        def matvec(v):
            return mask * hvp(mask * v) + (1 - mask) * v + damping * mask * v

        free_grad = mask * jnp.where(finite, grad, 0.0)
        norm = jnp.linalg.norm(free_grad)
        tol = jnp.minimum(0.5, jnp.sqrt(norm)) if cg_tol is None else cg_tol
        out = conjugate_gradients(
            matvec, -free_grad, num_steps=cg_num_steps, tol=tol, unrolled=unrolled
        )
        step = mask * out.solution
        pgrad = x - project(x - grad, box)
        curvature = BoundedCurvature(grad, free, step)
        return Point(x, value, pgrad, finite, jnp.array(True), curvature)

    def value(x):
        return fun(project(x, box), *args)

    def step(point, small_grad):
        del small_grad
        s = point.curvature.step
        return s, jnp.zeros_like(s), point.curvature.grad @ s

    return LocalModel(evaluate, value, step)


def bounded_solve(
    fun: Callable,
    params: PyTree,
    args: tuple,
    box: Box,
    *,
    run: Callable,
    damping: Any,
    cg_num_steps: int | None,
    cg_tol: Any,
    unrolled: bool,
):
    """``minimize`` with ``bounds``: :func:`projected_newton_model` run by the driver
    ``run(model, x0)``, with the implicit adjoint through the active set. Returns
    ``(solution, (values, grad_norms, num_steps, status))``."""
    flat0, unravel = ravel_pytree(params)

    def flat_fun(x, *a):
        return fun(unravel(x), *a)

    def solve(x0, args, box):
        model = projected_newton_model(
            flat_fun,
            args,
            box,
            damping,
            unrolled=unrolled,
            cg_num_steps=cg_num_steps,
            cg_tol=cg_tol,
        )
        out = run(model, project(x0, box))
        aux = (out.values, out.grad_norms, out.num_steps, out.status)
        return out.params, aux, out.point.curvature.free

    if unrolled:
        x, aux, _ = solve(flat0, args, box)
    else:
        adjoint = bounded_implicit_adjoint(solve, flat_fun, dense=cg_num_steps is None)
        x, aux = adjoint(flat0, args, box)
    return unravel(x), aux
