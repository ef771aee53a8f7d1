"""Mini-batch K-Means: the Lloyd oracle, weights, reassignment, the streaming driver, bad input."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from gradjax import Status, em
from gradjax.datasets import make_blobs
from gradjax.em import _minibatch, _stream


def blobs(n=600, k=4, d=2, seed=0, std=1.0):
    x, _ = make_blobs(n, k, d, cluster_std=std, seed=seed)
    return np.asarray(x, np.float32)


def mixed_blobs():
    x = blobs(2100, 8, d=4, seed=5)
    return x[np.random.default_rng(0).permutation(len(x))]


def test_one_update_from_empty_counts_is_one_lloyd_step():
    x = blobs()
    init = x[:4]
    km = em.minibatch_kmeans(4, init=init)
    state = km.update(km.init(jax.random.key(0), x), x)
    labels = np.argmin(((x[:, None] - init[None]) ** 2).sum(-1), 1)  # Lloyd, written out
    assert np.all(np.bincount(labels, minlength=4) > 0)  # no empty cluster: Lloyd repairs none
    lloyd = np.stack([x[labels == j].mean(0) for j in range(4)])
    np.testing.assert_allclose(state.centroids, lloyd, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(state.counts, np.bincount(labels, minlength=4))
    assert int(state.num_updates) == 1


def test_the_update_is_the_per_point_rule_and_integer_weights_are_copies():
    """c_j ← (n_j c_j + Σ w x) / (n_j + Σ w), written out point by point, from a state
    with counts; an integer weight is that many copies of the point."""
    x = blobs(200, 3, seed=1)
    w = np.random.default_rng(0).integers(0, 4, 100)
    with jax.enable_x64(True):
        x = np.asarray(x, np.float64)
        km = em.minibatch_kmeans(3, init=x[:3], reassignment_ratio=0.0)
        state = km.update(km.init(jax.random.key(0), x), x[:100])
        after = km.update(state, x[100:], weights=w)
        c, n = np.array(state.centroids), np.array(state.counts)
        labels = np.argmin(((x[100:, None] - c[None]) ** 2).sum(-1), 1)
        for j in range(3):  # point by point: n += w, c += (w / n)(x - c)
            for xi, wi in zip(x[100:][labels == j], w[labels == j], strict=True):
                if wi:
                    n[j] += wi
                    c[j] += wi / n[j] * (xi - c[j])
        np.testing.assert_allclose(after.centroids, c, rtol=1e-10)
        np.testing.assert_allclose(after.counts, n, rtol=1e-12)
        repeated = km.update(state, np.repeat(x[100:], w, 0))
        np.testing.assert_allclose(repeated.centroids, after.centroids, rtol=1e-12)
        np.testing.assert_allclose(repeated.counts, after.counts, rtol=1e-12)


def test_a_starved_centroid_moves_to_a_batch_point_but_not_at_the_first_update():
    x = blobs(400, 3, seed=3)
    init = np.concatenate([x[:3], [[100.0, 100.0]]]).astype(np.float32)  # the last gets nothing
    km = em.minibatch_kmeans(4, init=init)
    first = km.update(km.init(jax.random.key(0), x), x[:200])
    np.testing.assert_array_equal(first.centroids[3], init[3])  # not at the first update
    second = km.update(first, x[200:])
    moved_to = np.asarray(second.centroids[3])
    assert np.any(np.all(x[200:] == moved_to, axis=1))  # a point of this batch
    # its count is reset to the smallest other count (the others absorbed the batch)
    labels, _ = em.assign(x[200:], first.centroids)
    others = np.asarray(first.counts[:3]) + np.bincount(labels, minlength=4)[:3]
    np.testing.assert_allclose(second.counts[3], others.min())
    # reassignment_ratio=0 disables it
    km0 = em.minibatch_kmeans(4, init=init, reassignment_ratio=0.0)
    state = km0.init(jax.random.key(0), x)
    for part in (x[:200], x[200:]):
        state = km0.update(state, part)
    np.testing.assert_array_equal(state.centroids[3], init[3])


def test_update_compiles_once_per_batch_shape():
    x = mixed_blobs()  # the shapes of the driver test below: its compilations are reused
    km = em.minibatch_kmeans(8)
    state = km.init(jax.random.key(0), x[:300])
    before = _minibatch._update._cache_size()
    for i in range(4):
        state = km.update(state, x[i * 300 : (i + 1) * 300])
    assert _minibatch._update._cache_size() - before <= 1
    # jit == eager (data passed in or closed over): tests/em/test_jit_contract.py
    labels, d2 = km.assign(state, x)
    ref_labels, ref_d2 = em.assign(x, state.centroids)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(d2, ref_d2)


def test_driver_equals_update_per_batch_and_reaches_kmeans_inertia(monkeypatch):
    """Stacked, double-buffered device calls give the per-batch updates' result; three
    passes over well-mixed blobs land within 2% of full K-Means' inertia."""
    x = mixed_blobs()
    monkeypatch.setattr(_stream, "_ROWS_PER_CALL", 600)  # stacks of 2, 2, 2, then 1
    batches = lambda: (x[i : i + 300] for i in range(0, 2100, 300))  # noqa: E731
    state = em.fit_minibatch_kmeans(jax.random.key(0), batches, 8, num_passes=3, progress=False)
    km = em.minibatch_kmeans(8)
    manual = km.init(jax.random.key(0), x[:300])
    for _ in range(3):
        for batch in batches():
            manual = km.update(manual, batch)
    np.testing.assert_allclose(state.centroids, manual.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.counts, manual.counts)
    assert int(state.num_updates) == 21
    full = KMeans(8, n_init=3, random_state=0).fit(np.asarray(x, np.float64))
    _, d2 = em.assign(x, state.centroids)
    assert float(jnp.sum(d2)) <= 1.02 * full.inertia_


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: em.minibatch_kmeans(0), ValueError, "num_clusters"),
        (lambda: em.minibatch_kmeans(2.0), TypeError, "num_clusters"),
        (lambda: em.minibatch_kmeans(2, init="kmeans++"), ValueError, "init"),
        (lambda: em.minibatch_kmeans(2, init=[[0.0]]), TypeError, "init"),
        (lambda: em.minibatch_kmeans(2, reassignment_ratio=-0.1), ValueError, "reassignment_ratio"),
        (lambda: em.minibatch_kmeans(2, reassignment_ratio=1.5), ValueError, "reassignment_ratio"),
        (lambda: em.minibatch_kmeans(2, reassignment_ratio="x"), TypeError, "reassignment_ratio"),
        (lambda: em.minibatch_kmeans(5).init(jax.random.key(0), np.zeros((4, 2))), ValueError,
         "num_clusters"),
        (lambda: em.minibatch_kmeans(2).init(jax.random.key(0), np.zeros(4)), ValueError,
         "x_first"),
        (lambda: em.minibatch_kmeans(2, init=np.zeros((3, 2))).init(jax.random.key(0),
                                                                     np.zeros((4, 2))),
         ValueError, "init"),
        (lambda: em.minibatch_kmeans(2).init(jax.random.key(0), np.full((4, 2), np.nan)),
         ValueError, "finite"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), [np.zeros((4, 2))], 2, tol=1.0),
         TypeError, "unexpected keyword argument 'tol'"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), [np.zeros((4, 2))], 2, num_passes=0),
         ValueError, "num_passes"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), iter([np.zeros((4, 2))]), 2,
                                         num_passes=2), ValueError, "one-shot"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), [], 2), ValueError, "at least one"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), 3, 2), TypeError, "batches"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), [np.zeros(4)], 2), ValueError,
         "2-D"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), [np.ones((4, 2)), np.ones((4, 3))],
                                         2, progress=False), ValueError, "features"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), [np.full((4, 2), np.inf)], 2,
                                         progress=False), ValueError, "finite"),
        (lambda: em.fit_minibatch_kmeans(0, [np.zeros((4, 2))], 2), TypeError,
         "key must be a PRNG key"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), [np.zeros((4, 2))], 2,
                                         reassignment_ratio=np.float32(-1)), ValueError,
         "reassignment_ratio must be finite and >= 0.0 and <= 1.0"),
        (lambda: em.fit_minibatch_kmeans(jax.random.key(0), [np.zeros((0, 2))], 2,
                                         progress=False), ValueError, "at least one row"),
        (lambda: em.minibatch_kmeans(2, reassignment_ratio=jnp.array(2.0)), ValueError,
         "reassignment_ratio"),
        (lambda: em.minibatch_kmeans(2, reassignment_ratio=np.nan), ValueError,
         "reassignment_ratio must be finite"),
        (lambda: em.minibatch_kmeans(jnp.int32(0)), ValueError, "num_clusters must be >= 1"),
        (lambda: em.minibatch_kmeans(2).init(0, np.zeros((4, 2))), TypeError,
         "key must be a PRNG key"),
        (lambda: em.minibatch_kmeans(2).init(jax.random.key(0), np.zeros((0, 2))), ValueError,
         "x_first must be non-empty"),
        (lambda: em.minibatch_kmeans(2, init=np.full((2, 2), np.nan)).init(jax.random.key(0),
                                                                            np.zeros((4, 2))),
         ValueError, "init must be finite"),
    ],
)  # fmt: skip
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_bad_batches_of_update():
    km = em.minibatch_kmeans(2)
    state = km.init(jax.random.key(0), np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="batch must have 3 features"):
        km.update(state, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="batch must be finite"):
        km.update(state, np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="weights"):
        km.update(state, np.zeros((4, 3)), weights=np.ones(3))
    with pytest.raises(TypeError, match="state"):
        km.update(tuple(state), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="x must have 3 features"):
        km.assign(state, np.zeros((4, 2)))  # x of 2 features against centroids of 3
    with pytest.raises(ValueError, match="x must be finite"):
        km.assign(state, np.full((4, 3), np.inf))
    with pytest.raises(ValueError, match="batch must be non-empty"):
        km.update(state, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="weights must be finite"):
        km.update(state, np.zeros((4, 3)), weights=np.array([1, np.nan, 1, 1]))


