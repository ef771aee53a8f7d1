"""The local model of the loss at one iterate, and the step that minimises it.

Every method of :func:`gradjax.newton.minimize` is a :class:`LocalModel`: a way to
evaluate the loss at a point (with what the method knows there: value, gradient,
curvature) and a way to turn that knowledge into a step. A step has two parts,
``x(t) = x + t·s + √t·d`` (Moré & Sorensen's curvilinear path): ``s`` is the
minimiser of a convex model (the Newton step, or ``-ηg``), ``d`` a direction of
negative curvature (zero when there is none). Along the path the model predicts
the decrease ``t·m`` with ``m = gᵀs + ½ dᵀHd <= 0``, which the line search checks.

This module holds the types and the dense-Hessian model; the matrix-free models
are in ``_cg.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradjax._checks import all_finite
from gradjax._loop import branch

PyTree = Any


class Point(NamedTuple):
    """What a method knows at one iterate.

    Attributes:
      params: the iterate (a flat vector for dense Newton, the pytree otherwise).
      value: ``f(params)``.
      grad: ``∇f(params)``, same structure as ``params``.
      finite: bool, value, gradient (and Hessian, where formed) are all finite.
      curvature_ok: bool, no direction of negative curvature was found here (checked
        where the method needs it: always for dense Newton, at a small gradient for
        the matrix-free methods).
      curvature: method-specific curvature information used by the next step.
    """

    params: PyTree
    value: jax.Array
    grad: PyTree
    finite: jax.Array
    curvature_ok: jax.Array
    curvature: Any


class LocalModel(NamedTuple):
    """A method: ``evaluate(x, active) -> Point``, ``value(x) -> f(x)``,
    ``step(point, small_grad) -> (s, d, m)`` with ``m = gᵀs + ½dᵀHd`` the model's slope
    along the path (see the module docstring)."""

    evaluate: Callable[[PyTree, jax.Array], Point]
    value: Callable[[PyTree], jax.Array]
    step: Callable[[Point, jax.Array], tuple[PyTree, PyTree, jax.Array]]


class DenseCurvature(NamedTuple):
    """Dense Newton's curvature at a point: the Cholesky factor of ``H + damping·I``
    when it exists (``positive_definite``), else the eigendecomposition of ``H``."""

    chol: jax.Array
    positive_definite: jax.Array
    eigvals: jax.Array
    eigvecs: jax.Array


def value_grad_hessian(fun: Callable, args: tuple) -> Callable:
    """``x -> (f, g, H)`` from one linearisation: forward-over-reverse ``jacfwd`` of
    ``value_and_grad``, whose primal pass also gives ``f`` and ``g``."""
    value_and_grad = jax.value_and_grad(fun)

    def grad_with_aux(x):
        value, grad = value_and_grad(x, *args)
        return grad, (value, grad)

    def evaluate(x):
        hessian, (value, grad) = jax.jacfwd(grad_with_aux, has_aux=True)(x)
        return value, grad, hessian

    return evaluate


def curvature_tolerance(eigvals: jax.Array) -> jax.Array:
    """Eigenvalues above ``-√ε·max(1, max|λ|)`` count as non-negative (rounding of ``H``)."""
    eps = jnp.finfo(eigvals.dtype).eps
    return jnp.sqrt(eps) * jnp.maximum(1.0, jnp.max(jnp.abs(eigvals)))


def dense_model(fun: Callable, args: tuple, damping: Any, *, unrolled: bool) -> LocalModel:
    """Newton's model with the dense Hessian, in flat parameters ``x``.

    At a point where ``H + damping·I`` has a Cholesky factor the step is the damped
    Newton step ``s = -(H + damping·I)⁻¹g``, ``d = 0``: one factorisation per step on a
    convex problem. Where it has none, ``H = VΛVᵀ`` is decomposed (a branch taken
    only by problems that need it, also under ``vmap``): ``s = -V(|Λ|_δ + damping)⁻¹Vᵀg``
    with eigenvalues floored at ``δ = √ε·max|λ|`` (a convex model that keeps every
    direction's curvature magnitude). That step is a descent direction, and along an
    eigenvector of negative curvature it moves by ``-(vᵀg)/|λ|``, downhill, away from
    the saddle: it needs no help while ``g`` has a component there.

    Only at a small gradient (``small_grad``: ``‖g‖ <= tol``, where the point would
    otherwise pass as a solution) does the eigenvector ``v`` of ``λ_min < 0`` enter, as
    ``d = -sign(gᵀv)·max(1, ‖s‖)·v`` (``+v`` at ``gᵀv = 0``), so a saddle or maximum
    with ``g = 0`` is still left. Away from stationarity a unit-length ``d`` is the
    wrong scale: with ``λ_min ≈ -1e-4`` against ``λ_max ≈ 400`` (Biggs EXP6) it forces
    the line search to tiny steps, or throws the iterate far away (Osborne 1).
    """
    evaluate_fgh = value_grad_hessian(fun, args)

    def evaluate(x, active):
        value, grad, hessian = evaluate_fgh(x)
        hessian = (hessian + hessian.T) / 2
        finite = jnp.isfinite(value) & all_finite(grad) & all_finite(hessian)
        eye = jnp.eye(x.size, dtype=hessian.dtype)
        chol = jnp.linalg.cholesky(hessian + damping * eye)
        positive_definite = finite & all_finite(chol)
        # The eigendecomposition runs only where the factorisation failed.
        need = active & finite & ~positive_definite
        eigvals, eigvecs = branch(
            need,
            lambda h: tuple(jnp.linalg.eigh(h)),
            hessian,
            (jnp.zeros_like(grad), jnp.zeros_like(hessian)),
            unrolled=unrolled,
        )
        curvature_ok = positive_definite | (need & (eigvals[0] >= -curvature_tolerance(eigvals)))
        curvature = DenseCurvature(chol, positive_definite, eigvals, eigvecs)
        return Point(x, value, grad, finite, curvature_ok, curvature)

    def value(x):
        return fun(x, *args)

    def step(point, small_grad):
        c, g = point.curvature, point.grad
        # A failed factor is NaN: swap in I so that no NaN reaches either branch's gradient.
        chol = jnp.where(c.positive_definite, c.chol, jnp.eye(g.size, dtype=c.chol.dtype))
        newton = jax.scipy.linalg.cho_solve((chol, True), -g)
        # The eigen-step, from zeros when the decomposition did not run (all finite).
        lam, vecs = c.eigvals, c.eigvecs
        floor = (
            jnp.sqrt(jnp.finfo(lam.dtype).eps) * jnp.max(jnp.abs(lam)) + jnp.finfo(lam.dtype).tiny
        )
        coef = (vecs.T @ g) / (jnp.maximum(jnp.abs(lam), floor) + damping)
        eigen = -(vecs @ coef)
        s = jnp.where(c.positive_definite, newton, eigen)
        v = vecs[:, 0]
        # Negative curvature enters only at a small gradient (see the docstring).
        negative = small_grad & ~c.positive_definite & (lam[0] < -curvature_tolerance(lam))
        sign = jnp.where(g @ v > 0, -1.0, 1.0)
        length = jax.lax.stop_gradient(jnp.maximum(1.0, jnp.linalg.norm(s)))
        d = jnp.where(negative, sign * length * v, jnp.zeros_like(v))
        slope = g @ s + 0.5 * jnp.where(negative, lam[0], 0.0) * (d @ d)
        return s, d, slope

    return LocalModel(evaluate, value, step)
