"""Large effective batches from small ones: gradient accumulation across steps, and
micro-batching inside one step."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax._checks import check_bool, check_callable, check_int, inexact_tree

PyTree = Any


def _accumulator_dtype(tree: PyTree) -> Any:
    """The dtype every leaf of ``tree`` fits in, float32 or wider (bf16 sums lose digits)."""
    dtypes = [x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.promote_types(jnp.result_type(*dtypes) if dtypes else jnp.float32, jnp.float32)


def accumulate(
    optimizer: optax.GradientTransformation, every_k: int
) -> optax.GradientTransformationExtraArgs:
    r"""Gradient accumulation: one step of ``optimizer`` on the mean of ``every_k`` gradients.

    .. math:: \bar g = \frac1k \sum_{j=0}^{k-1} g_j, \qquad
              (u, s) = \text{optimizer.update}(\bar g, s) \text{ at micro-steps } k-1, 2k-1, \dots

    On the other micro-steps the updates are exactly zero and the optimizer's state
    (moments, step count) does not change, so Adam's bias correction counts real
    updates only. With ``k`` equal-size micro-batches of a mean-reduced loss the
    parameters follow one big batch of ``k`` times the size, up to rounding. Built on
    ``optax.MultiSteps`` (its state is a ``MultiStepsState``; ``state.mini_step == 0``
    after a real update), with the accumulator in the parameters' dtype or float32,
    whichever is wider: float64 stays float64 (where ``optax.MultiSteps`` defaults to
    float32), bf16/float16 gradients are summed in float32 and the mean handed to
    ``optimizer`` in their own dtype, and a tree mixing dtypes accumulates in the
    widest. A NaN gradient makes that window's mean, and so the update, NaN.

    Layers coupled across the batch (BatchNorm statistics) break the equivalence: they
    see micro-batches, not the big batch.

    Args:
      optimizer: any ``optax.GradientTransformation``.
      every_k: k ≥ 1, the number of micro-steps per real update (k = 1 is
        ``optimizer`` itself).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from gradjax import optim
      >>> tx = optim.accumulate(optax.sgd(1.0), every_k=2)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([1.0, 2.0]), state)  # first micro-step: no move
      >>> u
      Array([0., 0.], dtype=float32)
      >>> u, state = tx.update(jnp.array([3.0, 6.0]), state)  # -mean of the two
      >>> u
      Array([-2., -4.], dtype=float32)
      >>> tx = optim.accumulate(optax.adam(1e-3), every_k=8)  # batch 16 acts as 128

    References:
      Su Jianlin, "Trading time for results: a gradient accumulation optimizer for
      Keras" (kexue.fm/archives/6794), 2019.
    """
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    every_k = check_int("every_k", every_k, 1)

    def multi_steps(dtype) -> optax.MultiSteps:
        return optax.MultiSteps(optimizer, every_k, accumulator_dtype=dtype)

    def init_fn(params):
        return multi_steps(_accumulator_dtype(params)).init(params)

    def update_fn(updates, state, params=None, **extra_args):
        inexact_tree("updates", updates)
        dtype = _accumulator_dtype(state.acc_grads)
        return multi_steps(dtype).update(updates, state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _batch_size(batch: PyTree, num_microbatches: int) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("batch must hold at least one array (the second argument of loss_fn)")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [np.shape(x) for x in leaves]
        raise ValueError(
            f"batch (the second argument) must be arrays sharing a leading batch axis, "
            f"got shapes {shapes}"
        )
    (size,) = sizes
    if size % num_microbatches:
        raise ValueError(
            f"batch (the second argument) has leading size {size}, which num_microbatches="
            f"{num_microbatches} does not divide"
        )
    return size


def microbatched_value_and_grad(
    loss_fn: Callable[..., Any], num_microbatches: int, *, has_aux: bool = False
) -> Callable[..., Any]:
    r"""``jax.value_and_grad(loss_fn)`` computed one micro-batch at a time, in a ``lax.scan``.

    For a loss that is a mean over the batch (the second argument), the full-batch
    value and gradient are the means over ``n`` equal micro-batches:

    .. math:: L(\theta; B) = \frac1n \sum_{j=1}^{n} L(\theta; B_j), \qquad
              \nabla L(\theta; B) = \frac1n \sum_{j=1}^{n} \nabla L(\theta; B_j)

    The batch's leading axis is split into ``n`` contiguous micro-batches; a
    ``lax.scan`` accumulates their values and gradients (in float32 or wider), so the
    activations alive at any time are those of one micro-batch: memory for time.

    Args:
      loss_fn: ``loss_fn(params, batch, *args, **kwargs) -> loss`` (or ``(loss, aux)``
        with ``has_aux``), mean-reduced over ``batch``, a pytree of arrays sharing a
        leading batch axis. ``args``/``kwargs`` (e.g. a PRNG key) go unchanged to
        every micro-batch; batch-coupled layers (BatchNorm) see micro-batches.
      num_microbatches: n ≥ 1; must divide the batch size (else ``ValueError``).
      has_aux: as in ``jax.value_and_grad``. The aux outputs of the micro-batches are
        **stacked** on a new leading axis of size n, also for n = 1 (nothing is lost:
        take ``.mean(0)`` of a mean-reduced metric, ``.reshape(-1, ...)`` of
        per-example outputs).

    Returns:
      A function with ``loss_fn``'s signature returning ``(value, grads)``, or
      ``((value, aux), grads)`` with ``has_aux``; ``value`` and ``grads`` as from
      ``jax.value_and_grad(loss_fn)`` (gradients with respect to the first argument,
      in the parameters' dtype).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import optim
      >>> def loss_fn(w, batch):
      ...     x, y = batch
      ...     return jnp.mean((x @ w - y) ** 2)
      >>> x, y = jnp.arange(8.0).reshape(4, 2), jnp.ones(4)
      >>> grad_fn = optim.microbatched_value_and_grad(loss_fn, 2)  # 2 micro-batches of 2
      >>> loss, grads = grad_fn(jnp.zeros(2), (x, y))
      >>> loss, grads
      (Array(1., dtype=float32), Array([-6., -8.], dtype=float32))

    References:
      Su Jianlin, "Trading time for results: a gradient accumulation optimizer for
      Keras" (kexue.fm/archives/6794), 2019.
    """
    check_callable("loss_fn", loss_fn)
    num_microbatches = check_int("num_microbatches", num_microbatches, 1)
    has_aux = check_bool("has_aux", has_aux)
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

    @functools.wraps(loss_fn)
    def wrapped(params, batch, *args, **kwargs):
        _batch_size(batch, num_microbatches)
        if num_microbatches == 1:  # aux stacked on a leading axis of size 1, as for n > 1
            out, grads = value_and_grad(params, batch, *args, **kwargs)
            if has_aux:
                out = (out[0], jax.tree.map(lambda a: jnp.expand_dims(a, 0), out[1]))
            return out, grads
        micro = jax.tree.map(
            lambda x: jnp.reshape(x, (num_microbatches, -1, *np.shape(x)[1:])), batch
        )
        # The accumulator: value and gradients in float32 or wider.
        out_shape = jax.eval_shape(
            lambda p, b: value_and_grad(p, b, *args, **kwargs),
            params,
            jax.tree.map(operator.itemgetter(0), micro),
        )
        (value_shape, grads_shape) = out_shape
        if has_aux:
            value_shape = value_shape[0]

        def zeros(s):
            return jnp.zeros(s.shape, jnp.promote_types(s.dtype, jnp.float32))

        def body(carry, micro_batch):
            total, grad_sum = carry
            out, grads = value_and_grad(params, micro_batch, *args, **kwargs)
            value, aux = out if has_aux else (out, None)
            total = total + value.astype(total.dtype)
            grad_sum = jax.tree.map(lambda a, g: a + g.astype(a.dtype), grad_sum, grads)
            return (total, grad_sum), aux

        init = (zeros(value_shape), jax.tree.map(zeros, grads_shape))
        (total, grad_sum), aux = jax.lax.scan(body, init, micro)
        value = (total / num_microbatches).astype(value_shape.dtype)
        grads = jax.tree.map(
            lambda a, s: (a / num_microbatches).astype(s.dtype), grad_sum, grads_shape
        )
        return ((value, aux) if has_aux else value), grads

    return wrapped