def test_seeding_uses_the_first_batch_weights():
    """k-means++ on the first batch with its weights (as scikit-learn): the seeds are the
    weighted seeding of em.kmeans_plusplus, so zero-weight rows are never picked."""
    x = blobs(200, 4, seed=4)
    weights = np.where(np.arange(200) % 2 == 0, 0.0, 1.0)
    state = em.minibatch_kmeans(4).init(jax.random.key(0), x, weights=weights)
    seed_key = jax.random.split(jax.random.key(0))[0]
    ref = em.kmeans_plusplus(seed_key, x, 4, weights=weights)
    np.testing.assert_allclose(state.centroids, ref, rtol=1e-6, atol=1e-6)
    rows = [int(np.argmin(np.abs(x - c).sum(1))) for c in np.asarray(state.centroids)]
    assert all(r % 2 == 1 for r in rows), rows


def test_the_state_keeps_its_dtype_and_status():
    """A float64 batch on a float32 state gives a float32 state (lax.scan over update
    needs a carry of fixed type); status is SUCCESS while every update is finite."""
    x = blobs(120, 3, seed=6)
    km = em.minibatch_kmeans(3)
    state = km.init(jax.random.key(0), x)
    with jax.enable_x64(True):
        batches = jnp.asarray(np.asarray(x, np.float64).reshape(4, 30, 2))
        out, _ = jax.lax.scan(lambda s, b: (km.update(s, b), None), state, batches)
    assert out.centroids.dtype == out.counts.dtype == jnp.float32
    assert int(out.status) == Status.SUCCESS and int(out.num_updates) == 4
    int_state = state._replace(centroids=state.centroids.astype(jnp.int32))
    with pytest.raises(TypeError, match=r"state\.centroids and state\.counts must be floating"):
        km.update(int_state, x)


def test_progress_needs_tqdm_only_when_asked_for(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm not installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    x = blobs(40, 2, seed=7)
    quiet = em.fit_minibatch_kmeans(jax.random.key(0), [x], 2)  # default: no bar, no error
    assert int(quiet.num_updates) == 1
    with pytest.raises(ImportError, match=r"gradjax\[examples\]"):
        em.fit_minibatch_kmeans(jax.random.key(0), [x], 2, progress=True)
    with pytest.raises(TypeError, match="progress must be a bool"):
        em.fit_minibatch_kmeans(jax.random.key(0), [x], 2, progress="yes")


def test_an_exhausted_iterator_on_a_later_pass_is_an_error():
    x = blobs(40, 2, seed=7)
    one_generator = (x[i : i + 20] for i in (0, 20))
    with pytest.raises(ValueError, match=r"pass 2 of 2.*fresh iterator"):
        em.fit_minibatch_kmeans(
            jax.random.key(0), lambda: one_generator, 2, num_passes=2, progress=False
        )
