"""The one fixed-length ``lax.scan`` driver that every iterative solver uses.

A solver is a ``step`` that maps a state to the next state, a ``converged``
predicate on a state, and a ``record`` that reads the per-step trace off a state.
The driver runs exactly ``num_steps`` scan iterations, so the loop has a static
length (it compiles once, vmaps, and ``jax.grad`` flows through it). A state that
has converged is frozen: later iterations keep it, so its trace stays flat while
vmapped neighbours go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

State = Any


class LoopOutput(NamedTuple):
    """What :func:`scan_loop` returns.

    Attributes:
      state: the final state.
      trace: ``record(state_k)`` for k = 1..num_steps, stacked on a leading axis.
      num_steps: int32, the number of steps actually taken (not frozen).
      converged: bool, ``converged(state)`` of the final state.
    """

    state: State
    trace: Any
    num_steps: jax.Array
    converged: jax.Array


def tree_select(pred: jax.Array, on_true: State, on_false: State) -> State:
    """Leafwise ``jnp.where(pred, on_true, on_false)`` for a scalar ``pred``."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def scan_loop(
    step: Callable[[State], State],
    state: State,
    *,
    num_steps: int,
    converged: Callable[[State], jax.Array],
    record: Callable[[State], Any],
) -> LoopOutput:
    """Iterates ``state <- step(state)`` for a fixed number of scan steps.

    Before each step the driver asks ``converged(state)``; once it is true the
    state is frozen: ``lax.cond`` skips the step (under ``vmap`` the predicate is
    batched, so the step is computed and its result discarded per problem), and
    ``num_steps`` counts real steps.

    Args:
      step: ``state -> state``, the solver's update (e.g. a Newton or EM step).
      state: the initial state, any pytree of arrays.
      num_steps: static number of scan iterations, a non-negative ``int``.
      converged: ``state -> bool scalar``; a converged state is not stepped.
      record: ``state -> pytree``, the per-step trace of the state after each step.

    Returns:
      A :class:`LoopOutput`.

    Example:
      >>> out = scan_loop(lambda x: x / 2, jnp.float32(8.0), num_steps=10,
      ...                 converged=lambda x: x < 1.5, record=lambda x: x)
      >>> out.trace[:4], int(out.num_steps)
      (Array([4., 2., 1., 1.], dtype=float32), 3)
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise TypeError(f"num_steps must be an int, got {type(num_steps).__name__}")
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")

    def body(carry, _):
        state, count = carry
        done = converged(state)
        state = jax.lax.cond(done, lambda s: s, step, state)
        count = count + jnp.where(done, 0, 1).astype(jnp.int32)
        return (state, count), record(state)

    (state, count), trace = jax.lax.scan(
        body, (state, jnp.zeros([], jnp.int32)), None, length=num_steps
    )
    return LoopOutput(state, trace, count, jnp.asarray(converged(state), bool))
