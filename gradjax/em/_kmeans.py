"""K-Means (Lloyd's algorithm): hard EM on the within-cluster sum of squares.

Lloyd minimises the inertia ``L(c) = Σ_i w_i min_j ‖x_i - c_j‖²`` by alternating
an E-step (each point's nearest centroid, ``C_ij = Δ_ij`` one-hot) and an M-step
(each centroid the weighted mean of its points, the argmin of the surrogate
``L' = Σ_ij C_ij w_i ‖x_i - c_j‖²``). ``L'`` majorises ``L`` and touches it at the
current centroids, so the inertia never increases. It is the ``M → ∞`` limit of
:func:`gradjax.em.soft_kmeans`.

The package is laid out so that each algorithm and option is an addition:
``_inputs`` checks and prepares the data, ``_seeding`` draws the starts,
``_sweep`` defines the pass interface (labels and cluster sums of one sweep) that
``_lloyd``, ``_hamerly`` and ``_yinyang`` implement, ``_iterate`` runs the restarts
over any of them, and this module only validates and dispatches. The points are processed
in row blocks (``_blocks``), so memory holds one ``block × k`` distance block at a
time, never ``n × k``.

References:
  S. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory (1982).
  D. Arthur & S. Vassilvitskii, "k-means++: the advantages of careful seeding",
  SODA (2007). Su Jianlin, "Gradient descent and EM: one idea"
  (kexue.fm/archives/4277).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradjax._checks import (
    all_finite,
    check_choice,
    check_int,
    check_key,
    check_scalar,
    is_concrete,
)
from gradjax._status import Status

from ._blocks import block_size_for, blocked_points, from_blocks
from ._hamerly import HAMERLY
from ._inputs import (
    METRICS,
    as_points,
    as_weights,
    check_block_size,
    check_init,
    check_num_clusters,
    check_unit_normalisable,
    scaled_tolerance,
    unit_rows,
)
from ._iterate import exact_inertia, iterate, sweep_restarts
from ._lloyd import LLOYD
from ._outcome import status_code
from ._seeding import initial_centroids
from ._yinyang import YINYANG

_ALGORITHMS = {"lloyd": LLOYD, "hamerly": HAMERLY, "yinyang": YINYANG}
ALGORITHMS = ("auto", *_ALGORITHMS)
# "auto" on one CPU device, measured on 2 CPU cores, 20 iterations from the same init on
# blobs: below ~1e6 point-centroid pairs Lloyd (5000 × 16, k=16, ms / iteration, lloyd /
# hamerly / yinyang: 0.50 / 1.55 / 1.43); from there Hamerly's bounds, which gather only
# the undecided points and move the cluster statistics with the centroids (120k × 48,
# k=192 and 200k × 64, k=256: benchmarks/RESULTS.md, kmeans_lloyd).
_BOUNDS_FROM_PAIRS = 1 << 20


def choose_algorithm(x, num_clusters: int) -> str:
    """What ``algorithm="auto"`` runs: Hamerly's bounds for large ``n·k`` on one CPU
    device, Lloyd otherwise.

    The bounds' gathers of the undecided points cross devices on sharded rows, and
    they were measured on CPU only, so sharded inputs and other backends get Lloyd.
    """
    sharding = getattr(x, "sharding", None) if is_concrete(x) else None
    one_device = sharding is None or len(sharding.device_set) == 1
    cpu = jax.default_backend() == "cpu"
    if x.shape[0] * num_clusters < _BOUNDS_FROM_PAIRS or not (one_device and cpu):
        return "lloyd"
    return "hamerly"


class KMeansResult(NamedTuple):
    """What :func:`kmeans` and :func:`gradjax.em.soft_kmeans` return.

    Attributes:
      centroids: (num_clusters, d), the returned centroids, ``x``'s dtype.
      labels: (n,) int32, each point's nearest returned centroid.
      inertia: scalar, ``Σ_i w_i ‖x_i - c_{labels_i}‖²`` of the returned centroids.
      inertia_trace: (num_steps,), the objective of the centroids entering each
        iteration (flat once converged). For ``kmeans`` it is the inertia; for
        ``soft_kmeans`` the smoothed objective ``-1/M Σ_i w_i log Σ_j e^{-M d_ij}``.
      num_steps: int32, iterations actually taken (of the best restart).
      converged: bool, ``status == Status.SUCCESS``.
      status: int32 :class:`gradjax.Status` code. ``SUCCESS``: the stopping rule
        fired within ``num_steps``. ``MAX_STEPS``: it did not (always so with
        ``tol=0``). ``NONFINITE``: a traced ``x``, ``weights`` or ``init`` holds
        NaN or Inf (concrete ones are rejected before the fit), a traced zero row
        under ``metric="cosine"``, or a step that would have made the centroids or
        the inertia NaN/Inf; that step is not taken, so the centroids are the last
        finite ones (NaN only where the start itself was: k-means++ or "random"
        seeds of non-finite data are all NaN).
    """

    centroids: jax.Array
    labels: jax.Array
    inertia: jax.Array
    inertia_trace: jax.Array
    num_steps: jax.Array
    converged: jax.Array
    status: jax.Array


def kmeans(
    key: jax.Array,
    x: jax.Array,
    num_clusters: int,
    *,
    num_steps: int = 100,
    tol: float = 1e-4,
    init: str | jax.Array = "k-means++",
    n_init: int = 1,
    weights: jax.Array | None = None,
    block_size: int | None = None,
    algorithm: str = "auto",
    metric: str = "euclidean",
) -> KMeansResult:
    """K-Means clustering by Lloyd's algorithm (hard EM), with restarts.

    Minimises the inertia ``Σ_i w_i min_j ‖x_i - c_j‖²``. Each iteration assigns
    every point to its nearest centroid and moves each centroid to the weighted
    mean of its points; a cluster left empty takes the point farthest from its
    centroid. Iteration stops when an E-step leaves every label unchanged or the
    centroids move by ``Σ_j ‖Δc_j‖² <= tol · mean_f Var(x_f)``; ``tol=0`` runs all
    ``num_steps``. ``labels`` and ``inertia`` come from a final assignment to the
    returned centroids. The ``n_init`` restarts run in parallel (``vmap``) and the
    lowest inertia wins: they share one ``scan_loop``, each frozen once converged,
    and the loop stops stepping when all have converged.

    The points are centred first (as scikit-learn does), so float32 distances stay
    accurate for data far from the origin. Memory is one ``block_size ×
    num_clusters`` distance block at a time. Runs under
    ``jit``/``vmap``; with ``x`` sharded over a mesh's data axis (``NamedSharding``
    on the rows) XLA reduces the per-cluster sums across devices. On TPU, run under
    ``jax.default_matmul_precision("highest")`` for float32-exact distances.

    Args:
      key: a PRNG key (seeding; unused with an array ``init``).
      x: (n, d) points, float32 or float64 (integers become the default float).
      num_clusters: ``k``, ``1 <= k <= n``.
      num_steps: the (static) maximum number of Lloyd iterations.
      tol: relative tolerance on the centroid shift, ``>= 0`` (a traced negative
        ``tol`` acts as 0).
      init: "k-means++" (greedy, weighted), "random" (``k`` distinct points drawn
        ``∝ w``), or a (k, d) array of initial centroids (then one run: restarts
        from the same start would be identical).
      n_init: the number of restarts, each seeded from its own key.
      weights: optional (n,) non-negative sample weights, at least ``k`` positive;
        an integer weight counts as that many copies of the point (traced, a
        negative or an all-zero one gives ``NONFINITE``).
      block_size: rows per distance block; default about 2²⁰ / k.
      algorithm: every choice gives Lloyd's iterates. "auto" (the default) takes
        "hamerly" from about 10⁶ point-centroid pairs (``n·k``) on a single CPU
        device, and "lloyd" otherwise (small data, sharded rows, other backends);
        inside the caller's ``jit`` it sees only the shape, so pass "lloyd" there
        for sharded rows.
        "lloyd" computes every point-centroid distance in every E-step.
        "hamerly" keeps two distance bounds per point (Hamerly 2010) and
        searches only the points whose label they leave open, keeping the
        cluster sums up to date by the points that change cluster: the same
        iterates up to float rounding (a sum accumulated in another order can
        resolve a near-tie the other way later on), with far fewer distance
        GEMMs once the first iterations are past. It pays off for large
        ``n·k``, not for small data, whose restarts it runs one after another
        (RESULTS.md).
        It gathers the undecided points, so it runs on sharded rows but moves
        them between devices: there, use "lloyd".
        "yinyang" (Ding et al. 2015) splits the centroids once into ``t ≈ k/10``
        groups and keeps per point an upper bound ``u_i`` and one lower bound
        ``l_ig`` per group; after a move, ``u_i += ‖Δc_{a_i}‖`` and ``l_ig -=
        max_{j ∈ G_g} ‖Δc_j‖``, and a point with ``‖x_i - c_{a_i}‖ ≤ min_g l_ig``
        keeps its label. A group's bound drops by its own largest move only, so
        fewer points are searched than with Hamerly's one bound when some
        centroids move far, but each sweep passes over every point to tighten
        ``u_i`` and sum the clusters, at ``t`` floats of memory per point: on the
        benchmark shapes it is slower than "hamerly" (RESULTS.md). Same caveats
        as "hamerly".
      metric: "euclidean", or "cosine" for spherical K-Means (Dhillon & Modha
        2001): the points (and an array ``init``) are scaled to unit norm, each is
        assigned to the centroid of largest cosine, and each centroid is the
        normalised sum of its points, so the centroids are unit vectors; the
        inertia is ``Σ_i w_i (1 - cos(x_i, c_{labels_i}))`` and the seeding is
        k-means++ on that distance. A zero-norm point is an error when concrete
        (traced, it gives ``NONFINITE``); each row is divided by its largest
        magnitude before its norm, so a row as small as 1e-30 in float32 keeps
        its direction.

    Returns:
      A :class:`KMeansResult`.

    Example:
      >>> x = jnp.concatenate([jnp.zeros((5, 2)), jnp.ones((5, 2)) * 4])
      >>> result = kmeans(jax.random.key(0), x, 2)
      >>> float(result.inertia)
      0.0

    References:
      Lloyd (1982); Arthur & Vassilvitskii (2007); I. Dhillon & D. Modha, "Concept
      decompositions for large sparse text data using clustering", Machine
      Learning (2001); G. Hamerly, "Making k-means even faster", SDM (2010);
      Y. Ding et al., "Yinyang K-Means: a drop-in replacement of the classic
      K-Means with consistent speedup", ICML (2015).
    """
    key = check_key("key", key)
    x = as_points(x)
    n, d = x.shape
    k = check_num_clusters(num_clusters, n)
    num_steps = check_int("num_steps", num_steps, 0)
    n_init = check_int("n_init", n_init, 1)
    tol = check_scalar("tol", tol, 0.0)
    block_size = check_block_size(block_size)
    w = as_weights(weights, n, x.dtype, k)
    init = check_init(init, k, d, x.dtype)
    check_choice("algorithm", algorithm, ALGORITHMS)
    if algorithm == "auto":
        algorithm = choose_algorithm(x, k)
    check_choice("metric", metric, METRICS)
    if metric == "cosine":
        check_unit_normalisable("x", x)
        if not isinstance(init, str):
            check_unit_normalisable("init", init)

    if not isinstance(init, str):
        n_init = 1  # restarts from the same start would be identical
    return _kmeans(
        key,
        x,
        w,
        None if isinstance(init, str) else init,
        jnp.asarray(tol, x.dtype),
        num_clusters=k,
        num_steps=num_steps,
        n_init=n_init,
        init=init if isinstance(init, str) else None,
        block_size=block_size_for(n, k, block_size),
        algorithm=algorithm,
        metric=metric,
    )


def prepare(x, init_centroids, metric):
    """The points as the sweeps see them, the init likewise, and the shift to undo.

    Euclidean: centred, as scikit-learn does (``‖x‖² - 2x·c + ‖c‖²`` in float32 loses
    the distances when the data sit far from the origin; K-Means is
    translation-equivariant). Cosine: unit rows, where ``‖x - c‖² = 2(1 - cos)``.
    """
    if metric == "cosine":
        init_centroids = None if init_centroids is None else unit_rows(init_centroids)
        return unit_rows(x), init_centroids, jnp.zeros(x.shape[1], x.dtype)
    # the mean of the finite rows: a traced NaN point must not make every point NaN
    finite = jnp.all(jnp.isfinite(x), axis=1, keepdims=True)
    mean = jnp.sum(jnp.where(finite, x, 0), axis=0) / jnp.maximum(jnp.sum(finite), 1)
    init_centroids = None if init_centroids is None else init_centroids - mean
    return x - mean, init_centroids, mean


@functools.partial(
    jax.jit,
    static_argnames=("num_clusters", "num_steps", "n_init", "init", "block_size", "algorithm",
                     "metric"),
)  # fmt: skip
def _kmeans(
    key, x, w, init_centroids, tol, *, num_clusters, num_steps, n_init, init, block_size,
    algorithm, metric,
):  # fmt: skip
    """:func:`kmeans` on validated inputs (jitted, so eager calls compile once)."""
    algorithm = _ALGORITHMS[algorithm]
    x, init_centroids, shift = prepare(x, init_centroids, metric)
    xb, wb, x_sq = blocked_points(x, w, block_size)

    keys = key[None] if n_init == 1 else jax.random.split(key, n_init)
    starts = jax.vmap(
        lambda key: initial_centroids(key, x, w, num_clusters, init or init_centroids)
    )(keys)
    state, trace, converged = iterate(
        algorithm, xb, wb, x_sq, starts, num_steps=num_steps, tol=scaled_tolerance(x, tol),
        active=tol > 0, metric=metric,
    )  # fmt: skip
    # the final assignment: the algorithm's state (Hamerly's bounds) carries over
    final, _ = sweep_restarts(algorithm, xb, wb, x_sq, state.centroids, state.labels, state.aux)
    inertia = jax.vmap(exact_inertia, (None, None, 0, 0, None))(
        xb, wb, state.centroids, final.labels, metric
    )
    finite = state.finite & jnp.isfinite(inertia) & all_finite(x, w, init_centroids)
    best = jnp.argmin(jnp.where(finite, inertia, jnp.inf))  # the finite restart of lowest inertia
    status = status_code(converged[best], finite[best])
    return KMeansResult(
        centroids=state.centroids[best] + shift,
        labels=from_blocks(final.labels[best], x.shape[0]),
        inertia=inertia[best],
        inertia_trace=trace[:, best],
        num_steps=state.num_steps[best],
        converged=status == int(Status.SUCCESS),
        status=status,
    )
