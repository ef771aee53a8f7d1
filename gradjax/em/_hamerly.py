"""Hamerly's bounds: the Lloyd E-step without the distances that cannot change a label.

Each point keeps an upper bound ``u_i ≥ ‖x_i - c_{a_i}‖`` on the distance to its
centroid and a lower bound ``l_i ≤ min_{j≠a_i} ‖x_i - c_j‖`` on the distance to any
other. When the centroids move by ``δ_j = ‖c_j⁺ - c_j‖`` the triangle inequality
keeps them bounds after ``u_i += δ_{a_i}`` and ``l_i -= max_{j≠a_i} δ_j``. A point
whose ``u_i ≤ max(l_i, s_{a_i})``, with ``s_j = ½ min_{j'≠j} ‖c_j - c_{j'}‖``, keeps
its label: no centroid can be nearer. Only the other points get the full distance
GEMM, gathered into one-block chunks by a ``while_loop`` whose trip count is the
number of such chunks, and every point's exact distance to its centroid is then
computed with the M-step sums (``d`` flops per point: the inertia, the
empty-cluster repair and a tight ``u_i``). After the first iterations the
undecided points are usually a small fraction, so the iterates are Lloyd's at a
fraction of the GEMMs. While more than ``_SEARCH_ALL_ABOVE`` of the points are
undecided, a plain blocked pass over all of them is cheaper than the gathers.

Reference:
  G. Hamerly, "Making k-means even faster", SDM (2010).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._blocks import cluster_sums, min_and_argmin, partial_sq_distances
from ._sweep import Algorithm, Sweep

_GROUP = 16  # columns per group in `nearest_two`
_SEARCH_ALL_ABOVE = 0.3  # undecided fraction above which every point is searched


def half_gaps(centroids: jax.Array) -> jax.Array:
    """``s_j = ½ min_{j'≠j} ‖c_j - c_{j'}‖`` (``inf`` for a single centroid)."""
    c_sq = jnp.sum(centroids * centroids, axis=1)
    gram = jnp.dot(centroids, centroids.T, precision=jax.lax.Precision.HIGHEST)
    sq = jnp.maximum(c_sq[:, None] + c_sq[None, :] - 2 * gram, 0)
    sq = jnp.where(jnp.eye(len(centroids), dtype=bool), jnp.inf, sq)
    return 0.5 * jnp.sqrt(jnp.min(sq, axis=1))


def nearest_two(part: jax.Array, group: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per row of ``part`` (rows, k): the first argmin, the minimum, the second smallest.

    The columns are taken in groups of ``group`` (``k`` a multiple of it): one
    full-width reduction gives the group minima, and only the winning group's
    ``group`` columns are searched again. On CPU (n=200k, k=256) this was about
    1.4x faster than three full-width reductions (min, argmin, masked min).
    """
    rows, k = part.shape
    grouped = part.reshape(rows, k // group, group)
    group_min = jnp.min(grouped, axis=2)
    best, group_idx = min_and_argmin(group_min)
    group_cols = jnp.arange(k // group, dtype=jnp.int32)
    other_groups = jnp.min(jnp.where(group_cols == group_idx[:, None], jnp.inf, group_min), axis=1)
    inner = jnp.take_along_axis(grouped, group_idx[:, None, None], axis=1)[:, 0]
    _, inner_idx = min_and_argmin(inner)
    inner_cols = jnp.arange(group, dtype=jnp.int32)
    same_group = jnp.min(jnp.where(inner_cols == inner_idx[:, None], jnp.inf, inner), axis=1)
    return group_idx * group + inner_idx, best, jnp.minimum(other_groups, same_group)


def _grouped(centroids):
    """Centroids padded to whole groups (at infinite distance), their ``‖c‖²``, group."""
    k = centroids.shape[0]
    group = _GROUP if k >= 4 * _GROUP else k
    pad = -k % group
    c_sq = jnp.pad(jnp.sum(centroids * centroids, axis=1), (0, pad), constant_values=jnp.inf)
    return jnp.pad(centroids, ((0, pad), (0, 0))), c_sq, group


def search_all(xb, wb, x_sq, centroids):
    """Every point's label, ``‖x - c‖²`` and second-nearest distance, with the M-step sums."""
    padded, c_sq, group = _grouped(centroids)

    def label_block(x_blk, xs):
        label, best, second = nearest_two(partial_sq_distances(x_blk, padded, c_sq), group)
        return label, (jnp.maximum(best + xs, 0), jnp.sqrt(jnp.maximum(second + xs, 0)))

    sums, counts, labels, (dist, lower) = cluster_sums(
        xb, wb, centroids.shape[0], label_block, x_sq
    )
    return sums, counts, labels, dist, lower


def search_undecided(xb, x_sq, centroids, labels, lower, undecided):
    """The full search for the ``undecided`` points only: their labels and lower bounds.

    The undecided points are gathered in chunks of one block's rows, so memory
    holds one ``rows × k`` block; the loop runs ``⌈#undecided / rows⌉`` times.
    """
    shape, chunk = labels.shape, xb.shape[1]
    n, d = labels.size, xb.shape[-1]
    labels, lower, undecided = labels.reshape(n), lower.reshape(n), undecided.reshape(n)
    x_flat, x_sq = xb.reshape(n, d), x_sq.reshape(n)
    # the undecided indices first, in order, then n: an index the scatters drop
    slot = jnp.where(undecided, jnp.cumsum(undecided) - 1, n + chunk)
    rows = jnp.full(n + chunk, n, jnp.int32)
    rows = rows.at[slot].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    num_chunks = (jnp.sum(undecided, dtype=jnp.int32) + chunk - 1) // chunk
    padded, c_sq, group = _grouped(centroids)

    def search(i, carry):
        labels, lower = carry
        idx = jax.lax.dynamic_slice(rows, (i * chunk,), (chunk,))
        safe = jnp.minimum(idx, n - 1)
        label, _, second = nearest_two(partial_sq_distances(x_flat[safe], padded, c_sq), group)
        second = jnp.sqrt(jnp.maximum(second + x_sq[safe], 0))
        return labels.at[idx].set(label, mode="drop"), lower.at[idx].set(second, mode="drop")

    labels, lower = jax.lax.fori_loop(0, num_chunks, search, (labels, lower))
    return labels.reshape(shape), lower.reshape(shape)


def hamerly_pass(xb, wb, x_sq, centroids, labels, upper, lower):
    """One E-step with bounds plus the M-step statistics (one restart).

    Returns the sums (k, d), weights (k,), and per point (blocked) the label, the
    squared distance to it and the lower bound.
    """
    gaps = half_gaps(centroids)[labels]
    undecided = (labels < 0) | (upper > jnp.maximum(lower, gaps))

    def some():
        new_labels, new_lower = search_undecided(xb, x_sq, centroids, labels, lower, undecided)
        sums, counts, dist = assigned_statistics(xb, wb, centroids, new_labels)
        return sums, counts, new_labels, dist, new_lower

    return jax.lax.cond(
        jnp.mean(undecided) > _SEARCH_ALL_ABOVE, lambda: search_all(xb, wb, x_sq, centroids), some
    )


def assigned_statistics(xb, wb, centroids, labels):
    """M-step sums (k, d), weights (k,) and each point's exact ``‖x_i - c_{a_i}‖²``."""

    def label_block(x_blk, label):
        return label, jnp.sum((x_blk - centroids[label]) ** 2, axis=1)

    sums, counts, _, dist = cluster_sums(xb, wb, centroids.shape[0], label_block, labels)
    return sums, counts, dist


def move_bounds(upper, lower, labels, old, new):
    """The bounds after the centroids move from ``old`` to ``new``."""
    shift = jnp.sqrt(jnp.sum((new - old) ** 2, axis=1))
    if len(shift) == 1:
        return upper + shift[0], lower
    (first, second), (arg_first, _) = jax.lax.top_k(shift, 2)
    return upper + shift[labels], lower - jnp.where(labels == arg_first, second, first)


def _sweep(xb, wb, x_sq, centroids, labels, bounds):
    sums, counts, labels, dist, lower = hamerly_pass(xb, wb, x_sq, centroids, labels, *bounds)
    return Sweep(sums, counts, labels, dist), (jnp.sqrt(dist), lower)


# Bounds of zero with labels -1 leave every point undecided in the first sweep.
HAMERLY = Algorithm(
    start=lambda x_sq, centroids: (jnp.zeros_like(x_sq), jnp.zeros_like(x_sq)),
    sweep=_sweep,
    moved=lambda bounds, labels, old, new: move_bounds(*bounds, labels, old, new),
    vmap_restarts=False,
)
