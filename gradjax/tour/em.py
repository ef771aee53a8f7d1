"""Tour section: EM as a `lax.scan` loop, K-Means (hard and soft) and pLSA."""

from . import _kmeans, _plsa


def run(report) -> None:
    """K-Means on digits and a sample image, then pLSA on a real and a planted corpus."""
    _kmeans.run(report)
    _plsa.run(report)
