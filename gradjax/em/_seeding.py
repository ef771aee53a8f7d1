"""Greedy weighted k-means++ seeding, and the named ``init`` options of K-Means.

k-means++ on unit rows is k-means++ on the cosine distance: there
``‖x - c‖² = 2(1 - cos(x, c))``, so the draws and the greedy choice are the same.

Reference:
  D. Arthur & S. Vassilvitskii, "k-means++: the advantages of careful seeding",
  SODA (2007).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from gradjax._checks import all_finite, check_int, check_key

from ._inputs import as_points, as_weights, check_num_clusters


@functools.partial(jax.jit, static_argnames=("num_clusters", "num_trials"))
def _seed_kmeans_plusplus(key, x, w, num_clusters, num_trials):
    """Greedy weighted k-means++ on validated inputs."""
    n = x.shape[0]
    x_sq = jnp.sum(x * x, axis=1)

    def sq_dist_to(idx):  # (n, len(idx)) squared distances to the points x[idx]
        dots = jnp.dot(x, x[idx].T, precision=jax.lax.Precision.DEFAULT)
        return jnp.maximum(x_sq[:, None] - 2 * dots + x_sq[idx][None, :], 0)

    def draw(key, mass, num):  # `num` indices drawn with probability ∝ mass
        cumulative = jnp.cumsum(mass)
        targets = jax.random.uniform(key, (num,), x.dtype) * cumulative[-1]
        return jnp.minimum(jnp.searchsorted(cumulative, targets, method="compare_all"), n - 1)

    key_first, key_rest = jax.random.split(key)
    first = draw(key_first, w, 1)
    centroids = jnp.zeros((num_clusters, x.shape[1]), x.dtype).at[0].set(x[first[0]])
    closest = sq_dist_to(first)[:, 0]

    def add_centroid(carry, inputs):
        centroids, closest = carry
        i, key = inputs
        candidates = draw(key, w * closest, num_trials)
        new_closest = jnp.minimum(closest[:, None], sq_dist_to(candidates))
        best = jnp.argmin(jnp.sum(w[:, None] * new_closest, axis=0))
        centroids = centroids.at[i].set(x[candidates[best]])
        return (centroids, new_closest[:, best]), None

    steps = (jnp.arange(1, num_clusters), jax.random.split(key_rest, num_clusters - 1))
    (centroids, _), _ = jax.lax.scan(add_centroid, (centroids, closest), steps)
    # a non-finite point or weight corrupts the draws without showing in them
    return jnp.where(all_finite(x, w), centroids, jnp.nan)


def kmeans_plusplus(
    key: jax.Array,
    x: jax.Array,
    num_clusters: int,
    *,
    weights: jax.Array | None = None,
    num_trials: int | None = None,
) -> jax.Array:
    """Greedy weighted k-means++ seeding.

    The first centroid is a point drawn with probability ``∝ w_i``. Each further one:
    draw ``num_trials`` candidates with probability ``∝ w_i D(x_i)²`` (``D`` the
    distance to the nearest centroid so far) and keep the candidate that most
    lowers the potential ``Σ_i w_i D(x_i)²``.

    Args:
      key: a PRNG key.
      x: (n, d) points.
      num_clusters: the number of centroids ``k``, ``1 <= k <= n``.
      weights: optional (n,) non-negative sample weights.
      num_trials: candidates per centroid; default ``2 + ⌊ln k⌋``.

    Returns:
      (num_clusters, d) centroids, rows of ``x``; all NaN if a traced ``x`` or
      ``weights`` holds NaN or Inf.

    Example:
      >>> x = jax.random.normal(jax.random.key(0), (100, 2))
      >>> kmeans_plusplus(jax.random.key(1), x, 3).shape
      (3, 2)

    References:
      Arthur & Vassilvitskii, "k-means++: the advantages of careful seeding" (2007).
    """
    key = check_key("key", key)
    x = as_points(x)
    k = check_num_clusters(num_clusters, x.shape[0])
    w = as_weights(weights, x.shape[0], x.dtype)
    if num_trials is None:
        num_trials = 2 + int(math.log(k))
    num_trials = check_int("num_trials", num_trials, 1)
    return _seed_kmeans_plusplus(key, x, w, k, num_trials)


def initial_centroids(key, x, w, num_clusters, init):
    """Centroids from a validated ``init`` (a name or an array)."""
    if not isinstance(init, str):
        return init
    if init == "random":
        idx = jax.random.choice(key, x.shape[0], (num_clusters,), replace=False, p=w / jnp.sum(w))
        return x[idx]
    return _seed_kmeans_plusplus(key, x, w, num_clusters, 2 + int(math.log(num_clusters)))
