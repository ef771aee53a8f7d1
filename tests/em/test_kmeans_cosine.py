"""Spherical (cosine) K-Means: the written-out iteration, unit centroids, invariances, input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import em
from gradjax.datasets import make_blobs


def directions(n=400, k=4, d=5, seed=0):
    """Blobs around the point (3, ..., 3): distinct directions, all rows far from zero."""
    x, _ = make_blobs(n, k, d, cluster_std=1.0, seed=seed)
    return np.asarray(x, np.float64) + 3.0


def unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_iterates_are_dhillon_modhas_written_out_and_agree_with_euclidean_on_unit_rows():
    x = directions()
    init = x[:4] * np.array([[1.0], [2.0], [0.5], [3.0]])  # an array init is normalised
    with jax.enable_x64(True):
        out = em.kmeans(jax.random.key(0), x, 4, init=init, num_steps=3, tol=0.0, metric="cosine")
        c, steps = unit(init), []
        for _ in range(3):  # assign by the largest cosine, then the normalised sums
            labels = np.argmax(unit(x) @ c.T, axis=1)
            c = unit(np.stack([unit(x)[labels == j].sum(0) for j in range(4)]))
            steps.append(c)
        np.testing.assert_allclose(out.centroids, c, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(out.centroids, axis=1), 1.0, atol=1e-12)
        final = np.argmax(unit(x) @ c.T, axis=1)
        np.testing.assert_array_equal(out.labels, final)
        cos = np.sum(unit(x) * c[final], axis=1)
        np.testing.assert_allclose(out.inertia, np.sum(1 - cos), rtol=1e-10)
        # from unit centroids, the largest cosine is the nearest centroid to the unit row, so
        # one euclidean step on the unit rows has the first spherical centroids' directions
        euclid = em.kmeans(jax.random.key(0), unit(x), 4, init=unit(init), num_steps=1, tol=0.0)
        np.testing.assert_allclose(unit(np.asarray(euclid.centroids)), steps[0], atol=1e-12)


def test_rescaling_the_points_changes_nothing_and_weights_count_as_copies():
    x = directions(300, 3, 4, seed=1)
    scales = np.random.default_rng(0).uniform(0.1, 10.0, (len(x), 1))
    counts = np.random.default_rng(1).integers(0, 3, len(x))
    counts[:3] = 1
    with jax.enable_x64(True):
        fit = lambda x, **kw: em.kmeans(jax.random.key(0), x, 3, init=x[:3], metric="cosine", **kw)  # noqa: E731
        base, scaled = fit(x), fit(x * scales)
        assert int(base.num_steps) > 1
        np.testing.assert_array_equal(scaled.labels, base.labels)
        np.testing.assert_allclose(scaled.centroids, base.centroids, atol=1e-12)
        np.testing.assert_allclose(scaled.inertia, base.inertia, rtol=1e-10)
        weighted = fit(x, weights=counts, tol=0.0)
        repeated = em.kmeans(jax.random.key(0), np.repeat(x, counts, 0), 3, init=x[:3], tol=0.0,
                             metric="cosine")  # fmt: skip
        np.testing.assert_allclose(weighted.centroids, repeated.centroids, atol=1e-12)
        np.testing.assert_allclose(weighted.inertia, repeated.inertia, rtol=1e-10)


def test_a_zero_point_or_zero_init_row_is_an_error_when_concrete():
    x = np.ones((6, 2), np.float32)
    x[2] = 0.0
    with pytest.raises(ValueError, match="x has a zero-norm row"):
        em.kmeans(jax.random.key(0), x, 2, metric="cosine")
    with pytest.raises(ValueError, match="init has a zero-norm row"):
        em.kmeans(jax.random.key(0), np.ones((6, 2)), 2, init=np.zeros((2, 2)), metric="cosine")
    with pytest.raises(ValueError, match="metric"):
        em.kmeans(jax.random.key(0), np.ones((6, 2)), 2, metric="manhattan")
    # traced: a zero row shows as NaN, never as a finite-looking answer
    out = jax.jit(lambda x: em.kmeans(jax.random.key(0), x, 2, metric="cosine"))(jnp.asarray(x))
    assert not np.isfinite(float(out.inertia))
