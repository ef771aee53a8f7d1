"""Hamerly's bounds: the Lloyd E-step without the distances that cannot change a label.

Each point keeps an upper bound ``u_i ≥ ‖x_i - c_{a_i}‖`` on the distance to its
centroid and a lower bound ``l_i ≤ min_{j≠a_i} ‖x_i - c_j‖`` on the distance to any
other. When the centroids move by ``δ_j = ‖c_j⁺ - c_j‖`` the triangle inequality
keeps them bounds after ``u_i += δ_{a_i}`` and ``l_i -= max_{j≠a_i} δ_j``. A point
whose ``u_i ≤ max(l_i, s_{a_i})``, with ``s_j = ½ min_{j'≠j} ‖c_j - c_{j'}‖``, keeps
its label: no centroid can be nearer.

Nothing in a sweep then touches the decided points. The M-step statistics are
kept per cluster and moved with the centroids: the sums ``S_j`` and weights
``N_j`` of a cluster's points do not depend on its centroid, and their squared
distances to it follow exactly from the old ones,
``Σ w‖x - c⁺‖² = Σ w‖x - c‖² + 2(S_j - N_j c)·(c - c⁺) + N_j‖c⁺ - c‖²``. Only the
undecided points are gathered, in chunks, by a loop whose trip count is the
number of chunks; each gets all ``k`` distances (its bounds become exact), and a
point that changes cluster moves its weight, coordinates and squared distance
from the old cluster's statistics to the new one's. After the first iterations
the undecided points are a small fraction, so a sweep costs a fraction of one
distance GEMM. While more than ``_SEARCH_ALL_ABOVE`` of the points are
undecided, one blocked pass over all of them recomputes everything instead.

Reference:
  G. Hamerly, "Making k-means even faster", SDM (2010).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._blocks import centroid_table, cluster_sums, nearest, per_cluster
from ._sweep import Algorithm, Sweep

_SEARCH_ALL_ABOVE = 0.3  # undecided fraction above which every point is searched
_CHUNK = 2048  # rows per gathered chunk of undecided points


class Bounds(NamedTuple):
    """Hamerly's per-point bounds, and the M-step statistics of the labels (held by
    the iteration, not here) at the centroids the bounds refer to.

    Attributes:
      upper: (blocks, rows), ``u_i ≥ ‖x_i - c_{a_i}‖``.
      lower: (blocks, rows), ``l_i ≤ min_{j≠a_i} ‖x_i - c_j‖``.
      sums, counts, cluster_inertia: as in :class:`Sweep`.
    """

    upper: jax.Array
    lower: jax.Array
    sums: jax.Array
    counts: jax.Array
    cluster_inertia: jax.Array


def half_gaps(centroids: jax.Array) -> jax.Array:
    """``s_j = ½ min_{j'≠j} ‖c_j - c_{j'}‖`` (``inf`` for a single centroid)."""
    c_sq = jnp.sum(centroids * centroids, axis=1)
    gram = jnp.dot(centroids, centroids.T, precision=jax.lax.Precision.HIGHEST)
    sq = jnp.maximum(c_sq[:, None] + c_sq[None, :] - 2 * gram, 0)
    sq = jnp.where(jnp.eye(len(centroids), dtype=bool), jnp.inf, sq)
    return 0.5 * jnp.sqrt(jnp.min(sq, axis=1))


def search_all(xb, wb, x_sq, centroids) -> tuple[jax.Array, Bounds]:
    """Every point's label, and its exact ``‖x - c_a‖`` and lower bound with the
    statistics."""
    table = centroid_table(centroids)
    k = centroids.shape[0]

    def label_block(x_blk, xs):
        label, second = nearest(x_blk, table, second=True)
        exact = jnp.sum((x_blk - centroids[label]) ** 2, axis=1)
        return label, (exact, jnp.sqrt(jnp.maximum(second + xs, 0)))

    sums, counts, labels, (dist, lower) = cluster_sums(xb, wb, k, label_block, x_sq)
    return labels, Bounds(jnp.sqrt(dist), lower, sums, counts, per_cluster(dist, labels, wb, k))


def gathered(mask: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
    """The indices where the flat ``mask`` holds, in order, then ``n`` (an index that
    scatters drop) up to whole chunks; and the number of chunks they fill."""
    n = mask.shape[0]
    slot = jnp.where(mask, jnp.cumsum(mask) - 1, n + chunk)
    rows = jnp.full(n + chunk, n, jnp.int32)
    rows = rows.at[slot].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    return rows, (jnp.sum(mask, dtype=jnp.int32) + chunk - 1) // chunk


def search_undecided(xb, wb, x_sq, centroids, labels, bounds: Bounds, undecided):
    """The full search for the ``undecided`` points only, on top of ``bounds`` (whose
    statistics are those of the previous ``labels`` at these centroids). Returns the
    new labels and bounds.

    The undecided points are gathered in chunks of ``_CHUNK`` rows; the loop runs
    ``⌈#undecided / chunk⌉`` times. A point whose label changes moves its weight,
    weighted coordinates and weighted squared distance from the old cluster's
    statistics to the new one's.
    """
    upper, lower, sums, counts, inertia = bounds
    shape, k = labels.shape, centroids.shape[0]
    n, d = labels.size, xb.shape[-1]
    chunk = min(_CHUNK, n)
    x_flat, w_flat, x_sq = xb.reshape(n, d), wb.reshape(n), x_sq.reshape(n)
    rows, num_chunks = gathered(undecided.reshape(n), chunk)
    table = centroid_table(centroids)

    def search(i, carry):
        sums, counts, inertia, labels, upper, lower = carry
        idx = jax.lax.dynamic_slice(rows, (i * chunk,), (chunk,))
        safe = jnp.minimum(idx, n - 1)
        x_blk = x_flat[safe]
        new, second = nearest(x_blk, table, second=True)
        old = labels[safe]
        w = jnp.where((idx < n) & (new != old), w_flat[safe], 0)
        to_new, from_old = jnp.where(w > 0, new, k), jnp.where(w > 0, old, k)  # k: dropped
        exact = jnp.sum((x_blk - centroids[new]) ** 2, axis=1)
        stale = jnp.sum((x_blk - centroids[old]) ** 2, axis=1)  # old = -1: dropped below

        def move(total, into, out):  # ``into`` joins the new clusters, ``out`` leaves the old
            return (
                total + jax.ops.segment_sum(into, to_new, k) - jax.ops.segment_sum(out, from_old, k)
            )

        moved_x = x_blk * w[:, None]
        sums, counts = move(sums, moved_x, moved_x), move(counts, w, w)
        inertia = move(inertia, w * exact, w * stale)
        labels = labels.at[idx].set(new, mode="drop")
        upper = upper.at[idx].set(jnp.sqrt(exact), mode="drop")
        lower = lower.at[idx].set(jnp.sqrt(jnp.maximum(second + x_sq[safe], 0)), mode="drop")
        return sums, counts, inertia, labels, upper, lower

    flat = (sums, counts, inertia, labels.reshape(n), upper.reshape(n), lower.reshape(n))
    sums, counts, inertia, labels, upper, lower = jax.lax.fori_loop(0, num_chunks, search, flat)
    return labels.reshape(shape), Bounds(upper.reshape(shape), lower.reshape(shape), sums,
                                         counts, inertia)  # fmt: skip


def hamerly_pass(xb, wb, x_sq, centroids, labels, bounds: Bounds):
    """One E-step with bounds and the M-step statistics (one restart).

    ``bounds`` are moved to these ``centroids`` (:func:`move_bounds`) for the
    previous ``labels``. Returns the new labels and their bounds and statistics.
    """
    gaps = half_gaps(centroids)
    undecided = (labels < 0) | (bounds.upper > jnp.maximum(bounds.lower, gaps[labels]))

    return jax.lax.cond(
        jnp.mean(undecided) > _SEARCH_ALL_ABOVE,
        lambda: search_all(xb, wb, x_sq, centroids),
        lambda: search_undecided(xb, wb, x_sq, centroids, labels, bounds, undecided),
    )


def move_bounds(bounds: Bounds, labels, old, new) -> Bounds:
    """The bounds and statistics after the centroids move from ``old`` to ``new``."""
    upper, lower, sums, counts, inertia = bounds
    step = new - old
    shift = jnp.sqrt(jnp.sum(step * step, axis=1))
    # Σ w‖x - c⁺‖² = Σ w‖x - c‖² - 2 (S - N c)·(c⁺ - c) + N ‖c⁺ - c‖², per cluster
    offset = sums - counts[:, None] * old
    inertia = inertia - 2 * jnp.sum(offset * step, axis=1) + counts * shift**2
    if len(shift) == 1:
        return Bounds(upper + shift[0], lower, sums, counts, inertia)
    (first, second), (arg_first, _) = jax.lax.top_k(shift, 2)
    lower = lower - jnp.where(labels == arg_first, second, first)
    return Bounds(upper + shift[labels], lower, sums, counts, inertia)


def _start(x_sq, centroids):
    """Bounds of zero with labels -1 leave every point undecided in the first sweep."""
    zeros = jnp.zeros(centroids.shape[0], x_sq.dtype)
    points = jnp.zeros_like(x_sq)
    return Bounds(points, points, jnp.zeros(centroids.shape, x_sq.dtype), zeros, zeros)


def _sweep(xb, wb, x_sq, centroids, labels, bounds):
    labels, bounds = hamerly_pass(xb, wb, x_sq, centroids, labels, bounds)
    return Sweep(bounds.sums, bounds.counts, labels, bounds.cluster_inertia), bounds


HAMERLY = Algorithm(start=_start, sweep=_sweep, moved=move_bounds, vmap_restarts=False)
