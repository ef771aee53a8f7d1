"""Streaming mini-batch K-Means: drive ``init`` / ``update`` over host batches.

The driver groups consecutive same-shape batches into stacks and runs one jitted
``lax.scan`` of updates per stack (one device call for many batches: the per-call
overhead, not the arithmetic, dominates small batches). It transfers the next
stack while the device computes the current one: a stack is ``device_put`` and
its update dispatched before the driver blocks on the previous update, so at
most two stacks are on the device and the host never holds more than one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._checks import check_bool, check_int, check_key

from ._minibatch import (
    REASSIGNMENT_RATIO,
    MiniBatchKMeansState,
    _update_stack,
    check_options,
    minibatch_kmeans,
)

# Rows per device call: enough to amortise the call overhead (~0.1 ms) over
# batches of a few thousand rows, small enough that a stack stays a few MiB.
_ROWS_PER_CALL = 1 << 17
_MAX_STACK = 64


def _host_batch(batch: Any, d: int | None) -> np.ndarray:
    if type(batch).__module__.startswith(("scipy.sparse", "jax.experimental.sparse")):
        raise TypeError(
            f"each batch must be a dense array (dense input is required), got the sparse "
            f"{type(batch).__name__}: convert it with .toarray() (SciPy) or .todense() (BCOO)"
        )
    try:
        batch = np.asarray(batch)
    except ValueError as error:  # a ragged nested list
        raise TypeError(
            f"each batch must be a 2-D array (rows, d), got a ragged {type(batch).__name__}"
        ) from error
    if batch.ndim != 2:
        raise ValueError(f"each batch must be a 2-D array (rows, d), got shape {batch.shape}")
    if not (np.issubdtype(batch.dtype, np.floating) or np.issubdtype(batch.dtype, np.integer)):
        raise TypeError(
            f"each batch must be a real (int or floating) array, got dtype {batch.dtype}"
        )
    if d is not None and batch.shape[1] != d:
        raise ValueError(f"each batch must have {d} features (as the first), got {batch.shape}")
    if batch.shape[0] < 1 or batch.shape[1] < 1:
        raise ValueError(f"each batch must hold at least one row and one column, got {batch.shape}")
    return batch


def _stacks(batches: Iterator[Any]) -> Iterator[list[np.ndarray]]:
    """Consecutive same-shape batches, grouped up to about ``_ROWS_PER_CALL`` rows."""
    group: list[np.ndarray] = []
    d = None
    for batch in batches:
        batch = _host_batch(batch, d)
        d = batch.shape[1]
        if group and batch.shape != group[0].shape:
            yield group
            group = []
        group.append(batch)
        if len(group) >= min(_MAX_STACK, max(1, _ROWS_PER_CALL // batch.shape[0])):
            yield group
            group = []
    if group:
        yield group


def _progress_bar(progress: bool | None, total: int | None):
    """A tqdm bar, or None: ``progress=None`` shows one when tqdm is installed."""
    if progress is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as error:
        if progress is None:
            return None
        raise ImportError(
            "fit_minibatch_kmeans(progress=True) needs tqdm: pip install 'gradjax[examples]' "
            "(or tqdm), or pass progress=False"
        ) from error
    return tqdm(total=total, unit="batch")


def fit_minibatch_kmeans(
    key: jax.Array,
    batches: Iterable[Any] | Callable[[], Iterable[Any]],
    num_clusters: int,
    *,
    num_passes: int = 1,
    progress: bool | None = None,
    init: str | jax.Array = "k-means++",
    reassignment_ratio: float = REASSIGNMENT_RATIO,
) -> MiniBatchKMeansState:
    """Mini-batch K-Means over a stream of host batches (NumPy arrays, memmap slices).

    Runs :func:`minibatch_kmeans` ``(num_clusters, init=init,
    reassignment_ratio=reassignment_ratio)``: ``init`` on the first batch, then one
    ``update`` per batch, in order, ``num_passes`` times. The data never need to fit
    in memory: only a few batches are held at once. Same-shape batches are grouped
    and updated by one jitted ``lax.scan`` per group, and the next group is
    transferred while the device computes (the result equals calling ``update`` on
    each batch in turn).

    Args:
      key: a PRNG key (seeding and reassignment).
      batches: an iterable of (rows, d) dense arrays, e.g. slices of a
        ``np.memmap``; for ``num_passes > 1`` a re-iterable (a list) or a callable
        returning a fresh iterator per pass (a pass that yields no batch is a
        ValueError: the same, exhausted iterator returned again).
      num_clusters: ``k``, at most the first batch's rows.
      num_passes: passes over ``batches``.
      progress: a tqdm progress bar (batches, and points per second): ``None``
        (the default) shows one if tqdm is installed, ``True`` requires it (an
        ImportError naming the ``examples`` extra otherwise), ``False`` none.
      init: "k-means++", "random" or a (k, d) array, as in :func:`minibatch_kmeans`.
      reassignment_ratio: in ``[0, 1]``, as in :func:`minibatch_kmeans`.

    Returns:
      The final :class:`MiniBatchKMeansState` (``centroids``, ``counts``,
      ``status``, ...).

    Example:
      >>> import jax, numpy as np
      >>> from gradjax import em
      >>> rng = np.random.default_rng(0)
      >>> x = np.concatenate([rng.normal(0, 0.1, (500, 2)), rng.normal(5, 0.1, (500, 2))])
      >>> x = x[rng.permutation(1000)].astype(np.float32)
      >>> state = em.fit_minibatch_kmeans(
      ...     jax.random.key(0), lambda: (x[i:i + 100] for i in range(0, 1000, 100)), 2,
      ...     num_passes=2, progress=False)
      >>> np.sort(np.asarray(state.centroids[:, 0])).round(1).tolist() == [0, 5], state.counts.sum()
      (True, Array(2000., dtype=float32))

    References:
      D. Sculley, "Web-scale k-means clustering", WWW (2010).
    """
    key = check_key("key", key)
    check_options(num_clusters, init, reassignment_ratio)
    num_passes = check_int("num_passes", num_passes, 1)
    if progress is not None:
        progress = check_bool("progress", progress)
    if not callable(batches):
        if not isinstance(batches, Iterable) or isinstance(batches, str | bytes):
            raise TypeError(
                f"batches must be an iterable or a callable, got {type(batches).__name__}"
            )
        if num_passes > 1 and iter(batches) is batches:
            raise ValueError(
                "batches is a one-shot iterator, so num_passes must be 1; pass a callable "
                "returning a fresh iterator per pass"
            )
    km = minibatch_kmeans(num_clusters, init=init, reassignment_ratio=reassignment_ratio)
    total = None if callable(batches) or not hasattr(batches, "__len__") else len(batches)
    bar = _progress_bar(progress, None if total is None else total * num_passes)
    try:
        return _drive(key, km, batches, num_passes, bar, reassignment_ratio)
    finally:
        if bar is not None:
            bar.close()


def _drive(key, km, batches, num_passes, bar, reassignment_ratio) -> MiniBatchKMeansState:
    """The loop of :func:`fit_minibatch_kmeans`: stacks in, two device calls in flight."""
    state, in_flight, ones = None, None, {}
    for pass_index in range(num_passes):
        seen = 0
        source = batches() if callable(batches) else batches
        if not isinstance(source, Iterable) or isinstance(source, str | bytes):
            raise TypeError(
                f"batches() must return an iterable of batches, got {type(source).__name__}"
            )
        for group in _stacks(iter(source)):
            seen += len(group)
            xs = np.stack(group)
            # a finite sum proves every entry finite (the full check only if it is not)
            if not np.isfinite(np.sum(xs)) and not np.all(np.isfinite(xs)):
                raise ValueError("batches must be finite, got NaN or infinite entries")
            if state is None:
                state = km.init(key, xs[0])
                dtype = state.centroids.dtype
                ratio = jnp.asarray(reassignment_ratio, dtype)
            # the transfer overlaps the previous stack's computation; ``xs`` is ours alone,
            # so a CPU device may use its memory in place (a copy took 2.3 ms per 16 MiB)
            xs = jax.device_put(xs.astype(dtype, copy=False), may_alias=True)
            if xs.shape[:2] not in ones:
                ones[xs.shape[:2]] = jnp.ones(xs.shape[:2], dtype)
            state = _update_stack(state, xs, ones[xs.shape[:2]], ratio)
            if in_flight is not None:  # double buffering: wait for the previous stack only
                jax.block_until_ready(in_flight[0])
                if bar is not None:
                    bar.update(in_flight[1])
            in_flight = (state, len(group))
        if seen == 0 and pass_index == 0:
            raise ValueError("batches must yield at least one batch, got none")
        if seen == 0:
            raise ValueError(
                f"batches yielded no batch on pass {pass_index + 1} of {num_passes}: it is "
                "exhausted after the first pass, so the callable must return a fresh iterator "
                "each time it is called (e.g. a generator expression built inside it)"
            )
    jax.block_until_ready(state)
    if bar is not None:
        bar.update(in_flight[1])
    return state
