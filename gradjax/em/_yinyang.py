"""Yinyang K-Means: Lloyd's E-step with one lower bound per group of centroids.

The ``k`` centroids are split once, at the start, into ``t ≈ k/10`` groups
``G_1..G_t`` (a few Lloyd steps on the initial centroids, cut into groups of equal
size). Each point keeps an upper bound ``u_i ≥ ‖x_i - c_{a_i}‖`` and, per group, a
lower bound ``l_ig ≤ min_{j ∈ G_g, j ≠ a_i} ‖x_i - c_j‖``. When the centroids move
by ``δ_j = ‖c_j⁺ - c_j‖`` the triangle inequality keeps them bounds after
``u_i += δ_{a_i}`` and ``l_ig -= max_{j ∈ G_g} δ_j``: a group's bound drops by its
own largest move, not by the largest move of all ``k`` (Hamerly's single bound),
so far fewer points lose their bound when a few centroids move far.

The global filter: a point with ``‖x_i - c_{a_i}‖ ≤ min_g l_ig`` keeps its label.
Each sweep first takes the exact ``‖x_i - c_{a_i}‖`` of every point together with
the M-step sums of the previous labels (one pass, ``d`` flops per point), so the
filter uses a tight ``u_i``. The points it leaves open are gathered into blocks
and get the full distance GEMM; the sums are then corrected by the points whose
label changed. Under XLA the group filter (skipping single groups of an open
point) would turn one GEMM into per-(point, group) gathers, so an open point gets
all ``k`` distances, which also makes all its group bounds exact. The distances
are laid out ``(t, g, rows)`` (centroids × points), so the per-group minima are
reductions over leading axes, vectorised along the rows. While more than
``_SEARCH_ALL_ABOVE`` of the points are open on the tight ``u_i``, one
plain blocked pass over all of them is cheaper than the gathers; while more than
``_TIGHTEN_BELOW`` are open on the loose ``u_i`` (the first iterations), that pass
is taken without the tightening pass.

Reference:
  Y. Ding, Y. Zhao, X. Shen, M. Musuvathi & T. Mytkowicz, "Yinyang K-Means: a
  drop-in replacement of the classic K-Means with consistent speedup", ICML (2015).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._blocks import cluster_sums, per_cluster
from ._sweep import Algorithm, Sweep


class Stats(NamedTuple):
    """A :class:`Sweep` with the per-point ``‖x_i - c_{a_i}‖²`` (blocks, rows) that
    tighten the upper bounds, in place of their per-cluster sums."""

    sums: jax.Array
    counts: jax.Array
    labels: jax.Array
    sq_distances: jax.Array


_CENTROIDS_PER_GROUP = 10  # t ≈ k / 10 groups (Ding et al. 2015)
_GROUPING_STEPS = 5  # Lloyd steps on the initial centroids that form the groups
_SEARCH_ALL_ABOVE = 0.3  # open fraction above which every point is searched
_TIGHTEN_BELOW = 0.9  # loose-open fraction above which the tightening pass is skipped


def group_shape(k: int) -> tuple[int, int]:
    """``(t, g)``: ``t`` groups of ``g`` centroids (``t·g ≥ k``, the last may be short)."""
    g = math.ceil(k / max(1, round(k / _CENTROIDS_PER_GROUP)))
    return math.ceil(k / g), g


def group_centroids(centroids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Groups of equal size: ``order`` (t·g,), the centroids group by group (``k`` pads),
    and ``group_of`` (k,), each centroid's group.

    A few Lloyd steps cluster the centroids into ``t`` groups (from every
    ``k/t``-th centroid); the centroids sorted by that cluster are then cut into
    ``t`` runs of ``g``, so the groups are spatially coherent and of equal size.
    Any grouping gives valid bounds; a coherent one gives tight ones.
    """
    k = centroids.shape[0]
    t, g = group_shape(k)
    sq = lambda a, b: jnp.sum((a[:, None] - b[None]) ** 2, axis=-1)  # noqa: E731
    seeds = centroids[jnp.arange(t) * k // t]

    def step(seeds, _):
        near = jnp.argmin(sq(centroids, seeds), axis=1)
        sums = jax.ops.segment_sum(centroids, near, t)
        counts = jax.ops.segment_sum(jnp.ones(k, centroids.dtype), near, t)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], seeds), None

    seeds, _ = jax.lax.scan(step, seeds, None, length=_GROUPING_STEPS)
    sorted_ids = jnp.argsort(jnp.argmin(sq(centroids, seeds), axis=1), stable=True)
    order = jnp.pad(sorted_ids.astype(jnp.int32), (0, t * g - k), constant_values=k)
    group_of = jnp.zeros(k, jnp.int32).at[sorted_ids].set(jnp.arange(k, dtype=jnp.int32) // g)
    return order, group_of


def _table(centroids, order):
    """The centroids in group order, padded with rows at infinite distance, and ``‖c‖²``."""
    k = centroids.shape[0]
    padded = jnp.take(centroids, order, axis=0, mode="fill", fill_value=0)
    c_sq = jnp.where(order < k, jnp.sum(padded * padded, axis=1), jnp.inf)
    return padded, c_sq


def group_search(x_blk, x_sq_blk, padded, c_sq, order, k):
    """Each row's nearest centroid and its exact group lower bounds, for one block.

    Returns the labels (rows,) and the bounds (t, rows): per group, the distance
    to its nearest centroid other than the label.
    """
    t, g = group_shape(k)
    rows = x_blk.shape[0]
    part = c_sq[:, None] - 2 * jnp.dot(padded, x_blk.T, precision=jax.lax.Precision.DEFAULT)
    part = part.reshape(t, g, rows)
    first, second = part[:, 0], jnp.full((t, rows), jnp.inf, part.dtype)
    arg = jnp.zeros((t, rows), jnp.int32)
    for j in range(1, g):  # the two smallest per group, vectorised along the rows
        v = part[:, j]
        second = jnp.minimum(second, jnp.maximum(first, v))
        arg = jnp.where(v < first, j, arg)
        first = jnp.minimum(first, v)
    best = jnp.min(first, axis=0)
    groups = jnp.arange(t, dtype=jnp.int32)[:, None]
    win = jnp.min(jnp.where(first == best, groups, t - 1), axis=0)  # NaN rows: the last group
    is_win = groups == win
    col = win * g + jnp.max(jnp.where(is_win, arg, 0), axis=0)
    labels = jnp.minimum(order[col], k - 1)
    lower = jnp.sqrt(jnp.maximum(jnp.where(is_win, second, first) + x_sq_blk, 0))
    return labels, lower


def search_all(xb, wb, x_sq, centroids, order):
    """Every point's label, ``‖x - c_a‖²`` and group bounds (blocks, t, rows), with the sums."""
    k = centroids.shape[0]
    padded, c_sq = _table(centroids, order)

    def label_block(x_blk, xs):
        labels, lower = group_search(x_blk, xs, padded, c_sq, order, k)
        return labels, (jnp.sum((x_blk - centroids[labels]) ** 2, axis=1), lower)

    sums, counts, labels, (dist, lower) = cluster_sums(xb, wb, k, label_block, x_sq)
    return Stats(sums, counts, labels, dist), lower


def search_open(xb, wb, x_sq, centroids, order, stats: Stats, lower, open_):
    """The full search for the ``open_`` points only, on top of ``stats`` (the sums,
    labels and exact distances of the previous labels): the corrected statistics and
    the group bounds.

    The open points are gathered in chunks of one block's rows, so memory holds one
    ``k × rows`` block; the loop runs ``⌈#open / rows⌉`` times. A point whose label
    changes moves its weighted coordinates from the old cluster's sums to the new.
    """
    num_blocks, chunk = stats.labels.shape
    n, d, k = stats.labels.size, xb.shape[-1], centroids.shape[0]
    x_flat, w_flat, x_sq = xb.reshape(n, d), wb.reshape(n), x_sq.reshape(n)
    open_ = open_.reshape(n)
    # the open indices first, in order, then n: an index the scatters drop
    slot = jnp.where(open_, jnp.cumsum(open_) - 1, n + chunk)
    rows = (
        jnp.full(n + chunk, n, jnp.int32).at[slot].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    )
    num_chunks = (jnp.sum(open_, dtype=jnp.int32) + chunk - 1) // chunk
    padded, c_sq = _table(centroids, order)

    def search(i, carry):
        sums, counts, labels, dist, lower = carry
        idx = jax.lax.dynamic_slice(rows, (i * chunk,), (chunk,))
        safe = jnp.minimum(idx, n - 1)
        x_blk = x_flat[safe]
        new, low = group_search(x_blk, x_sq[safe], padded, c_sq, order, k)
        old = labels[safe]
        w = jnp.where((idx < n) & (new != old), w_flat[safe], 0)
        moved_x, to_new = x_blk * w[:, None], jnp.where(w > 0, new, k)
        from_old = jnp.where(w > 0, old, k)  # k: out of range, dropped
        sums = (
            sums
            + jax.ops.segment_sum(moved_x, to_new, k)
            - jax.ops.segment_sum(moved_x, from_old, k)
        )
        counts = counts + jax.ops.segment_sum(w, to_new, k) - jax.ops.segment_sum(w, from_old, k)
        new_dist = jnp.sum((x_blk - centroids[new]) ** 2, axis=1)
        blk, row = safe // chunk, safe % chunk
        blk = jnp.where(idx < n, blk, num_blocks)  # out of range: dropped
        lower = lower.at[blk, :, row].set(low.T, mode="drop")
        labels = labels.at[idx].set(new, mode="drop")
        return sums, counts, labels, dist.at[idx].set(new_dist, mode="drop"), lower

    init = (stats.sums, stats.counts, stats.labels.reshape(n), stats.sq_distances.reshape(n), lower)
    sums, counts, labels, dist, lower = jax.lax.fori_loop(0, num_chunks, search, init)
    return Stats(
        sums, counts, labels.reshape(num_blocks, chunk), dist.reshape(num_blocks, chunk)
    ), lower


def yinyang_pass(xb, wb, x_sq, centroids, labels, upper, lower, order):
    """One E-step with group bounds plus the M-step statistics (one restart).

    ``upper`` (blocks, rows) and ``lower`` (blocks, t, rows) are the bounds moved
    to these centroids. Returns the :class:`Stats` and the new group bounds.
    """
    global_lower = jnp.min(lower, axis=1)

    def search_all_():
        return search_all(xb, wb, x_sq, centroids, order)

    def tightened():
        sums, counts, dist = assigned_statistics(xb, wb, centroids, labels)
        open_ = (labels < 0) | (jnp.sqrt(dist) > global_lower)  # the tight upper bound
        stats = Stats(sums, counts, labels, dist)
        return jax.lax.cond(
            jnp.mean(open_) > _SEARCH_ALL_ABOVE,
            search_all_,
            lambda: search_open(xb, wb, x_sq, centroids, order, stats, lower, open_),
        )

    loose = (labels < 0) | (upper > global_lower)
    return jax.lax.cond(jnp.mean(loose) > _TIGHTEN_BELOW, search_all_, tightened)


def assigned_statistics(xb, wb, centroids, labels):
    """M-step sums (k, d), weights (k,) and each point's exact ``‖x_i - c_{a_i}‖²``."""

    def label_block(x_blk, label):
        return label, jnp.sum((x_blk - centroids[label]) ** 2, axis=1)

    sums, counts, _, dist = cluster_sums(xb, wb, centroids.shape[0], label_block, labels)
    return sums, counts, dist


def move_bounds(upper, lower, labels, group_of, old, new):
    """The bounds after the centroids move from ``old`` to ``new``."""
    shift = jnp.sqrt(jnp.sum((new - old) ** 2, axis=1))
    group_shift = jax.ops.segment_max(shift, group_of, lower.shape[1])
    return upper + shift[labels], lower - group_shift[None, :, None]


def _start(x_sq, centroids):
    order, group_of = group_centroids(centroids)
    t, _ = group_shape(centroids.shape[0])
    lower = jnp.zeros((x_sq.shape[0], t, x_sq.shape[1]), x_sq.dtype)
    return jnp.zeros_like(x_sq), lower, order, group_of


def _sweep(xb, wb, x_sq, centroids, labels, aux):
    upper, lower, order, group_of = aux
    stats, lower = yinyang_pass(xb, wb, x_sq, centroids, labels, upper, lower, order)
    inertia = per_cluster(stats.sq_distances, stats.labels, wb, centroids.shape[0])
    sweep = Sweep(stats.sums, stats.counts, stats.labels, inertia)
    return sweep, (jnp.sqrt(stats.sq_distances), lower, order, group_of)


def _moved(aux, labels, old, new):
    upper, lower, order, group_of = aux
    return (*move_bounds(upper, lower, labels, group_of, old, new), order, group_of)


# Bounds of zero with labels -1 leave every point open in the first sweep.
YINYANG = Algorithm(start=_start, sweep=_sweep, moved=_moved, vmap_restarts=False)
