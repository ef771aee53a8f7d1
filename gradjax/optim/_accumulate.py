"""Large effective batches from small ones: gradient accumulation across steps, and
micro-batching inside one step."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax._checks import (
    all_finite,
    check_bool,
    check_callable,
    check_int,
    check_scalar,
    inexact_tree,
)
from gradjax.optim._clipping import _norm

PyTree = Any


def _accumulator_dtype(tree: PyTree) -> Any:
    """The dtype every leaf of ``tree`` fits in, float32 or wider (bf16 sums lose digits)."""
    dtypes = [x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.promote_types(jnp.result_type(*dtypes) if dtypes else jnp.float32, jnp.float32)


class SkipState(NamedTuple):
    """``MultiStepsState.skip_state`` of :func:`accumulate` with a skip option.

    Attributes:
      num_skipped: int32, micro-batches skipped so far (non-finite, or a norm spike).
      recent_norms: (norm_window,) float32, the norms of the last accepted micro-batches
        (NaN where none yet), whose median ``max_norm_ratio`` compares against; shape
        (0,) without ``max_norm_ratio``.
    """

    num_skipped: jax.Array
    recent_norms: jax.Array


def accumulate(
    optimizer: optax.GradientTransformation,
    every_k: int,
    *,
    skip_nonfinite: bool = False,
    max_norm_ratio: float | None = None,
    norm_window: int = 16,
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

    Skipping bad micro-batches: with ``skip_nonfinite``, a gradient with a NaN or Inf
    entry is left out; with ``max_norm_ratio`` = r, so is one whose global norm exceeds
    r × the median norm of the last ``norm_window`` accepted micro-batches (never the
    first one, with no history). A skipped micro-batch returns zero updates and leaves
    the accumulator, the counters and the inner state as they were (optax's
    ``should_skip_update_fn`` semantics): the real update comes after k *accepted*
    micro-batches and is their mean. The state's ``skip_state`` is a :class:`SkipState`:
    ``optax.tree.get(state, "num_skipped")`` counts the skipped ones.

    Args:
      optimizer: any ``optax.GradientTransformation``.
      every_k: k ≥ 1, the number of micro-steps per real update (k = 1 is
        ``optimizer`` itself).
      skip_nonfinite: skip micro-batches whose gradient is not finite.
      max_norm_ratio: r > 0, or ``None`` (no norm test): skip micro-batches whose norm is
        above r × the running median norm.
      norm_window: ≥ 1, how many recent accepted norms the median is taken over (with
        ``max_norm_ratio`` only).

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
    skip_nonfinite = check_bool("skip_nonfinite", skip_nonfinite)
    if max_norm_ratio is not None:
        check_scalar("max_norm_ratio", max_norm_ratio, low=0.0, strict=True)
    norm_window = check_int("norm_window", norm_window, 1)
    if max_norm_ratio is None and norm_window != 16:
        raise ValueError(
            f"norm_window belongs to max_norm_ratio, got norm_window={norm_window} with "
            "max_norm_ratio=None"
        )
    skipping = skip_nonfinite or max_norm_ratio is not None
    window = norm_window if max_norm_ratio is not None else 0

    def multi_steps(dtype) -> optax.MultiSteps:
        return optax.MultiSteps(optimizer, every_k, accumulator_dtype=dtype)

    def init_fn(params):
        state = multi_steps(_accumulator_dtype(params)).init(params)
        if not skipping:
            return state
        recent = jnp.full((window,), jnp.nan, jnp.float32)
        return state._replace(skip_state=SkipState(jnp.zeros([], jnp.int32), recent))

    def update_fn(updates, state, params=None, **extra_args):
        inexact_tree("updates", updates)
        inner = multi_steps(_accumulator_dtype(state.acc_grads))
        if not skipping:
            return inner.update(updates, state, params, **extra_args)
        skip = state.skip_state
        bad = jnp.logical_not(all_finite(updates)) if skip_nonfinite else jnp.array(False)
        norm = _norm(updates).real.astype(jnp.float32)
        recent = skip.recent_norms
        if max_norm_ratio is not None:
            median = jnp.nanmedian(recent)  # NaN before the first accepted micro-batch
            spike = jnp.logical_not(jnp.isnan(median)) & ~(norm <= max_norm_ratio * median)
            bad = bad | spike
            recent = jnp.where(bad, recent, jnp.roll(recent, 1).at[0].set(norm))
        num_skipped = skip.num_skipped + bad.astype(jnp.int32)
        skip_state = SkipState(num_skipped, recent)

        def accepted(updates, state):
            u, new = inner.update(updates, state._replace(skip_state=()), params, **extra_args)
            return u, new._replace(skip_state=skip_state)

        def skipped(updates, state):
            shapes = jax.eval_shape(accepted, updates, state)[0]
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            return zeros, state._replace(skip_state=skip_state)

        return jax.lax.cond(bad, skipped, accepted, updates, state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _batch_size(batch: PyTree, divisor: int, name: str) -> int:
    """The leading size shared by ``batch``'s arrays, > 0 and a multiple of ``divisor``
    (the option ``name``); shared with ``per_example_clipped_grad``."""
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("batch must hold at least one array (the second argument of fun)")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [np.shape(x) for x in leaves]
        raise ValueError(
            f"batch (the second argument) must be arrays sharing a leading batch axis, "
            f"got shapes {shapes}"
        )
    (size,) = sizes
    if size == 0:
        raise ValueError("batch (the second argument) must hold at least one example, got 0")
    if size % divisor:
        raise ValueError(
            f"batch (the second argument) has leading size {size}, which {name}={divisor} "
            "does not divide"
        )
    return size


class MicrobatchInfo(NamedTuple):
    """What :func:`microbatched_value_and_grad` reports beside the value with
    ``skip_nonfinite``: ``num_skipped`` (int32), the micro-batches left out, and ``aux``,
    the stacked aux with ``has_aux`` (else ``None``)."""

    num_skipped: jax.Array
    aux: Any


def microbatched_value_and_grad(
    fun: Callable[..., Any],
    num_microbatches: int,
    *,
    has_aux: bool = False,
    skip_nonfinite: bool = False,
) -> Callable[..., Any]:
    r"""``jax.value_and_grad(fun)`` computed one micro-batch at a time, in a ``lax.scan``.

    For a loss that is a mean over the batch (the second argument), the full-batch
    value and gradient are the means over ``n`` equal micro-batches:

    .. math:: L(\theta; B) = \frac1n \sum_{j=1}^{n} L(\theta; B_j), \qquad
              \nabla L(\theta; B) = \frac1n \sum_{j=1}^{n} \nabla L(\theta; B_j)

    The batch's leading axis is split into ``n`` contiguous micro-batches; a
    ``lax.scan`` accumulates their values and gradients (in float32 or wider), so the
    activations alive at any time are those of one micro-batch: memory for time.

    With ``skip_nonfinite``, a micro-batch whose value or gradient has a NaN or Inf is
    left out: value and gradient are the means over the m good micro-batches
    (Σ_good / m), and the count n − m is reported. With every micro-batch bad, m = 0
    and both are NaN (the failure shows).

    Args:
      fun: ``fun(params, batch, *args, **kwargs) -> loss`` (or ``(loss, aux)``
        with ``has_aux``), mean-reduced over ``batch``, a pytree of arrays sharing a
        leading batch axis. ``args``/``kwargs`` (e.g. a PRNG key) go unchanged to
        every micro-batch; batch-coupled layers (BatchNorm) see micro-batches.
      num_microbatches: n ≥ 1; must divide the batch size (else ``ValueError``).
      has_aux: as in ``jax.value_and_grad``. The aux outputs of the micro-batches are
        **stacked** on a new leading axis of size n, also for n = 1 (nothing is lost:
        take ``.mean(0)`` of a mean-reduced metric, ``.reshape(-1, ...)`` of
        per-example outputs).
      skip_nonfinite: leave non-finite micro-batches out of the means.

    Returns:
      A function with ``fun``'s signature returning ``(value, grads)``, or
      ``((value, aux), grads)`` with ``has_aux``; ``value`` and ``grads`` as from
      ``jax.value_and_grad(fun)`` (gradients with respect to the first argument,
      in the parameters' dtype). With ``skip_nonfinite``: ``((value, info), grads)``,
      ``info`` a :class:`MicrobatchInfo` (``num_skipped``, ``aux``).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import optim
      >>> def fun(w, batch):
      ...     x, y = batch
      ...     return jnp.mean((x @ w - y) ** 2)
      >>> x, y = jnp.arange(8.0).reshape(4, 2), jnp.ones(4)
      >>> grad_fn = optim.microbatched_value_and_grad(fun, 2)  # 2 micro-batches of 2
      >>> loss, grads = grad_fn(jnp.zeros(2), (x, y))
      >>> loss, grads
      (Array(1., dtype=float32), Array([-6., -8.], dtype=float32))
      >>> y = y.at[0].set(jnp.nan)  # spoils the first micro-batch
      >>> grad_fn = optim.microbatched_value_and_grad(fun, 2, skip_nonfinite=True)
      >>> (loss, info), grads = grad_fn(jnp.zeros(2), (x, y))
      >>> loss, grads, info.num_skipped  # the second micro-batch alone
      (Array(1., dtype=float32), Array([-10., -12.], dtype=float32), Array(1, dtype=int32))

    References:
      Su Jianlin, "Trading time for results: a gradient accumulation optimizer for
      Keras" (kexue.fm/archives/6794), 2019.
    """
    check_callable("fun", fun)
    num_microbatches = check_int("num_microbatches", num_microbatches, 1)
    has_aux = check_bool("has_aux", has_aux)
    skip_nonfinite = check_bool("skip_nonfinite", skip_nonfinite)
    value_and_grad = jax.value_and_grad(fun, has_aux=has_aux)

    def finish(value, aux, grads, num_skipped):
        if skip_nonfinite:
            return (value, MicrobatchInfo(num_skipped, aux if has_aux else None)), grads
        return ((value, aux) if has_aux else value), grads

    @functools.wraps(fun)
    def wrapped(params, batch, *args, **kwargs):
        _batch_size(batch, num_microbatches, "num_microbatches")
        if num_microbatches == 1 and not skip_nonfinite:  # aux stacked on an axis of size 1
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
            total, grad_sum, good = carry
            out, grads = value_and_grad(params, micro_batch, *args, **kwargs)
            value, aux = out if has_aux else (out, None)
            if skip_nonfinite:  # a bad micro-batch adds exact zeros (where, not a product)
                ok = all_finite(value, grads)
                value = jnp.where(ok, value, 0)
                grads = jax.tree.map(lambda g: jnp.where(ok, g, 0), grads)
                good = good + ok.astype(good.dtype)
            total = total + value.astype(total.dtype)
            grad_sum = jax.tree.map(lambda a, g: a + g.astype(a.dtype), grad_sum, grads)
            return (total, grad_sum, good), aux

        count = jnp.zeros([], jnp.int32) if skip_nonfinite else jnp.int32(num_microbatches)
        init = (zeros(value_shape), jax.tree.map(zeros, grads_shape), count)
        (total, grad_sum, good), aux = jax.lax.scan(body, init, micro)
        value = (total / good).astype(value_shape.dtype)  # 0/0 = NaN: all skipped
        grads = jax.tree.map(lambda a, s: (a / good).astype(s.dtype), grad_sum, grads_shape)
        return finish(value, aux, grads, num_microbatches - good)

    return wrapped
