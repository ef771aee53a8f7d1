"""Lloyd iterations of several restarts at once, for any :class:`~._sweep.Algorithm`.

Each iteration is one sweep (labels and cluster sums, by whichever algorithm),
the empty-cluster repair, and the M-step of the metric: the weighted mean for
"euclidean", the normalised sum for "cosine" (Dhillon & Modha 2001). One
``scan_loop`` drives all restarts; a converged restart is frozen, and the loop
stops stepping once all have converged. A step that would make a restart's centroids
or inertia NaN/Inf is not taken: that restart keeps its last finite centroids and is
flagged (``finite`` false), and it is frozen like a converged one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradjax._loop import scan_loop

from ._sweep import Algorithm, Aux, ClusterSums, Sweep


class IterState(NamedTuple):
    """The state of all restarts together: every field has a leading restart axis."""

    centroids: jax.Array  # (R, k, d)
    labels: jax.Array  # (R, blocks, rows) int32, of the previous sweep
    inertia: jax.Array  # (R,), of the centroids entering the last step
    shift: jax.Array  # (R,), Σ_j ‖c_j⁺ - c_j‖² of the last step
    same_labels: jax.Array  # (R,), the last sweep left every label unchanged
    num_steps: jax.Array  # (R,) int32, steps taken before convergence
    finite: jax.Array  # (R,) bool, false once a step was refused for a NaN/Inf result
    aux: Aux  # the algorithm's per-point state (R, ...)


class IterateOutput(NamedTuple):
    """What :func:`iterate` returns.

    Attributes:
      state: the final :class:`IterState`.
      trace: (num_steps, R), the inertia of the centroids entering each step.
      converged: (R,) bool, the stopping rule fired (and every step was finite).
    """

    state: IterState
    trace: jax.Array
    converged: jax.Array


def sweep_restarts(algorithm: Algorithm, xb, wb, x_sq, centroids, labels, aux):
    """``algorithm.sweep`` for each restart: vmapped, or mapped if it asks so."""

    def one(c, l, a):
        return algorithm.sweep(xb, wb, x_sq, c, l, a)

    if algorithm.vmap_restarts:
        return jax.vmap(one)(centroids, labels, aux)
    return jax.lax.map(lambda args: one(*args), (centroids, labels, aux))


def inertia_of(sweep: Sweep, metric: str) -> jax.Array:
    """``Σ w ‖x - c_a‖²``, or ``Σ w (1 - cos)`` (half of it, on unit vectors)."""
    inertia = jnp.sum(sweep.cluster_inertia, axis=-1)
    return 0.5 * inertia if metric == "cosine" else inertia


def exact_inertia(xb, wb, centroids, labels, metric: str) -> jax.Array:
    """:func:`inertia_of` computed afresh from the points, one block at a time (one
    restart): the returned inertia does not depend on how a sweep accumulated it, so
    restarts that reach the same partition compare equal under every algorithm."""

    def block(args):
        x_blk, w_blk, label = args
        return jnp.sum(w_blk * jnp.sum((x_blk - centroids[label]) ** 2, axis=-1))

    inertia = jnp.sum(jax.lax.map(block, (xb, wb, labels)))
    return 0.5 * inertia if metric == "cosine" else inertia


def centroids_from(sums, counts, old, metric: str):
    """The M-step: the mean (euclidean) or the normalised sum (cosine); a centroid
    with nothing to move to stays where it is (a NaN sum or count propagates)."""
    if metric == "cosine":
        norm = jnp.linalg.norm(sums, axis=-1, keepdims=True)
        return jnp.where(norm == 0, old, sums / jnp.where(norm == 0, 1, norm))
    empty = (counts <= 0)[..., None]  # False for NaN, so a NaN count gives a NaN mean
    return jnp.where(empty, old, sums / jnp.where(empty, 1, counts[..., None]))


def relocate_empty(sums, counts, xb, wb, labels, centroids):
    """Empty clusters take the points farthest from their centroids (as scikit-learn).

    The r-th empty cluster gets the r-th farthest positive-weight point (by
    ``‖x_i - c_{a_i}‖²`` to the ``centroids`` of the sweep), which leaves its old
    cluster's statistics (one restart).
    """
    k, d = sums.shape
    x_flat, w_flat, labels_flat = xb.reshape(-1, d), wb.reshape(-1), labels.reshape(-1)
    dist = jnp.sum((x_flat - centroids[labels_flat]) ** 2, axis=1)
    score = jnp.where(w_flat > 0, dist, -1)
    _, far = jax.lax.top_k(score, k)
    empty = counts <= 0
    point = far[jnp.clip(jnp.cumsum(empty) - 1, 0, k - 1)]  # (k,): the point each would take
    moved_w = jnp.where(empty, w_flat[point], 0)
    moved_x = x_flat[point] * moved_w[:, None]
    old = labels_flat[point]
    sums = sums - jax.ops.segment_sum(moved_x, old, k)
    counts = counts - jax.ops.segment_sum(moved_w, old, k)
    sums = jnp.where(empty[:, None], moved_x, sums)
    counts = jnp.where(empty, moved_w, counts)
    return ClusterSums(sums, counts)


def iterate(algorithm: Algorithm, xb, wb, x_sq, starts, *, num_steps, tol, active, metric):
    """Lloyd iterations from ``starts`` (R, k, d) on blocked data.

    Empty-cluster repair runs only when some restart has an empty cluster.
    Returns an :class:`IterateOutput`.
    """

    def restart_converged(state):
        return active & (state.same_labels | (state.shift <= tol))

    def frozen(state):
        return restart_converged(state) | ~state.finite

    def step(state):
        sweep, aux = sweep_restarts(
            algorithm, xb, wb, x_sq, state.centroids, state.labels, state.aux
        )
        sums, counts = jax.lax.cond(
            jnp.any(sweep.counts <= 0),
            jax.vmap(relocate_empty, (0, 0, None, None, 0, 0)),
            lambda s, c, *_: ClusterSums(s, c),
            *(sweep.sums, sweep.counts, xb, wb, sweep.labels, state.centroids),
        )
        new = centroids_from(sums, counts, state.centroids, metric)
        inertia = inertia_of(sweep, metric)
        ok = jnp.all(jnp.isfinite(new), axis=(1, 2)) & jnp.isfinite(inertia)
        stepped = IterState(
            centroids=new,
            labels=sweep.labels,
            inertia=inertia,
            shift=jnp.sum((new - state.centroids) ** 2, axis=(1, 2)),
            same_labels=jnp.all(sweep.labels == state.labels, axis=(1, 2)),
            num_steps=state.num_steps + 1,
            finite=state.finite,
            aux=jax.vmap(algorithm.moved)(aux, sweep.labels, state.centroids, new),
        )
        keep = frozen(state) | ~ok  # a refused step keeps the last finite state
        out = jax.tree.map(
            lambda old, new: jnp.where(keep.reshape((-1,) + (1,) * (new.ndim - 1)), old, new),
            state,
            stepped,
        )
        return out._replace(finite=state.finite & (frozen(state) | ok))

    num_restarts = starts.shape[0]
    init = IterState(
        centroids=starts,
        labels=jnp.full((num_restarts, *wb.shape), -1, jnp.int32),
        inertia=jnp.full(num_restarts, jnp.inf, starts.dtype),
        shift=jnp.full(num_restarts, jnp.inf, starts.dtype),
        same_labels=jnp.zeros(num_restarts, bool),
        num_steps=jnp.zeros(num_restarts, jnp.int32),
        finite=jnp.all(jnp.isfinite(starts), axis=(1, 2)),
        aux=jax.vmap(algorithm.start, (None, 0))(x_sq, starts),
    )
    out = scan_loop(
        step,
        init,
        num_steps=num_steps,
        converged=lambda s: jnp.all(frozen(s)),
        record=lambda s: s.inertia,
    )
    converged = restart_converged(out.state) & out.state.finite
    return IterateOutput(out.state, out.trace, converged)
