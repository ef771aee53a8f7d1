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


def min_and_argmin(dist: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Row minimum and the first index attaining it (int32).

    Two plain reductions (a min, then a min over the matching column indices)
    vectorise far better on CPU than XLA's variadic (value, index) argmin.
    """
    best = jnp.min(dist, axis=1)
    cols = jnp.arange(dist.shape[1], dtype=jnp.int32)
    label = jnp.min(jnp.where(dist == best[:, None], cols, dist.shape[1] - 1), axis=1)
    return best, label  # a row of NaNs gets the last index (and a NaN minimum)


def nearest_by_columns(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Each row's nearest centroid (first on ties) from the (k, rows) distance layout.

    The reductions then run over the leading axis, vectorised along the rows: on CPU
    (8192 × 32 points, k=64) labelling took 0.55 ms against 0.85-1.6 ms for the
    (rows, k) layout of :func:`min_and_argmin`. Memory is ``k × rows``: for one batch.
    """
    c_sq = jnp.sum(centroids * centroids, axis=1)
    part = c_sq[:, None] - 2 * jnp.dot(centroids, x.T, precision=jax.lax.Precision.DEFAULT)
    best = jnp.min(part, axis=0)
    rows = jnp.arange(part.shape[0], dtype=jnp.int32)[:, None]
    return jnp.min(jnp.where(part == best[None, :], rows, part.shape[0] - 1), axis=0)
