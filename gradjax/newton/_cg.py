"""The matrix-free models: Newton-CG on Hessian-vector products, and gradient descent.

Both learn the curvature only through products ``Hv`` (forward-over-reverse, about
the cost of two gradients each; ``jax.linearize`` runs the primal pass once per
point). CG on ``(H + damping·I)s = -g`` stops at the first direction ``p`` whose
curvature is not clearly positive (Steihaug, with a rounding tolerance), keeping the
descent iterate so far. At a point with a small gradient, where ``-g`` no longer
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
from gradjax._loop import bounded_while, branch
from gradjax.newton._model import LocalModel, Point

PyTree = Any


class CGResult(NamedTuple):
    """What :func:`conjugate_gradients` returns.

    Attributes:
      solution: the last iterate; when CG stops at a direction ``p`` without positive
        curvature, its last step along ``p`` uses ``|pᵀAp|`` (``b`` itself when ``A`` is
        zero along it).
      negative_direction: the unit direction of non-positive curvature met, or zeros.
      negative_curvature: its Rayleigh quotient ``pᵀAp/‖p‖²`` (``< 0``), or 0.
      found_negative: bool, such a direction was met.
    """

    solution: PyTree
    negative_direction: PyTree
    negative_curvature: jax.Array
    found_negative: jax.Array


class CGState(NamedTuple):
    """The carry of :func:`conjugate_gradients`.

    Attributes:
      x: the iterate.
      r: the residual ``b - Ax``.
      p: the search direction.
      rr: ``‖r‖²``.
      k: int32, iterations done.
      stop: bool, CG met a direction of (near-)zero or negative curvature.
      scale: the largest Rayleigh quotient ``|pᵀAp|/‖p‖²`` seen, an estimate of ``‖A‖``.
      direction: the unit direction of negative curvature met, or zeros.
      curvature: its Rayleigh quotient (``< 0``), or 0.
      found_negative: bool, such a direction was met.
    """

    x: PyTree
    r: PyTree
    p: PyTree
    rr: jax.Array
    k: jax.Array
    stop: jax.Array
    scale: jax.Array
    direction: PyTree
    curvature: jax.Array
    found_negative: jax.Array


def curvature_rtols(dtype: Any) -> tuple[jax.Array, jax.Array]:
    """``(64·ε, √ε)``: a Rayleigh quotient below ``64·ε·‖A‖`` is rounding level (CG
    stops there, its step would divide by noise); only one below ``-√ε·‖A‖`` counts as
    negative curvature (the rule of dense Newton's eigenvalue test)."""
    eps = jnp.finfo(dtype).eps
    return 64 * eps, jnp.sqrt(eps)


def conjugate_gradients(
    matvec: Callable[[PyTree], PyTree],
    b: PyTree,
    *,
    num_steps: int,
    tol: Any,
    unrolled: bool = False,
) -> CGResult:
    """Solves ``Ax = b`` from ``x = 0`` by CG, stopping at ``‖r‖ <= tol·‖b‖``, after
    ``num_steps`` iterations, or at the first direction whose curvature is not clearly
    positive (Steihaug), keeping the iterate so far.

    The curvature test is ``pᵀAp <= 64·ε·‖p‖²·‖A‖`` with ``‖A‖`` estimated by the
    largest ``|pᵀAp|/‖p‖²`` met so far: a rounding-level ``pᵀAp`` (a singular ``A``)
    stops CG without counting as negative curvature; only ``pᵀAp < -√ε·‖p‖²·‖A‖`` does.
    (A larger stopping threshold such as ``√ε`` would cut CG short on ill-conditioned
    SPD matrices: Meyer's Hessian has a condition number near 1e18.)
    ``unrolled=True`` runs a fixed-length scan (reverse-differentiable)."""
    zeros = optax.tree.zeros_like(b)
    bb = optax.tree.vdot(b, b).real
    threshold = (tol**2) * bb
    real = jnp.result_type(bb)
    flat_rtol, negative_rtol = curvature_rtols(real)

    def cond(state: CGState) -> jax.Array:
        return (state.rr > threshold) & ~state.stop & (state.k < num_steps)

    def body(state: CGState) -> CGState:
        x, r, p, rr, k = state.x, state.r, state.p, state.rr, state.k
        ap = matvec(p)
        pap = optax.tree.vdot(p, ap).real
        pp = optax.tree.vdot(p, p).real
        quotient = pap / jnp.where(pp > 0, pp, 1.0)
        scale = jnp.maximum(state.scale, jnp.abs(quotient))
        flat = quotient <= flat_rtol * scale
        negative = quotient < -negative_rtol * scale
        # At a flat or negative direction the last step uses the curvature's magnitude
        # (floored at the rounding level), as dense Newton's |Λ| model does: it still
        # descends, since pᵀb = ‖r‖² > 0 for every CG direction.
        magnitude = jnp.maximum(jnp.abs(pap), flat_rtol * scale * pp)
        alpha = rr / jnp.where(flat, jnp.where(magnitude > 0, magnitude, rr), pap)
        x_next = optax.tree.add_scale(x, alpha, p)
        r_next = optax.tree.add_scale(r, -alpha, ap)
        rr_next = optax.tree.vdot(r_next, r_next).real
        beta = rr_next / jnp.where(rr > 0, rr, 1.0)
        p_next = optax.tree.add_scale(r_next, beta, p)
        unit = optax.tree.scale(1 / jnp.sqrt(jnp.where(pp > 0, pp, 1.0)), p)
        return CGState(
            x=x_next,
            r=r_next,
            p=p_next,
            rr=rr_next,
            k=k + 1,
            stop=flat,
            scale=scale,
            direction=optax.tree.where(negative, unit, state.direction),
            curvature=jnp.where(negative, quotient, state.curvature),
            found_negative=negative,
        )

    zero = jnp.zeros([], real)
    false = jnp.array(False)
    init = CGState(zeros, b, b, bb, jnp.zeros([], jnp.int32), false, zero, zeros, zero, false)
    out = bounded_while(cond, body, init, max_steps=num_steps, unrolled=unrolled)
    return CGResult(out.x, out.direction, out.curvature, out.found_negative)


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


def forcing_term(grad_norm: jax.Array) -> jax.Array:
    """Steihaug's relative CG tolerance ``min(0.5, √‖g‖)``: loose far from the solution,
    tight (superlinear convergence) near it."""
    return jnp.minimum(0.5, jnp.sqrt(grad_norm))


def matrix_free_model(
    fun: Callable,
    args: tuple,
    tol: Any,
    *,
    newton: bool,
    damping: Any,
    cg_num_steps: int,
    cg_tol: Any,
    learning_rate: Any = None,
    unrolled: bool,
) -> LocalModel:
    """Newton-CG (``newton=True``) or gradient descent (``s = -ηg``) as a :class:`LocalModel`.

    ``cg_tol=None`` is the forcing term :func:`forcing_term` of the gradient norm. The
    negative-curvature part ``d`` of a step is only used at a small gradient (the probe's
    direction), as dense Newton does; a direction of negative curvature met by the CG
    solve ends CG with the descent iterate so far.
    """
    value_and_grad = jax.value_and_grad(fun)

    def probe(x):
        hvp = hessian_vector_product(fun, args, x, damping if newton else 0.0)
        out = conjugate_gradients(
            hvp, probe_direction(x), num_steps=cg_num_steps, tol=0.0, unrolled=unrolled
        )
        return out.found_negative, ProbeCurvature(out.negative_direction, out.negative_curvature)

    def evaluate(x, active):
        value, grad = value_and_grad(x, *args)
        finite = jnp.isfinite(value) & all_finite(grad)
        need = active & finite & (optax.tree.norm(grad) <= tol)
        zeros = ProbeCurvature(optax.tree.zeros_like(x), jnp.zeros([], jnp.result_type(value)))

        found, curvature = branch(need, probe, x, (jnp.array(False), zeros), unrolled=unrolled)
        # The probe certifies (and picks a direction); it is not differentiated.
        curvature = jax.lax.stop_gradient(curvature)
        return Point(x, value, grad, finite, need & ~found, curvature)

    def value(x):
        return fun(x, *args)

    def step(point, small_grad):
        g, probed = point.grad, point.curvature
        if newton:
            hvp = hessian_vector_product(fun, args, point.params, damping)
            # A tolerance and a length are choices, not functions to differentiate
            # (the norm's derivative at g = 0 is NaN).
            rtol = cg_tol
            if cg_tol is None:
                rtol = forcing_term(jax.lax.stop_gradient(optax.tree.norm(g)))
            cg = conjugate_gradients(
                hvp,
                optax.tree.scale(-1.0, g),
                num_steps=cg_num_steps,
                tol=rtol,
                unrolled=unrolled,
            )
            s = cg.solution
        else:
            s = optax.tree.scale(-learning_rate, g)
        direction, curvature = probed.direction, probed.curvature
        negative = small_grad & (curvature < 0) & (optax.tree.norm(direction) > 0)
        sign = jnp.where(optax.tree.vdot(g, direction).real > 0, -1.0, 1.0)
        length = jax.lax.stop_gradient(jnp.maximum(1.0, optax.tree.norm(s)))
        d = optax.tree.scale(jnp.where(negative, sign * length, 0.0), direction)
        slope = optax.tree.vdot(g, s).real + 0.5 * curvature * optax.tree.vdot(d, d).real
        return s, d, slope

    return LocalModel(evaluate, value, step)
