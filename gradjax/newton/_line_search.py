"""The backtracking line search along the curvilinear path ``x(t) = x + t·s + √t·d``.

A step is accepted at the largest ``t = βⁱ`` (``i <= max_backtracks``) with a finite
value and the Armijo decrease ``f(x(t)) <= f(x) + σ·t·m`` (``m = gᵀs + ½dᵀHd``, the
model's slope; defaults ``σ = 1e-4``, ``β = 0.5``, 30 backtracks), at a point that
differs from ``x``: once ``x + t·s`` rounds to ``x`` the search has failed (a null step
is no descent).
At ``t = 1`` the full point (value, gradient, curvature) is evaluated at once, so a
step that is accepted there, the common case, costs one linearisation; only
backtracking evaluates ``f`` alone, and then the accepted point once more.

Near the solution an Armijo test on ``f`` cannot resolve the decrease: when the
predicted decrease ``|m|`` is below the rounding of ``f`` (``64·ε·|f|``) the full step is
accepted if it does not increase ``‖g‖``. This is how the Newton methods reach
gradient norms far below ``√(ε·|f|)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradjax._loop import bounded_while
from gradjax.newton._model import LocalModel, Point

PyTree = Any


class LineSearch(NamedTuple):
    """The backtracking constants: the Armijo fraction ``σ`` of the predicted decrease,
    the factor ``β`` that shortens ``t``, and the most shortenings (static)."""

    armijo: Any = 1e-4
    backtrack: Any = 0.5
    max_backtracks: int = 30


def moved(x: PyTree, old: PyTree) -> jax.Array:
    """Whether any entry of ``x`` differs from ``old``."""
    differs = jax.tree.map(lambda a, b: jnp.any(a != b), x, old)
    return jnp.any(jnp.stack(jax.tree.leaves(differs)))


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
    constants: LineSearch,
    unrolled: bool,
) -> tuple[Point, jax.Array]:
    """The accepted point and whether a decrease was found (else the point is kept).

    A loop of at most two trips with one evaluation site: the full point at ``t = 1``;
    if it is rejected, ``t`` is shortened on ``f`` alone until Armijo holds, and the
    second trip evaluates the full point there. ``active`` is false for problems that
    are already done (under ``vmap``): they never drive either loop.
    """
    eps = jnp.finfo(point.value.dtype).eps
    tiny = jnp.finfo(point.value.dtype).tiny
    rounding = -slope <= 64 * eps * jnp.maximum(jnp.abs(point.value), tiny)
    grad_norm = optax.tree.norm(point.grad)

    armijo, backtrack = constants.armijo, constants.backtrack

    def decreases(t, value):
        return jnp.isfinite(value) & (value <= point.value + armijo * t * slope)

    def halve(carry):
        t, i, _, _ = carry
        t = t * backtrack
        x = path(point, s, d, t)
        found = decreases(t, model.value(x)) & moved(x, point.params)
        return t, i + 1, ~found & (i + 1 < constants.max_backtracks), found

    def trip(carry):
        t, _, _, _, _ = carry
        x = path(point, s, d, t)
        trial = model.evaluate(x, active)
        steady = (t == 1) & rounding & (optax.tree.norm(trial.grad) <= grad_norm)
        accepted = trial.finite & (decreases(t, trial.value) | steady) & moved(x, point.params)
        shorten = active & ~accepted & (t == 1) & (constants.max_backtracks > 0)
        init = (t, jnp.zeros([], jnp.int32), shorten, jnp.array(False))
        # Only t (piecewise constant) and bools leave the loop, so reverse-mode
        # differentiation of the unrolled adjoint never has to transpose it.
        shorter, _, _, found = jax.lax.while_loop(lambda c: c[2], halve, init)
        shorter = jax.lax.stop_gradient(shorter)
        again = shorten & found
        # On the second trip a decrease was found already (by the halvings); a
        # non-finite gradient there shows in ``trial.finite``.
        found = accepted | again | (t != 1)
        return jnp.where(again, shorter, t), trial, accepted, found, again

    one = jnp.ones([], point.value.dtype)
    init = (one, point, jnp.array(False), jnp.array(False), active)
    _, trial, _, found, _ = bounded_while(
        lambda c: c[4], trip, init, max_steps=2, unrolled=unrolled
    )
    return optax.tree.where(found, trial, point), found
