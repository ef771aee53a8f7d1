"""The Newton-type driver: a :class:`LocalModel` stepped along a line search until done.

:func:`iterate` is what every method of :func:`gradjax.newton.minimize` runs: evaluate
the model at the start, then repeat (step, line search, status) in the loop of
``gradjax._loop`` (a bounded ``while_loop`` for the implicit adjoint, a fixed-length
``scan`` for the unrolled one). It returns an :class:`Iterates`, which a front end
(``minimize``, a least-squares solver) turns into its own result.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradjax._loop import scan_loop, while_loop
from gradjax._status import Status
from gradjax.newton._line_search import LineSearch, line_search
from gradjax.newton._model import LocalModel, Point

PyTree = Any
RUNNING = -1  # the status of a problem still iterating


class DriverState(NamedTuple):
    """The loop carry: the current point, its status (``RUNNING`` while it iterates), and
    the steps taken after convergence by the unrolled adjoint (see :func:`iterate`)."""

    point: Point
    status: jax.Array
    settled: jax.Array


class Iterates(NamedTuple):
    """What :func:`iterate` returns.

    Attributes:
      params: the final iterate (as the model's points hold it).
      values: (num_steps,) ``f`` after each step, flat after the last step taken.
      grad_norms: (num_steps,) the global gradient norm after each step.
      num_steps: int32, the steps taken.
      status: int32, a :class:`Status` code.
      point: the final :class:`Point` (its ``curvature`` serves the implicit adjoint).
    """

    params: PyTree
    values: jax.Array
    grad_norms: jax.Array
    num_steps: jax.Array
    status: jax.Array
    point: Point


def iterate(
    model: LocalModel,
    x0: PyTree,
    *,
    tol: Any,
    num_steps: int,
    constants: LineSearch,
    unrolled: bool,
    settle_steps: int = 0,
) -> Iterates:
    """Minimises ``model`` from ``x0``: SUCCESS at ``‖g‖ <= tol`` with ``curvature_ok``.

    ``settle_steps`` (unrolled only): after SUCCESS, up to this many of the remaining
    scan steps apply ``x + (s - stop_gradient(s))``, whose value is ``x`` but whose
    derivative is one more step of the fixed-point map ``x ↦ x + s(x)``. The unrolled
    derivative then goes on converging to the implicit one instead of freezing at the
    derivative of the steps taken (which is 0 when one exact step lands on the
    solution from a start that does not depend on the parameters).
    """

    def success(point: Point) -> jax.Array:
        return point.finite & (optax.tree.norm(point.grad) <= tol) & point.curvature_ok

    def step(state: DriverState) -> DriverState:
        point = state.point
        active = state.status == RUNNING
        s, d, slope = model.step(point, optax.tree.norm(point.grad) <= tol)
        new, found = line_search(
            model, point, s, d, slope, active, constants=constants, unrolled=unrolled
        )
        status = jnp.where(
            ~found,
            Status.NO_DESCENT,
            jnp.where(
                ~new.finite, Status.NONFINITE, jnp.where(success(new), Status.SUCCESS, RUNNING)
            ),
        ).astype(jnp.int32)
        keep = found & new.finite
        new = optax.tree.where(keep, new, point)
        return DriverState(new, jnp.where(active, status, state.status), state.settled)

    def settle(state: DriverState) -> DriverState:
        def once(state):
            point = state.point
            s, _, _ = model.step(point, jnp.array(False))
            ds = optax.tree.sub(s, jax.lax.stop_gradient(s))
            new = model.evaluate(optax.tree.add(point.params, ds), jnp.array(False))
            new = new._replace(curvature_ok=point.curvature_ok)
            return DriverState(new, state.status, state.settled + 1)

        go = (state.status == Status.SUCCESS) & (state.settled < settle_steps)
        return jax.lax.cond(go, once, lambda s: s, state)

    point = model.evaluate(x0, jnp.array(True))
    status = jnp.where(
        ~point.finite, Status.NONFINITE, jnp.where(success(point), Status.SUCCESS, RUNNING)
    ).astype(jnp.int32)
    record = lambda state: (state.point.value, optax.tree.norm(state.point.grad))  # noqa: E731
    converged = lambda state: state.status != RUNNING  # noqa: E731
    init = DriverState(point, status, jnp.zeros([], jnp.int32))
    if unrolled:
        frozen = settle if settle_steps > 0 else None
        out = scan_loop(
            step, init, num_steps=num_steps, converged=converged, record=record, frozen=frozen
        )
    else:
        out = while_loop(step, init, num_steps=num_steps, converged=converged, record=record)
    final = jnp.where(out.state.status == RUNNING, Status.MAX_STEPS, out.state.status)
    values, grad_norms = out.trace
    point = out.state.point
    return Iterates(point.params, values, grad_norms, out.num_steps, final.astype(jnp.int32), point)
