"""Mini-batch K-Means (Sculley 2010): ``init`` / ``update`` / ``assign``, optax style.

Each update labels a batch by brute force (the Lloyd sweep of ``_lloyd``) and
moves every centroid that got points with its own rate ``1 / count``: for centroid
``j`` with running weight ``n_j`` and batch statistics ``S_j = Σ w x``,
``W_j = Σ w``,

    c_j ← (n_j c_j + S_j) / (n_j + W_j),   n_j ← n_j + W_j,

which is the per-point rule ``n_j += w; c_j += (w / n_j)(x - c_j)`` summed over the
batch. From zero counts, one update on the whole data is one Lloyd step. A
centroid whose count falls below ``reassignment_ratio × max_j n_j`` is moved to a
random point of the batch and its count reset to the smallest remaining one (as
scikit-learn's ``MiniBatchKMeans``), checked after every ``10·k`` points and
whenever a count is zero, never at the first update.

There is no convergence test: the state's ``status`` is ``SUCCESS`` while every update
was finite. An update that would make the centroids or counts NaN/Inf (a traced NaN
point or weight) is refused: the state stays as it was, with ``status`` set to
``NONFINITE`` for good, and later updates go on from the last finite centroids.

References:
  D. Sculley, "Web-scale k-means clustering", WWW (2010).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import check_int, check_key, check_scalar
from gradjax._status import Status

from ._assign import assign as assign_points
from ._blocks import block_size_for, centroid_table, nearest, to_blocks
from ._inputs import as_points, as_weights, check_init, check_num_clusters
from ._lloyd import lloyd_sweep
from ._seeding import initial_centroids
from ._sweep import ClusterSums

_ONE_BLOCK = 1 << 22  # entries of the largest single distance block of a batch
REASSIGNMENT_RATIO = 0.01  # the default of minibatch_kmeans and fit_minibatch_kmeans (sklearn's)


class MiniBatchKMeansState(NamedTuple):
    """The state of :func:`minibatch_kmeans`, fixed in structure at ``init``.

    Attributes:
      centroids: (k, d), the current centroids.
      counts: (k,), the weight each centroid has absorbed (its inverse learning rate).
      key: the PRNG key of the reassignments (folded with ``num_updates``).
      num_updates: int32, the number of updates so far.
      since_reassign: int32, points seen since reassignment was last checked.
      status: int32 :class:`gradjax.Status` code: ``SUCCESS`` while every update
        was finite, ``NONFINITE`` (for good) once an update was refused because
        it would have made the centroids or counts NaN/Inf. No convergence test
        runs, so there is no ``MAX_STEPS``.
    """

    centroids: jax.Array
    counts: jax.Array
    key: jax.Array
    num_updates: jax.Array
    since_reassign: jax.Array
    status: jax.Array


class MiniBatchKMeans(NamedTuple):
    """What :func:`minibatch_kmeans` returns: three pure functions.

    Attributes:
      init: ``(key, x_first, weights=None) -> state``, seeded on the first batch
        (with its sample weights, as scikit-learn).
      update: ``(state, batch, weights=None) -> state``, one Sculley step.
      assign: ``(state, x) -> (labels, squared_distances)``, as
        :func:`gradjax.em.assign`.
    """

    init: Callable[..., MiniBatchKMeansState]
    update: Callable[..., MiniBatchKMeansState]
    assign: Callable[..., tuple[jax.Array, jax.Array]]


def check_options(num_clusters: Any, init: Any, reassignment_ratio: Any) -> tuple[int, Any]:
    """The validated ``num_clusters`` and ``reassignment_ratio`` (``init``'s kind too)."""
    k = check_int("num_clusters", num_clusters, 1)
    if isinstance(init, str):
        check_init(init, k, 0, None)  # the name; an array's shape is checked at init
    elif not hasattr(init, "shape"):
        raise TypeError(f"init must be a str or an array, got {type(init).__name__}")
    return k, check_scalar("reassignment_ratio", reassignment_ratio, 0.0, high=1.0)


def _check_batch(state: MiniBatchKMeansState, batch: Any, weights: Any):
    """The batch and weights in the state's dtype (the state's dtypes never change)."""
    if not isinstance(state, MiniBatchKMeansState):
        raise TypeError(f"state must be a MiniBatchKMeansState, got {type(state).__name__}")
    dtype = state.centroids.dtype
    if not jnp.issubdtype(dtype, jnp.floating) or state.counts.dtype != dtype:
        raise TypeError(
            "state.centroids and state.counts must be floating arrays of one dtype (as init "
            f"makes them), got {dtype} and {state.counts.dtype}"
        )
    x = as_points(batch, "batch")
    d = state.centroids.shape[-1]
    if x.shape[1] != d:
        raise ValueError(f"batch must have {d} features (as the centroids), got shape {x.shape}")
    return jnp.asarray(x, dtype), as_weights(weights, x.shape[0], dtype)


def _reassign(state, centroids, counts, x, w, ratio):
    """Starved centroids (count below ``ratio ×`` the largest) jump to batch points.

    At most half the batch's rows are used, for the smallest counts. The points are
    ``u, u + s, u + 2s, ...`` (mod the batch size) for one uniform ``u`` and a stride
    ``s`` spreading them over the batch: distinct, each point equally likely, and
    one random number per update. A chosen point of zero weight moves nothing.
    """
    size = x.shape[0]
    starved = counts < ratio * jnp.max(counts)
    if counts.shape[0] > size // 2:  # static: only then can the cap bind
        rank = jnp.argsort(jnp.argsort(counts))  # 0 for the smallest count
        starved = starved & (rank < max(size // 2, 1))
    num = jnp.sum(starved, dtype=jnp.int32)
    offset = jax.random.randint(jax.random.fold_in(state.key, state.num_updates), (), 0, size)
    stride = jnp.maximum(size // jnp.maximum(num, 1), 1)
    idx = (offset + (jnp.cumsum(starved, dtype=jnp.int32) - 1) * stride) % size
    moved = starved & (w[idx] > 0)
    centroids = jnp.where(moved[:, None], x[idx], centroids)
    floor = jnp.min(jnp.where(moved, jnp.inf, counts))
    return centroids, jnp.where(moved, floor, counts)


def batch_statistics(x, w, centroids):
    """A batch's per-cluster sums ``Σ w x`` (k, d) and weights (k,) of the nearest centroid.

    One (k, rows) distance block for batches up to ``_ONE_BLOCK`` entries, else the
    row blocks of the Lloyd sweep (bounded memory for huge batches).
    """
    k = centroids.shape[0]
    if x.shape[0] * k > _ONE_BLOCK:
        block = block_size_for(x.shape[0], k)
        sweep = lloyd_sweep(to_blocks(x, block), to_blocks(w, block), centroids)
        return ClusterSums(sweep.sums, sweep.counts)
    labels, _ = nearest(x, centroid_table(centroids))
    return ClusterSums(
        jax.ops.segment_sum(x * w[:, None], labels, k), jax.ops.segment_sum(w, labels, k)
    )


def _step(state, x, w, ratio):
    """One Sculley update (validated inputs)."""
    k = state.centroids.shape[0]
    # centred on the centroids' mean, as em.assign: float32 distances far from the origin
    origin = jnp.mean(state.centroids, axis=0)
    rel = state.centroids - origin
    sums, batch_counts = batch_statistics(x - origin, w, rel)
    counts = state.counts + batch_counts
    got = batch_counts != 0  # weights are >= 0; a NaN weight must reach the centroid
    moved = (state.counts[:, None] * rel + sums) / jnp.where(got, counts, 1)[:, None]
    centroids = jnp.where(got[:, None], moved, rel) + origin

    since = state.since_reassign + x.shape[0]
    check = (state.num_updates > 0) & (ratio > 0) & (jnp.any(state.counts == 0) | (since >= 10 * k))
    centroids, counts = jax.lax.cond(
        check,
        lambda c, n: _reassign(state, c, n, x, w, ratio),
        lambda c, n: (c, n),
        centroids,
        counts,
    )
    stepped = MiniBatchKMeansState(
        centroids=centroids,
        counts=counts,
        key=state.key,
        num_updates=state.num_updates + 1,
        since_reassign=jnp.where(check, 0, since).astype(jnp.int32),
        status=state.status,
    )
    ok = jnp.all(jnp.isfinite(centroids)) & jnp.all(jnp.isfinite(counts))
    refused = state._replace(status=jnp.array(int(Status.NONFINITE), jnp.int32))
    return optax.tree.where(ok, stepped, refused)


_update = jax.jit(_step)


@jax.jit
def _update_stack(state, xs, ws, ratio):
    """:func:`_step` over a stack of same-shape batches in one device call."""
    return jax.lax.scan(lambda s, xw: (_step(s, *xw, ratio), None), state, (xs, ws))[0]


def minibatch_kmeans(
    num_clusters: int,
    *,
    init: str | jax.Array = "k-means++",
    reassignment_ratio: float = REASSIGNMENT_RATIO,
) -> MiniBatchKMeans:
    """Mini-batch K-Means with Sculley's per-centroid rate ``1 / count``.

    ``update`` labels the batch by the nearest centroid and moves each centroid
    ``j`` that got points to ``(n_j c_j + Σ_{a_i=j} w_i x_i) / (n_j + Σ_{a_i=j} w_i)``,
    ``n_j`` the weight it has absorbed so far. From zero counts, one update on the
    whole data (no centroid left without points) is one Lloyd step. Centroids
    whose count falls below ``reassignment_ratio × max_j n_j`` move to random
    points of the batch (not at the first update; checked every ``10·k`` points
    and whenever a count is zero, as scikit-learn).

    ``update`` is jitted (one compilation per batch shape and dtype) and pure, so
    it also runs inside the user's ``jit`` and on batches sharded over a mesh's
    data axis (``NamedSharding`` on the rows): the per-cluster sums are global
    reductions, which XLA turns into cross-device sums. For data that does not
    fit on a device, see :func:`fit_minibatch_kmeans`.

    Args:
      num_clusters: ``k >= 1``.
      init: "k-means++", "random" (as in :func:`gradjax.em.kmeans`, applied to the
        first batch and its ``weights``) or a (k, d) array.
      reassignment_ratio: in ``[0, 1]``; 0 disables reassignment.

    Returns:
      A :class:`MiniBatchKMeans` of ``init(key, x_first, weights=None)``,
      ``update(state, batch, weights=None)`` and ``assign(state, x)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import em
      >>> x = jnp.concatenate([jnp.zeros((50, 2)), jnp.full((50, 2), 4.0)])
      >>> km = em.minibatch_kmeans(2)
      >>> state = km.init(jax.random.key(0), x)
      >>> for batch in jnp.split(x[jax.random.permutation(jax.random.key(1), 100)], 4):
      ...     state = km.update(state, batch)
      >>> jnp.sort(state.centroids[:, 0]), state.counts.sum()
      (Array([0., 4.], dtype=float32), Array(100., dtype=float32))

    References:
      D. Sculley, "Web-scale k-means clustering", WWW (2010).
    """
    k, ratio = check_options(num_clusters, init, reassignment_ratio)

    def init_fn(
        key: jax.Array, x_first: jax.Array, weights: jax.Array | None = None
    ) -> MiniBatchKMeansState:
        key = check_key("key", key)
        x = as_points(x_first, "x_first")
        check_num_clusters(k, x.shape[0])
        w = as_weights(weights, x.shape[0], x.dtype, k)
        start = check_init(init, k, x.shape[1], x.dtype)
        seed_key, reassign_key = jax.random.split(key)
        centroids = _seed(seed_key, x, w, start, k)
        return MiniBatchKMeansState(
            centroids=centroids,
            counts=jnp.zeros(k, x.dtype),
            key=reassign_key,
            num_updates=jnp.zeros([], jnp.int32),
            since_reassign=jnp.zeros([], jnp.int32),
            status=jnp.array(int(Status.SUCCESS), jnp.int32),
        )

    def update_fn(state, batch, weights=None) -> MiniBatchKMeansState:
        x, w = _check_batch(state, batch, weights)
        return _update(state, x, w, jnp.asarray(ratio, x.dtype))

    def assign_fn(state, x):
        if not isinstance(state, MiniBatchKMeansState):
            raise TypeError(f"state must be a MiniBatchKMeansState, got {type(state).__name__}")
        x = as_points(x)
        d = state.centroids.shape[-1]
        if x.shape[1] != d:
            raise ValueError(f"x must have {d} features (as the centroids), got shape {x.shape}")
        return assign_points(x, state.centroids)

    return MiniBatchKMeans(init_fn, update_fn, assign_fn)


def _seed(key, x, w, start, k):
    if isinstance(start, str):
        return _seed_jit(key, x, w, k, start)
    return start


@functools.partial(jax.jit, static_argnames=("k", "init"))
def _seed_jit(key, x, w, k, init):
    """The seeding of :func:`gradjax.em.kmeans` (centred, weighted) on the first batch."""
    mean = jnp.mean(x, axis=0)
    return initial_centroids(key, x - mean, w, k, init) + mean
