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
def _seed_indices(key, x, w, num_clusters, num_trials):
    """Greedy weighted k-means++ on validated (centred) inputs: the rows it picks, (k,).

    The uniforms are drawn in float32 whatever ``x``'s dtype, so one key picks the same
    rows of float32 and float64 data (up to a target landing within rounding of a
    boundary of the cumulative weights).
    """
    n = x.shape[0]
    x_sq = jnp.sum(x * x, axis=1)

    def sq_dist_to(idx):  # (n, len(idx)) squared distances to the points x[idx]
        dots = jnp.dot(x, x[idx].T, precision=jax.lax.Precision.DEFAULT)
        return jnp.maximum(x_sq[:, None] - 2 * dots + x_sq[idx][None, :], 0)

    def draw(key, mass, num):  # `num` indices drawn with probability ∝ mass
        cumulative = jnp.cumsum(mass)
        uniforms = jax.random.uniform(key, (num,), jnp.float32).astype(mass.dtype)
        targets = uniforms * cumulative[-1]
        return jnp.minimum(jnp.searchsorted(cumulative, targets, method="compare_all"), n - 1)

    key_first, key_rest = jax.random.split(key)
    first = draw(key_first, w, 1)
    closest = sq_dist_to(first)[:, 0]

    def add_centroid(closest, key):
        candidates = draw(key, w * closest, num_trials)
        new_closest = jnp.minimum(closest[:, None], sq_dist_to(candidates))
        best = jnp.argmin(jnp.sum(w[:, None] * new_closest, axis=0))
        return new_closest[:, best], candidates[best]

    _, rest = jax.lax.scan(add_centroid, closest, jax.random.split(key_rest, num_clusters - 1))
    return jnp.concatenate([first, rest]).astype(jnp.int32)


def _seed(key, x, w, num_clusters, num_trials):
    """k-means++ centroids, rows of ``x``; all NaN if ``x`` or ``w`` is not finite (a
    non-finite point or weight corrupts the draws without showing in them)."""
    centroids = x[_seed_indices(key, x, w, num_clusters, num_trials)]
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
    lowers the potential ``Σ_i w_i D(x_i)²``. The distances are taken on the centred
    points (float32 stays accurate far from the origin), and the random draws are
    float32 whatever ``x``'s dtype, so one key picks the same rows of float32 and
    float64 data.

    Args:
      key: a PRNG key.
      x: (n, d) points.
      num_clusters: the number of centroids ``k``, ``1 <= k <= n``.
      weights: optional (n,) non-negative sample weights, at least ``k`` positive.
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
    w = as_weights(weights, x.shape[0], x.dtype, k)
    if num_trials is None:
        num_trials = 2 + int(math.log(k))
    num_trials = check_int("num_trials", num_trials, 1)
    return _kmeans_plusplus(key, x, w, k, num_trials)


@functools.partial(jax.jit, static_argnames=("num_clusters", "num_trials"))
def _kmeans_plusplus(key, x, w, num_clusters, num_trials):
    """Seeds drawn on the centred points (float32 distances far from the origin), returned
    as the rows of ``x`` themselves."""
    idx = _seed_indices(key, x - jnp.mean(x, axis=0), w, num_clusters, num_trials)
    return jnp.where(all_finite(x, w), x[idx], jnp.nan)


def initial_centroids(key, x, w, num_clusters, init):
    """Centroids from a validated ``init`` (a name or an array), on prepared points.

    The random draws do not depend on ``x``'s dtype: "random" draws with float32
    probabilities, k-means++ with float32 uniforms.
    """
    if not isinstance(init, str):
        return init
    if init == "random":
        p = (w / jnp.sum(w)).astype(jnp.float32)
        idx = jax.random.choice(key, x.shape[0], (num_clusters,), replace=False, p=p)
        return jnp.where(all_finite(x, w), x[idx], jnp.nan)
    return _seed(key, x, w, num_clusters, 2 + int(math.log(num_clusters)))
