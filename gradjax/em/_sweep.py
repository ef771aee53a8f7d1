"""The pass interface: what one E-step over all the points gives, for any algorithm.

An algorithm that gives Lloyd's iterates differs from Lloyd only in how it finds
each point's nearest centroid. It is an :class:`Algorithm`: a ``sweep`` that
labels the points and sums them per cluster (a :class:`Sweep`, the M-step's
sufficient statistics), plus whatever per-point state it keeps between sweeps
(``aux``: nothing for Lloyd, distance bounds for Hamerly and Yinyang), created by
``start`` from the initial centroids and updated by ``moved`` once the centroids
have moved. The iteration driver
(``gradjax.em._iterate``), the final assignment and the mini-batch update only
talk to this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class Sweep(NamedTuple):
    """One E-step over blocked points, with the M-step statistics.

    Attributes:
      sums: (k, d), ``Σ_{i: a_i = j} w_i x_i``.
      counts: (k,), ``Σ_{i: a_i = j} w_i``.
      labels: (blocks, rows) int32, each point's nearest centroid ``a_i``.
      cluster_inertia: (k,), ``Σ_{i: a_i = j} w_i ‖x_i - c_j‖²`` (their sum is the
        inertia of these centroids).
    """

    sums: jax.Array
    counts: jax.Array
    labels: jax.Array
    cluster_inertia: jax.Array


Aux = Any


class ClusterSums(NamedTuple):
    """The M-step's sufficient statistics: ``Σ_{a_i=j} w_i x_i`` (k, d) and ``Σ_{a_i=j} w_i``
    (k,)."""

    sums: jax.Array
    counts: jax.Array


class Algorithm(NamedTuple):
    """An E-step strategy that gives Lloyd's labels (see the module docstring).

    Attributes:
      start: ``(x_sq, centroids) -> aux`` for a fresh start from ``centroids``
        (``x_sq`` the blocked ``‖x_i‖²``).
      sweep: ``(xb, wb, x_sq, centroids, labels, aux) -> (Sweep, aux)``; ``labels``
        are the previous sweep's (-1 before the first), for one set of centroids.
      moved: ``(aux, labels, old, new) -> aux`` after the centroids move.
      vmap_restarts: restarts are vmapped (True) or mapped one after another
        (False: ``vmap`` would turn a data-dependent ``cond`` into both branches).
    """

    start: Callable[[jax.Array, jax.Array], Aux]
    sweep: Callable[..., tuple[Sweep, Aux]]
    moved: Callable[..., Aux]
    vmap_restarts: bool = True
