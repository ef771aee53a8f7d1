"""The one loop driver that every iterative solver uses.

A solver is a ``step`` that maps a state to the next state, a ``converged``
predicate on a state (true once the solver is done) and a ``record`` that reads the
per-step trace off a state. Two modes share this contract:

* :func:`scan_loop`, a fixed-length ``lax.scan``: every one of ``num_steps``
  iterations runs (a done state is frozen), so it compiles to a static loop that
  reverse-mode ``jax.grad`` can unroll. EM and the unrolled adjoint of ``minimize``
  use it.
* :func:`while_loop`, a bounded ``lax.while_loop``: it stops as soon as the state
  is done, and under ``jax.vmap`` as soon as *every* problem is done, so
  ``num_steps`` is a bound, not a cost. Forward solves with an implicit adjoint use it.

Both return traces of length ``num_steps``, flat after the last step taken.
:func:`bounded_while` and :func:`branch` make the same choice for an inner loop (CG)
and for a branch that only some problems of a batch take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradjax._checks import check_int

State = Any

__all__ = ["LoopOutput", "bounded_while", "branch", "scan_loop", "while_loop"]


class LoopOutput(NamedTuple):
    """What :func:`scan_loop` and :func:`while_loop` return.

    Attributes:
      state: the final state.
      trace: ``record(state_k)`` for k = 1..num_steps, stacked on a leading axis
        (entries after the last step taken repeat the final state's record).
      num_steps: int32, the number of steps actually taken.
      converged: bool, ``converged(state)`` of the final state.
    """

    state: State
    trace: Any
    num_steps: jax.Array
    converged: jax.Array


def scan_loop(
    step: Callable[[State], State],
    state: State,
    *,
    num_steps: int,
    converged: Callable[[State], jax.Array],
    record: Callable[[State], Any],
    frozen: Callable[[State], State] | None = None,
) -> LoopOutput:
    """Iterates ``state <- step(state)`` for a fixed number of scan steps.

    Before each step the driver asks ``converged(state)``; once it is true the
    state is frozen: ``lax.cond`` skips the step (under ``vmap`` the predicate is
    batched, so the step is computed and its result discarded per problem), and
    ``num_steps`` counts real steps. A ``frozen`` map, when given, replaces the
    identity on the frozen steps (it must keep the state's value: ``minimize`` uses it
    to go on differentiating a fixed-point map after convergence).

    Args:
      step: ``state -> state``, the solver's update (e.g. a Newton or EM step).
      state: the initial state, any pytree of arrays.
      num_steps: static number of scan iterations, a non-negative ``int``.
      converged: ``state -> bool scalar``; a converged state is not stepped.
      record: ``state -> pytree``, the per-step trace of the state after each step.
      frozen: ``state -> state`` applied on the steps after convergence (default: the
        identity).

    Returns:
      A :class:`LoopOutput`.

    Example:
      >>> import jax.numpy as jnp
      >>> out = scan_loop(lambda x: x / 2, jnp.float32(8.0), num_steps=10,
      ...                 converged=lambda x: x < 1.5, record=lambda x: x)
      >>> out.trace[:4], int(out.num_steps)
      (Array([4., 2., 1., 1.], dtype=float32), 3)
    """
    num_steps = check_int("num_steps", num_steps, 0)
    keep = (lambda s: s) if frozen is None else frozen

    def body(carry, _):
        state, count = carry
        done = converged(state)
        state = jax.lax.cond(done, keep, step, state)
        count = count + jnp.where(done, 0, 1).astype(jnp.int32)
        return (state, count), record(state)

    (state, count), trace = jax.lax.scan(
        body, (state, jnp.zeros([], jnp.int32)), None, length=num_steps
    )
    return LoopOutput(state, trace, count, jnp.asarray(converged(state), bool))


def while_loop(
    step: Callable[[State], State],
    state: State,
    *,
    num_steps: int,
    converged: Callable[[State], jax.Array],
    record: Callable[[State], Any],
) -> LoopOutput:
    """Iterates ``state <- step(state)`` until ``converged(state)``, at most ``num_steps`` times.

    The same contract and result as :func:`scan_loop`, as a bounded
    ``lax.while_loop``: the loop ends when the state is done or after ``num_steps``
    steps. Under ``jax.vmap`` it ends when every problem is done (a finished
    problem's state is kept while its neighbours go on), so a batch of easy
    problems costs the same at ``num_steps=20`` and ``num_steps=1000``. The trace
    is written into a preallocated ``(num_steps, ...)`` buffer. Reverse-mode
    differentiation through it is not possible (use an implicit adjoint, or
    :func:`scan_loop`).

    Args:
      step: ``state -> state``.
      state: the initial state, any pytree of arrays.
      num_steps: the static bound on the number of steps, a non-negative ``int``.
      converged: ``state -> bool scalar``; the loop stops at a converged state.
      record: ``state -> pytree`` of arrays, the trace of each step.

    Returns:
      A :class:`LoopOutput`.

    Example:
      >>> import jax.numpy as jnp
      >>> out = while_loop(lambda x: x / 2, jnp.float32(8.0), num_steps=10,
      ...                  converged=lambda x: x < 1.5, record=lambda x: x)
      >>> out.trace[:4], int(out.num_steps)
      (Array([4., 2., 1., 1.], dtype=float32), 3)
    """
    num_steps = check_int("num_steps", num_steps, 0)
    shapes = jax.eval_shape(record, state)
    buffer = jax.tree.map(lambda s: jnp.zeros((num_steps, *s.shape), s.dtype), shapes)
    if num_steps == 0:
        return LoopOutput(
            state, buffer, jnp.zeros([], jnp.int32), jnp.asarray(converged(state), bool)
        )

    def cond(carry):
        state, count, _ = carry
        return (count < num_steps) & ~converged(state)

    def body(carry):
        state, count, buffer = carry
        state = step(state)
        buffer = jax.tree.map(lambda b, r: b.at[count].set(r), buffer, record(state))
        return state, count + 1, buffer

    state, count, buffer = jax.lax.while_loop(cond, body, (state, jnp.zeros([], jnp.int32), buffer))
    taken = jnp.arange(num_steps) < count
    final = record(state)
    trace = jax.tree.map(
        lambda b, r: jnp.where(taken.reshape((-1,) + (1,) * r.ndim), b, r), buffer, final
    )
    return LoopOutput(state, trace, count, jnp.asarray(converged(state), bool))


def bounded_while(
    cond: Callable[[State], jax.Array],
    body: Callable[[State], State],
    state: State,
    *,
    max_steps: int,
    unrolled: bool,
) -> State:
    """``while cond(state): state = body(state)``, at most ``max_steps`` times.

    With ``unrolled=False`` a ``lax.while_loop`` (under ``vmap`` it runs while any
    problem's ``cond`` holds). With ``unrolled=True`` a fixed-length
    ``lax.scan`` of ``max_steps`` frozen-when-done steps, which reverse-mode
    differentiation can go through.
    """
    if not unrolled:

        def counted_cond(carry):
            state, k = carry
            return (k < max_steps) & cond(state)

        def counted_body(carry):
            state, k = carry
            return body(state), k + 1

        return jax.lax.while_loop(counted_cond, counted_body, (state, jnp.zeros([], jnp.int32)))[0]

    def scan_body(state, _):
        return jax.lax.cond(cond(state), body, lambda s: s, state), None

    return jax.lax.scan(scan_body, state, None, length=max_steps)[0]


def branch(
    pred: jax.Array, fn: Callable[[Any], Any], operand: Any, otherwise: Any, *, unrolled: bool
) -> Any:
    """``fn(operand)`` where ``pred`` holds, else ``otherwise``.

    With ``unrolled=False`` a 0/1-trip ``lax.while_loop``: under ``vmap`` ``fn`` runs
    only when some problem's ``pred`` holds (``lax.cond`` would become a select that
    always runs it). ``operand`` travels in the loop carry and is replaced inside the
    body, so XLA cannot hoist ``fn(operand)`` out of the loop as loop-invariant (which
    would run it unconditionally). With ``unrolled=True`` a ``lax.cond``, which
    reverse-mode differentiation can go through.
    """
    if unrolled:
        return jax.lax.cond(pred, fn, lambda _: otherwise, operand)

    def body(carry):
        _, operand, _ = carry
        return jnp.zeros_like(pred), jax.tree.map(jnp.zeros_like, operand), fn(operand)

    return jax.lax.while_loop(lambda carry: carry[0], body, (pred, operand, otherwise))[2]
