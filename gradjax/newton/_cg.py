"""The matrix-free models: Newton-CG on Hessian-vector products, and gradient descent.

Both learn the curvature only through products ``Hv`` (forward-over-reverse, about
the cost of two gradients each; ``jax.linearize`` runs the primal pass once per
point). CG on ``(H + damping·I)s = -g`` stops at the first direction ``p`` with
``pᵀ(H + damping·I)p <= 0`` (Steihaug) and hands that direction to the step as its
negative-curvature part. At a point with a small gradient, where ``-g`` no longer
probes the Hessian, CG is run once on a fixed pseudo-random right-hand side: its
directions are conjugate, so over the whole space their curvatures have the signs of
the eigenvalues, and a negative one shows a saddle (the certificate behind SUCCESS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import all_finite
from gradjax._loop import bounded_while, branch, tree_select
from gradjax.newton._model import LocalModel, Point

PyTree = Any


class CGResult(NamedTuple):
    """What :func:`conjugate_gradients` returns.

    Attributes:
      solution: the last iterate (``b`` itself when the very first direction has
        non-positive curvature, so ``-g`` gives steepest descent).
      negative_direction: the unit direction of non-positive curvature met, or zeros.
      negative_curvature: its Rayleigh quotient ``pᵀAp/‖p‖²`` (``<= 0``), or 0.
      found_negative: bool, such a direction was met.
    """

    solution: PyTree
    negative_direction: PyTree
    negative_curvature: jax.Array
    found_negative: jax.Array


def conjugate_gradients(
    matvec: Callable[[PyTree], PyTree],
    b: PyTree,
    *,
    maxiter: int,
    tol: Any,
    unrolled: bool = False,
) -> CGResult:
    """Solves ``Ax = b`` from ``x = 0`` by CG, stopping at ``‖r‖ <= tol·‖b‖``, after
    ``maxiter`` iterations, or at the first ``pᵀAp <= 0`` (Steihaug), keeping the
    iterate so far. ``unrolled=True`` runs a fixed-length scan (reverse-differentiable)."""
    zeros = optax.tree.zeros_like(b)
    bb = optax.tree.vdot(b, b).real
    threshold = (tol**2) * bb
    real = jnp.result_type(bb)

    def cond(state):
        _, _, _, rr, k, stop, *_ = state
        return (rr > threshold) & ~stop & (k < maxiter)

    def body(state):
        x, r, p, rr, k, _, direction, curvature, _ = state
        ap = matvec(p)
        pap = optax.tree.vdot(p, ap).real
        negative = pap <= 0
        alpha = rr / jnp.where(negative, 1.0, pap)
        x_next = optax.tree.add_scale(x, alpha, p)
        x_next = tree_select(negative, tree_select(k == 0, b, x), x_next)
        r_next = optax.tree.add_scale(r, -alpha, ap)
        rr_next = optax.tree.vdot(r_next, r_next).real
        beta = rr_next / jnp.where(rr > 0, rr, 1.0)
        p_next = optax.tree.add_scale(r_next, beta, p)
        pp = optax.tree.vdot(p, p).real
        unit = optax.tree.scale(1 / jnp.sqrt(jnp.where(pp > 0, pp, 1.0)), p)
        direction = tree_select(negative, unit, direction)
        curvature = jnp.where(negative, pap / jnp.where(pp > 0, pp, 1.0), curvature)
        return x_next, r_next, p_next, rr_next, k + 1, negative, direction, curvature, negative

    init = (zeros, b, b, bb, jnp.zeros([], jnp.int32), jnp.array(False), zeros)
    init = (*init, jnp.zeros([], real), jnp.array(False))
    out = bounded_while(cond, body, init, max_steps=maxiter, unrolled=unrolled)
    return CGResult(out[0], out[6], out[7], out[8])


def hessian_vector_product(fun: Callable, args: tuple, x: PyTree, damping: Any = 0.0):
    """``v -> (H + damping·I)v`` at ``x`` (the primal pass linearised once)."""
    _, hvp = jax.linearize(lambda p: jax.grad(fun)(p, *args), x)
    if isinstance(damping, (int, float)) and damping == 0:
        return hvp
    return lambda v: optax.tree.add_scale(hvp(v), damping, v)


def probe_direction(params: PyTree) -> PyTree:
    """A fixed pseudo-random right-hand side for the curvature probe."""
    return optax.tree.random_like(jax.random.key(0), params)


class ProbeCurvature(NamedTuple):
    """A matrix-free method's curvature at a point: the unit negative-curvature
    direction found by the probe (zeros if none) and its Rayleigh quotient."""

    direction: PyTree
    curvature: jax.Array


def matrix_free_model(
    fun: Callable,
    args: tuple,
    tol: Any,
    *,
    newton: bool,
    damping: Any,
    maxiter: int,
    cg_tol: Any,
    learning_rate: Any = None,
    unrolled: bool,
) -> LocalModel:
    """Newton-CG (``newton=True``) or gradient descent (``s = -ηg``) as a :class:`LocalModel`."""
    value_and_grad = jax.value_and_grad(fun)

    def probe(x):
        hvp = hessian_vector_product(fun, args, x, damping if newton else 0.0)
        out = conjugate_gradients(
            hvp, probe_direction(x), maxiter=maxiter, tol=0.0, unrolled=unrolled
        )
        return out.found_negative, ProbeCurvature(out.negative_direction, out.negative_curvature)

    def evaluate(x, active):
        value, grad = value_and_grad(x, *args)
        finite = jnp.isfinite(value) & all_finite(grad)
        need = active & finite & (optax.tree.norm(grad) <= tol)
        zeros = ProbeCurvature(optax.tree.zeros_like(x), jnp.zeros([], jnp.result_type(value)))

        found, curvature = branch(need, probe, x, (jnp.array(False), zeros), unrolled=unrolled)
        return Point(x, value, grad, finite, need & ~found, curvature)

    def value(x):
        return fun(x, *args)

    def step(point, small_grad):
        g, probed = point.grad, point.curvature
        if newton:
            hvp = hessian_vector_product(fun, args, point.params, damping)
            cg = conjugate_gradients(
                hvp, optax.tree.scale(-1.0, g), maxiter=maxiter, tol=cg_tol, unrolled=unrolled
            )
            s, direction, curvature = cg.solution, cg.negative_direction, cg.negative_curvature
            found = cg.found_negative
        else:
            s = optax.tree.scale(-learning_rate, g)
            direction, curvature, found = probed.direction, probed.curvature, jnp.array(False)
        # At a small gradient the probe's direction (if any) leads; s keeps its part.
        direction = tree_select(small_grad, probed.direction, direction)
        curvature = jnp.where(small_grad, probed.curvature, curvature)
        negative = (small_grad | found) & (curvature <= 0) & (optax.tree.norm(direction) > 0)
        sign = jnp.where(optax.tree.vdot(g, direction).real > 0, -1.0, 1.0)
        length = jnp.maximum(1.0, optax.tree.norm(s))
        d = optax.tree.scale(jnp.where(negative, sign * length, 0.0), direction)
        slope = optax.tree.vdot(g, s).real + 0.5 * curvature * optax.tree.vdot(d, d).real
        return s, d, slope

    return LocalModel(evaluate, value, step)
