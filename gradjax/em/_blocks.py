"""Row blocks for clustering: a bounded ``chunk × k`` distance block at a time.

The points are laid out once as ``(num_blocks, block_size, d)``, padded with
zero-weight rows, and a ``lax.scan`` over the blocks computes each block's
distances to all centroids with one GEMM, ``‖x‖² - 2 x·c + ‖c‖²``. The layout is
interleaved (block ``b`` holds rows ``b, b + num_blocks, b + 2·num_blocks, ...``),
so when the rows of ``x`` are sharded over devices each block is sharded the same
way and the scan never gathers ``x`` onto one device; XLA reduces the per-block
sums across devices.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# A block of distances holds about this many entries (4 MiB of float32): small enough
# to stay in cache between the GEMM that writes it and the reductions that read it.
_BLOCK_ENTRIES = 1 << 20
_MAX_BLOCK_ROWS = 1 << 16
_COLUMNS = 64  # centroids per step of the running search in `nearest`


def block_size_for(n: int, num_clusters: int, block_size: int | None = None) -> int:
    """Rows per block: ``block_size`` if given, else about 2²⁰ / num_clusters rows."""
    if block_size is None:
        block_size = min(_MAX_BLOCK_ROWS, max(256, _BLOCK_ENTRIES // max(num_clusters, 1)))
    if n <= block_size:
        return n
    num_blocks = math.ceil(n / block_size)
    return 8 * math.ceil(math.ceil(n / num_blocks) / 8)  # balanced blocks, minimal padding


def to_blocks(a: jax.Array, block_size: int) -> jax.Array:
    """``(n, ...) -> (num_blocks, block_size, ...)``, interleaved, zero-padded."""
    n = a.shape[0]
    num_blocks = math.ceil(n / block_size)
    pad = num_blocks * block_size - n
    if pad:
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape(block_size, num_blocks, *a.shape[1:]).swapaxes(0, 1)


def blocked_points(x: jax.Array, w: jax.Array, block_size: int):
    """The points, weights and ``‖x‖²`` in row blocks (:func:`to_blocks`).

    ``‖x‖²`` is taken on the rows before blocking: over the blocked (transposed)
    layout XLA's CPU reduction ran 10x slower (24-34 ms against 2.4 ms at 120k × 48).
    """
    return (to_blocks(x, block_size), to_blocks(w, block_size),
            to_blocks(jnp.sum(x * x, axis=1), block_size))  # fmt: skip


def from_blocks(blocks: jax.Array, n: int) -> jax.Array:
    """Inverse of :func:`to_blocks`: ``(num_blocks, block_size, ...) -> (n, ...)``."""
    return blocks.swapaxes(0, 1).reshape(-1, *blocks.shape[2:])[:n]


def cluster_sums(xb, wb, num_clusters, label_block, *per_block):
    """A scan over row blocks that labels each block and sums its points per cluster.

    ``label_block(x_blk, *per_block_blk) -> (labels, outputs)``. Returns the weighted
    sums ``Σ_{i: label_i = j} w_i x_i`` (k, d), the weights ``Σ w_i`` (k,), and the
    labels and outputs stacked over the blocks: the M-step's sufficient statistics
    and whatever per-point values the E-step produced.
    """

    def block(carry, inputs):
        sums, counts = carry
        x_blk, w_blk, *rest = inputs
        labels, outputs = label_block(x_blk, *rest)
        sums = sums + jax.ops.segment_sum(x_blk * w_blk[:, None], labels, num_clusters)
        counts = counts + jax.ops.segment_sum(w_blk, labels, num_clusters)
        return (sums, counts), (labels, outputs)

    zeros = (jnp.zeros((num_clusters, xb.shape[-1]), xb.dtype), jnp.zeros(num_clusters, xb.dtype))
    (sums, counts), (labels, outputs) = jax.lax.scan(block, zeros, (xb, wb, *per_block))
    return sums, counts, labels, outputs


def per_cluster(values, labels, wb, num_clusters):
    """``Σ_{i: label_i = j} w_i values_i`` (num_clusters,), over blocked points."""
    return jax.ops.segment_sum((wb * values).reshape(-1), labels.reshape(-1), num_clusters)


def partial_sq_distances(xb: jax.Array, centroids: jax.Array, c_sq: jax.Array) -> jax.Array:
    """``‖c_j‖² - 2 x_i·c_j`` for a block: the squared distance without ``‖x_i‖²``."""
    xc = jnp.dot(xb, centroids.T, precision=jax.lax.Precision.DEFAULT)
    return c_sq[None, :] - 2 * xc


def centroid_table(centroids: jax.Array):
    """The centroids padded to whole steps of ``columns`` rows (at infinite distance),
    their ``‖c‖²``, and ``columns``."""
    k = centroids.shape[0]
    columns = min(_COLUMNS, k)
    pad = -k % columns
    c_sq = jnp.pad(jnp.sum(centroids * centroids, axis=1), (0, pad), constant_values=jnp.inf)
    return jnp.pad(centroids, ((0, pad), (0, 0))), c_sq, columns


def nearest(x_blk, table, second: bool = False) -> tuple[jax.Array, jax.Array]:
    """Per row of ``x_blk``: the first nearest centroid, and the second smallest
    ``‖c_j‖² - 2 x·c_j`` if ``second`` (add ``‖x‖²`` for the squared distance;
    ``inf`` otherwise). ``table`` is :func:`centroid_table`'s.

    The distances are laid out (centroids, rows) and scanned ``columns`` centroids
    at a time, keeping a running (min, second, argmin) vectorised along the rows;
    on CPU (120k × 48, k=192, blocks of 2²⁰ distances) the argmin alone took
    21 ms against 38 ms for a min and a masked min over the (rows, k) layout,
    and 31 ms in the (k, rows) layout. Strict ``<`` keeps the first index on
    ties; a row of NaNs gets label 0.
    """
    padded, c_sq, columns = table
    part = c_sq[:, None] - 2 * jnp.dot(padded, x_blk.T, precision=jax.lax.Precision.DEFAULT)

    def step(i, carry):
        best, runner_up, label = carry
        rows = jax.lax.dynamic_slice_in_dim(part, i * columns, columns)
        for j in range(columns):
            v = rows[j]
            if second:
                runner_up = jnp.minimum(runner_up, jnp.maximum(best, v))
            label = jnp.where(v < best, i * columns + j, label)
            best = jnp.minimum(best, v)
        return best, runner_up, label

    inf = jnp.full(x_blk.shape[0], jnp.inf, part.dtype)
    init = (inf, inf, jnp.zeros(x_blk.shape[0], jnp.int32))
    _, runner_up, label = jax.lax.fori_loop(0, part.shape[0] // columns, step, init)
    return label, runner_up


def nearest_exact(x_blk, centroids, table) -> tuple[jax.Array, jax.Array]:
    """Each row's nearest centroid (:func:`nearest`) and its exact ``‖x - c_a‖²``,
    computed directly rather than from the GEMM expansion."""
    label, _ = nearest(x_blk, table)
    return label, jnp.sum((x_blk - centroids[label]) ** 2, axis=1)
