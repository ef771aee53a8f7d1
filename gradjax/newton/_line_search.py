"""The backtracking line search along the curvilinear path ``x(t) = x + t·s + √t·d``.

A step is accepted at the largest ``t = 2⁻ⁱ`` with a finite value and the Armijo
decrease ``f(x(t)) <= f(x) + σ·t·m`` (``m = gᵀs + ½dᵀHd``, the model's slope, ``σ = 1e-4``).
At ``t = 1`` the full point (value, gradient, curvature) is evaluated at once, so a
step that is accepted there, the common case, costs one linearisation; only
backtracking evaluates ``f`` alone, and then the accepted point once more.

Near the solution an Armijo test on ``f`` cannot resolve the decrease: when the
predicted decrease ``|m|`` is below the rounding of ``f`` (``64·ε·|f|``) the full step is
accepted if it does not increase ``‖g‖``. This is how the Newton methods reach
gradient norms far below ``√(ε·|f|)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from gradjax._loop import bounded_while, tree_select
from gradjax.newton._model import LocalModel, Point

PyTree = Any
ARMIJO = 1e-4
MAX_HALVINGS = 30


def path(point: Point, s: PyTree, d: PyTree, t: jax.Array) -> PyTree:
    """``x + t·s + √t·d``, in the iterate's dtypes."""
    x = optax.tree.add_scale(point.params, t, s)
    x = optax.tree.add_scale(x, jnp.sqrt(t), d)
    return jax.tree.map(lambda new, old: new.astype(old.dtype), x, point.params)


def line_search(
    model: LocalModel,
    point: Point,
    s: PyTree,
    d: PyTree,
    slope: jax.Array,
    active: jax.Array,
    *,
    unrolled: bool,
) -> tuple[Point, jax.Array]:
    """The accepted point and whether a decrease was found (else the point is kept).

    A loop of at most two trips with one evaluation site: the full point at ``t = 1``;
    if it is rejected, ``t`` is halved on ``f`` alone until Armijo holds, and the
    second trip evaluates the full point there. ``active`` is false for problems that
    are already done (under ``vmap``): they never drive either loop.
    """
    eps = jnp.finfo(point.value.dtype).eps
    tiny = jnp.finfo(point.value.dtype).tiny
    rounding = -slope <= 64 * eps * jnp.maximum(jnp.abs(point.value), tiny)
    grad_norm = optax.tree.norm(point.grad)

    def decreases(t, value):
        return jnp.isfinite(value) & (value <= point.value + ARMIJO * t * slope)

    def halve(carry):
        t, i, _, _ = carry
        t = t / 2
        found = decreases(t, model.value(path(point, s, d, t)))
        return t, i + 1, ~found & (i + 1 < MAX_HALVINGS), found

    def trip(carry):
        t, _, _, _, _ = carry
        trial = model.evaluate(path(point, s, d, t), active)
        steady = (t == 1) & rounding & (optax.tree.norm(trial.grad) <= grad_norm)
        accepted = trial.finite & (decreases(t, trial.value) | steady)
        backtrack = active & ~accepted & (t == 1)
        init = (t, jnp.zeros([], jnp.int32), backtrack, jnp.array(False))
        # Only t (piecewise constant) and bools leave the loop, so reverse-mode
        # differentiation of the unrolled adjoint never has to transpose it.
        shorter, _, _, found = jax.lax.while_loop(lambda c: c[2], halve, init)
        shorter = jax.lax.stop_gradient(shorter)
        again = backtrack & found
        return jnp.where(again, shorter, t), trial, accepted, accepted | again, again

    one = jnp.ones([], point.value.dtype)
    init = (one, point, jnp.array(False), jnp.array(False), active)
    _, trial, _, found, _ = bounded_while(
        lambda c: c[4], trip, init, max_steps=2, unrolled=unrolled
    )
    return tree_select(found, trial, point), found
