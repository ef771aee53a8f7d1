"""A minimal jitted minibatch training loop for the examples, the tour and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax._checks import check_bool, check_callable, check_int, check_key


class FitResult(NamedTuple):
    """Trained parameters and the per-step training loss, (steps,) float32."""

    params: Any
    losses: np.ndarray


def fit(
    key: jax.Array,
    loss_fn: Callable[[Any, tuple, jax.Array], jax.Array],
    params: Any,
    arrays: Sequence[Any],
    *,
    optimizer: optax.GradientTransformation,
    steps: int,
    batch_size: int,
    progress: bool = True,
) -> FitResult:
    """Minimises ``loss_fn(params, batch, key)`` over random minibatches of ``arrays``.

    Each epoch visits a fresh permutation of the rows; ``batch`` is the tuple of
    ``arrays`` sliced at the minibatch's rows, and ``key`` a fresh key per step (for
    dropout, noise or VAT). One jitted step per minibatch, with a tqdm bar.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from gradjax.models import fit
      >>> x = jax.random.normal(jax.random.key(1), (256, 3))
      >>> y = x @ jnp.array([1.0, -2.0, 0.5])
      >>> result = fit(jax.random.key(0), lambda p, b, k: jnp.mean((b[0] @ p - b[1]) ** 2),
      ...              jnp.zeros(3), (x, y), optimizer=optax.adam(5e-2), steps=400,
      ...              batch_size=32, progress=False)
      >>> result.params.round(2)
      Array([ 1. , -2. ,  0.5], dtype=float32)
    """
    check_key("key", key)
    check_callable("loss_fn", loss_fn)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    steps = check_int("steps", steps, 1)
    progress = check_bool("progress", progress)
    arrays = tuple(jnp.asarray(a) for a in arrays)
    if not arrays:
        raise ValueError("arrays must hold at least one array")
    shapes = [a.shape for a in arrays]
    if any(a.ndim == 0 or a.shape[0] != arrays[0].shape[0] for a in arrays):
        raise ValueError(f"arrays must share a leading (row) axis, got shapes {shapes}")
    n = arrays[0].shape[0]
    if n == 0:
        raise ValueError(f"arrays must have at least one row, got shapes {shapes}")
    batch_size = check_int("batch_size", batch_size, 1, n)

    @jax.jit
    def step(params, opt_state, rows, key):
        batch = tuple(a[rows] for a in arrays)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    per_epoch = n // batch_size
    losses = []
    perm_key, step_key = jax.random.split(key)
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="fit", leave=False)
    for i in iterator:
        if i % per_epoch == 0:
            perm = jax.random.permutation(jax.random.fold_in(perm_key, i // per_epoch), n)
        rows = perm[(i % per_epoch) * batch_size : (i % per_epoch + 1) * batch_size]
        params, opt_state, loss = step(params, opt_state, rows, jax.random.fold_in(step_key, i))
        losses.append(loss)
    return FitResult(params, np.asarray(jax.device_get(losses), np.float32))
