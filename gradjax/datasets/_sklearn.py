"""Data shipped by scikit-learn: digits, sample images, Gaussian blobs."""

from __future__ import annotations

import numpy as np

from gradjax._checks import check_int, check_scalar
from gradjax._optional import require


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten 8×8 digits.

    Returns:
      ``(x, y)``: ``x`` float32 (1797, 64), pixel intensities scaled from 0..16 to
      [0, 1] (reshape to (-1, 8, 8) for images); ``y`` int32 (1797,) in 0..9.
    """
    datasets = require("sklearn.datasets", "scikit-learn")
    digits = datasets.load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


def load_sample_image(name: str = "china.jpg") -> np.ndarray:
    """A colour photograph shipped by scikit-learn ("china.jpg" or "flower.jpg").

    Returns:
      uint8 array (427, 640, 3).
    """
    if name not in ("china.jpg", "flower.jpg"):
        raise ValueError(f"name must be 'china.jpg' or 'flower.jpg', got {name!r}")
    datasets = require("sklearn.datasets", "scikit-learn")
    return np.asarray(datasets.load_sample_image(name), dtype=np.uint8)


def make_blobs(
    n_samples: int, centers: int, n_features: int, *, cluster_std: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs (scikit-learn's generator) with known labels.

    Returns:
      ``(x, y)``: ``x`` float32 (n_samples, n_features), ``y`` int32 blob index.
    """
    for name, value in (("n_samples", n_samples), ("centers", centers), ("n_features", n_features)):
        check_int(name, value, 1)
    check_scalar("cluster_std", cluster_std, low=0.0)
    check_int("seed", seed, 0)
    datasets = require("sklearn.datasets", "scikit-learn")
    x, y = datasets.make_blobs(
        n_samples=n_samples,
        centers=centers,
        n_features=n_features,
        cluster_std=cluster_std,
        random_state=seed,
    )
    return x.astype(np.float32), y.astype(np.int32)
