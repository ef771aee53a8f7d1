"""Lloyd's E-step: every point-centroid distance, one row block at a time."""

from __future__ import annotations

from ._blocks import centroid_table, cluster_sums, nearest_exact, per_cluster
from ._sweep import Algorithm, Sweep


def lloyd_sweep(xb, wb, centroids) -> Sweep:
    """Labels by brute force (``‖c‖² - 2x·c`` per block), exact ``‖x - c_a‖²``, sums."""
    table, k = centroid_table(centroids), centroids.shape[0]
    sums, counts, labels, dist = cluster_sums(
        xb, wb, k, lambda x_blk: nearest_exact(x_blk, centroids, table)
    )
    return Sweep(sums, counts, labels, per_cluster(dist, labels, wb, k))


LLOYD = Algorithm(
    start=lambda x_sq, centroids: (),
    sweep=lambda xb, wb, x_sq, centroids, labels, aux: (lloyd_sweep(xb, wb, centroids), ()),
    moved=lambda aux, labels, old, new: (),
)
