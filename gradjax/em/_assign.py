"""Nearest-centroid assignment, one row block at a time."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._blocks import block_size_for, centroid_table, from_blocks, nearest_exact, to_blocks
from ._inputs import as_centroids, as_points, check_block_size


def nearest_blocked(xb: jax.Array, centroids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Blocked nearest centroid: labels and exact squared distances, both (blocks, rows)."""
    table = centroid_table(centroids)
    return jax.lax.map(lambda x_blk: nearest_exact(x_blk, centroids, table), xb)


def assign(
    x: jax.Array, centroids: jax.Array, *, block_size: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Each point's nearest centroid and its squared distance to it.

    ``labels_i = argmin_j ‖x_i - c_j‖²`` (the first on ties), found from
    ``‖c_j‖² - 2 x_i·c_j`` one row block at a time, with both sides shifted by the
    centroids' mean (float32 stays accurate far from the origin); the returned
    distance is then computed directly as ``‖x_i - c_{labels_i}‖²``.

    NaN or Inf in concrete ``x`` or ``centroids`` is a ValueError. Traced
    (under ``jit``), a non-finite centroid makes every squared distance NaN (the
    centring shift is NaN), and a non-finite point makes its own distance non-finite, so
    ``jnp.isfinite(squared_distances)`` tells which labels are meaningful.

    Args:
      x: (n, d) points.
      centroids: (k, d) centroids (an int array is converted to ``x``'s dtype).
      block_size: rows per distance block; default about 2²⁰ / k.

    Returns:
      ``(labels, squared_distances)``: (n,) int32 and (n,) in ``x``'s dtype.

    Example:
      >>> labels, d2 = assign(jnp.array([[0.0], [0.9], [3.0]]), jnp.array([[0.0], [2.0]]))
      >>> labels
      Array([0, 0, 1], dtype=int32)
    """
    x = as_points(x)
    centroids = as_centroids("centroids", centroids, x.shape[1], x.dtype)
    block_size = check_block_size(block_size)
    return _assign(x, centroids, block_size_for(x.shape[0], centroids.shape[0], block_size))


@functools.partial(jax.jit, static_argnames="block_size")
def _assign(x, centroids, block_size):
    origin = jnp.mean(centroids, axis=0)  # centred: see _kmeans
    labels, dist = nearest_blocked(to_blocks(x - origin, block_size), centroids - origin)
    return from_blocks(labels, x.shape[0]), from_blocks(dist, x.shape[0])
