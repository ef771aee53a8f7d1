"""Soft K-Means: EM on the smoothed K-Means objective.

The hard objective ``Σ_i w_i min_j d_ij`` (``d_ij = ‖x_i - c_j‖²``) is smoothed with
a stiffness ``M > 0``,

    L_M(c) = -1/M Σ_i w_i log Σ_j exp(-M d_ij)   (→ the hard objective as M → ∞),

whose gradient is ``∂L_M/∂c_j = Σ_i w_i C_ij · 2(c_j - x_i)`` with responsibilities
``C_ij = softmax_j(-M d_ij)``. Freezing ``C`` at the current centroids gives the
surrogate ``L' = Σ_ij w_i C_ij d_ij``, which has the same gradient there and is
minimised in closed form by the responsibility-weighted means. That is EM for a
mixture of equal-weight isotropic Gaussians of variance ``1/(2M)``, so ``L_M``
never increases; as ``M → ∞``, ``C`` becomes one-hot and the step is Lloyd's.

References:
  Su Jianlin, "Gradient descent and EM: one idea" (kexue.fm/archives/4277).
  Dempster, Laird & Rubin, "Maximum likelihood from incomplete data via the EM
  algorithm", JRSS B (1977).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import all_finite, check_int, check_key, check_scalar
from gradjax._loop import scan_loop
from gradjax._status import Status

from ._assign import nearest_blocked
from ._blocks import block_size_for, blocked_points, from_blocks, partial_sq_distances
from ._inputs import (
    as_points,
    as_weights,
    check_block_size,
    check_init,
    check_num_clusters,
    scaled_tolerance,
)
from ._iterate import centroids_from
from ._kmeans import KMeansResult, prepare
from ._outcome import status_code
from ._seeding import initial_centroids


class SoftStatistics(NamedTuple):
    """One blocked E-step of soft K-Means."""

    sums: jax.Array  # (k, d), Σ_i w_i C_ij x_i
    mass: jax.Array  # (k,), Σ_i w_i C_ij
    objective: jax.Array  # L_M of the centroids


class _SoftState(NamedTuple):
    centroids: jax.Array
    objective: jax.Array  # L_M of the centroids entering the last step
    shift: jax.Array  # Σ_j ‖c_j⁺ - c_j‖² of the last step
    finite: jax.Array  # false once a step was refused for a NaN/Inf result


def _soft_pass(xb, wb, x_sq, centroids, stiffness) -> SoftStatistics:
    """Blocked E-step: responsibility-weighted sums (k, d), masses (k,), and ``L_M``."""
    c_sq = jnp.sum(centroids * centroids, axis=1)

    def block(carry, inputs):
        x_blk, w_blk, x_sq_blk = inputs
        dist = jnp.maximum(partial_sq_distances(x_blk, centroids, c_sq) + x_sq_blk[:, None], 0)
        # shifted by each row's minimum: the nearest logit is exactly 0, so a large
        # M·d loses no precision (-M·d itself would, in float32, past M·d ≈ 1e7)
        closest = jnp.min(dist, axis=1)
        logits = -stiffness * (dist - closest[:, None])
        log_norm = jax.nn.logsumexp(logits, axis=1)  # in [0, log k]
        resp = jnp.exp(logits - log_norm[:, None]) * w_blk[:, None]
        return SoftStatistics(
            carry.sums + jnp.dot(resp.T, x_blk, precision=jax.lax.Precision.DEFAULT),
            carry.mass + jnp.sum(resp, axis=0),
            carry.objective + jnp.sum(w_blk * (closest - log_norm / stiffness)),
        ), None

    zeros = SoftStatistics(
        jnp.zeros_like(centroids),
        jnp.zeros(centroids.shape[0], centroids.dtype),
        jnp.zeros([], centroids.dtype),
    )
    return jax.lax.scan(block, zeros, (xb, wb, x_sq))[0]


def soft_kmeans(
    key: jax.Array,
    x: jax.Array,
    num_clusters: int,
    *,
    stiffness: float,
    num_steps: int = 100,
    init: str | jax.Array = "k-means++",
    tol: float = 1e-4,
    weights: jax.Array | None = None,
    block_size: int | None = None,
) -> KMeansResult:
    """Soft K-Means: EM on ``L_M(c) = -1/M Σ_i w_i log Σ_j exp(-M ‖x_i - c_j‖²)``.

    Each iteration computes responsibilities ``C_ij = softmax_j(-M ‖x_i - c_j‖²)`` and
    moves each centroid to ``c_j = Σ_i w_i C_ij x_i / Σ_i w_i C_ij``. ``L_M`` never
    increases, and a large ``stiffness`` reproduces Lloyd's iterations. Stops when
    ``Σ_j ‖Δc_j‖² <= tol · mean_f Var(x_f)`` (``tol=0`` runs all ``num_steps``); a
    centroid with no responsibility mass stays where it is. The points are prepared
    as in :func:`gradjax.em.kmeans` (centred, in row blocks, the same seeding), and
    the M-step is its weighted mean, with responsibilities for the hard labels.

    Args:
      key: a PRNG key (seeding; unused with an array ``init``).
      x: (n, d) points.
      num_clusters: ``k``, ``1 <= k <= n``.
      stiffness: ``M > 0``, the inverse temperature of the responsibilities (in
        units of 1 / squared distance); a traced ``M <= 0`` gives ``NONFINITE``.
      num_steps: the (static) maximum number of EM iterations.
      init: "k-means++", "random" or a (k, d) array, as in :func:`gradjax.em.kmeans`.
      tol: relative tolerance on the centroid shift, ``>= 0`` (a traced negative
        ``tol`` acts as 0).
      weights: optional (n,) non-negative sample weights, at least ``k`` positive
        (traced, a negative or an all-zero one gives ``NONFINITE``).
      block_size: rows per distance block; default about 2²⁰ / k.

    Returns:
      A :class:`gradjax.em.KMeansResult`: ``labels`` is each point's most
      responsible (nearest) centroid, ``inertia`` the hard inertia of the returned
      centroids, and ``inertia_trace`` the smoothed objective ``L_M`` of the
      centroids entering each iteration. ``status`` is ``SUCCESS`` when the
      shift test passed, ``MAX_STEPS`` otherwise, ``NONFINITE`` if a traced
      ``x``, ``weights`` or ``init`` holds NaN or Inf or a step would have made
      the centroids NaN/Inf (that step is not taken: the last finite centroids
      are returned).

    Example:
      >>> x = jnp.concatenate([jnp.zeros((5, 2)), jnp.ones((5, 2)) * 4])
      >>> result = soft_kmeans(jax.random.key(0), x, 2, stiffness=1.0)
      >>> result.centroids.shape
      (2, 2)

    References:
      Su Jianlin, "Gradient descent and EM: one idea" (kexue.fm/archives/4277).
    """
    key = check_key("key", key)
    x = as_points(x)
    n, d = x.shape
    k = check_num_clusters(num_clusters, n)
    num_steps = check_int("num_steps", num_steps, 0)
    tol = check_scalar("tol", tol, 0.0)
    stiffness = check_scalar("stiffness", stiffness, 0.0, strict=True)
    block_size = check_block_size(block_size)
    w = as_weights(weights, n, x.dtype, k)
    init = check_init(init, k, d, x.dtype)

    return _soft_kmeans(
        key,
        x,
        w,
        None if isinstance(init, str) else init,
        jnp.asarray(stiffness, x.dtype),
        jnp.asarray(tol, x.dtype),
        num_clusters=k,
        num_steps=num_steps,
        init=init if isinstance(init, str) else None,
        block_size=block_size_for(n, k, block_size),
    )


@functools.partial(jax.jit, static_argnames=("num_clusters", "num_steps", "init", "block_size"))
def _soft_kmeans(
    key, x, w, init_centroids, stiffness, tol, *, num_clusters, num_steps, init, block_size
):
    """:func:`soft_kmeans` on validated inputs (jitted, so eager calls compile once)."""
    stiffness = jnp.where(stiffness > 0, stiffness, jnp.nan)  # a traced M <= 0: NONFINITE
    x, init_centroids, shift = prepare(x, init_centroids, "euclidean")
    xb, wb, x_sq = blocked_points(x, w, block_size)
    tol_scaled = scaled_tolerance(x, tol)

    def step(state):
        stats = _soft_pass(xb, wb, x_sq, state.centroids, stiffness)
        new = centroids_from(stats.sums, stats.mass, state.centroids, "euclidean")
        stepped = _SoftState(
            new, stats.objective, jnp.sum((new - state.centroids) ** 2), state.finite
        )
        ok = jnp.all(jnp.isfinite(new)) & jnp.isfinite(stats.objective)
        return optax.tree.where(ok, stepped, state._replace(finite=False))

    centroids = initial_centroids(key, x, w, num_clusters, init or init_centroids)
    inf = jnp.asarray(jnp.inf, x.dtype)
    start_finite = jnp.all(jnp.isfinite(centroids))
    out = scan_loop(
        step,
        _SoftState(centroids, inf, inf, start_finite),
        num_steps=num_steps,
        converged=lambda s: ((tol > 0) & (s.shift <= tol_scaled)) | ~s.finite,
        record=lambda s: s.objective,
    )
    state = out.state
    labels, dist = nearest_blocked(xb, state.centroids)
    inertia = jnp.sum(wb * dist)
    finite = state.finite & jnp.isfinite(inertia) & all_finite(x, w, init_centroids)
    status = status_code((tol > 0) & (state.shift <= tol_scaled), finite)
    return KMeansResult(
        centroids=state.centroids + shift,
        labels=from_blocks(labels, x.shape[0]),
        inertia=inertia,
        inertia_trace=out.trace,
        num_steps=out.num_steps - (start_finite & ~state.finite).astype(jnp.int32),  # refused
        converged=status == int(Status.SUCCESS),
        status=status,
    )
