"""K-Means (Lloyd): scikit-learn equality, restarts, weights, repair, transforms, bad input."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from jax.experimental import sparse
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from gradjax import Status, em
from gradjax.datasets import load_digits, make_blobs
from gradjax.em import _blocks, _hamerly, _kmeans, _yinyang

KEY = jax.random.key(0)


@functools.cache
def digits64():
    """Digits in float64 with a 1e-3 jitter: the raw pixels are multiples of 1/16, so
    exact distance ties are common and their rounding-dependent resolution differs."""
    x, _ = load_digits()
    return np.asarray(x, np.float64) + 1e-3 * np.random.default_rng(1).normal(size=x.shape)


def sklearn_lloyd(x, init, num_steps, tol=0.0, weights=None):
    model = KMeans(len(init), init=init, n_init=1, algorithm="lloyd", max_iter=num_steps, tol=tol)
    return model.fit(x, sample_weight=weights)


# ----------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize(
    ("tol", "weighted", "algorithm"),
    [(0.0, False, "lloyd"), (0.0, True, "lloyd"), (1e-4, False, "lloyd"), (1e-4, True, "lloyd"),
     (0.0, False, "hamerly"), (1e-4, True, "hamerly")],
)  # fmt: skip
def test_equals_sklearn_lloyd_from_the_same_init(tol, weighted, algorithm):
    x = digits64()
    rng = np.random.default_rng(0)
    init = x[rng.choice(len(x), 10, replace=False)]
    weights = rng.uniform(0.5, 2.0, len(x)) if weighted else np.ones(len(x))
    ref = sklearn_lloyd(x, init, 30, tol=tol, weights=weights if weighted else None)
    with jax.enable_x64(True):
        out = em.kmeans(
            jax.random.key(0), x, 10, init=init, num_steps=30, tol=tol, weights=weights,
            algorithm=algorithm,
        )  # fmt: skip
        np.testing.assert_allclose(out.centroids, ref.cluster_centers_, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(out.labels, ref.labels_)
        np.testing.assert_allclose(out.inertia, ref.inertia_, rtol=1e-10)
        assert out.labels.dtype == jnp.int32
        assert out.inertia_trace.shape == (30,)
        if tol > 0:
            assert int(out.num_steps) == ref.n_iter_
            assert bool(out.converged) and int(out.status) == Status.SUCCESS
        else:  # tol=0 runs every iteration
            assert int(out.num_steps) == 30
            assert not bool(out.converged) and int(out.status) == Status.MAX_STEPS


def test_digits_with_restarts_within_one_percent_of_sklearn():
    x, _ = load_digits()
    ref = KMeans(10, n_init=10, random_state=0).fit(np.asarray(x, np.float64))
    out = em.kmeans(jax.random.key(0), x, 10, n_init=10)
    assert out.centroids.dtype == jnp.float32
    assert float(out.inertia) <= 1.01 * ref.inertia_
    # the winner is the restart of lowest inertia: no single restart beats it
    singles = [
        float(em.kmeans(key, x, 10).inertia) for key in jax.random.split(jax.random.key(0), 10)
    ]
    np.testing.assert_allclose(float(out.inertia), min(singles), rtol=1e-5)


@pytest.mark.parametrize("algorithm", ["lloyd", "hamerly"])
def test_empty_cluster_takes_the_farthest_point_as_sklearn(algorithm):
    x = digits64()[:300]
    init = np.concatenate([x[:4], np.full((1, x.shape[1]), 100.0)])  # the last one stays empty
    ref = sklearn_lloyd(x, init, 20)
    with jax.enable_x64(True):
        out = em.kmeans(
            jax.random.key(0), x, 5, init=init, num_steps=20, tol=0.0, algorithm=algorithm
        )
        np.testing.assert_allclose(out.centroids, ref.cluster_centers_, atol=1e-10)
        np.testing.assert_array_equal(out.labels, ref.labels_)
        assert np.all(np.bincount(np.asarray(out.labels), minlength=5) > 0)


# ----------------------------------------------------------------------------- the E-step


@pytest.mark.parametrize("k", [5, 64, 70, 150])  # one step, exact steps, padded steps
def test_nearest_is_brute_force_with_first_index_on_ties(k):
    """The running (min, second, argmin) over steps of 64 centroids: labels are the
    first argmin of ‖c‖² - 2x·c (a duplicated centroid never wins over its first
    copy), the second value is the second smallest, and padding never wins."""
    rng = np.random.default_rng(k)
    x, c = rng.normal(size=(300, 6)), rng.normal(size=(k, 6))
    c[-1] = c[0]  # a tie: the first copy must win
    with jax.enable_x64(True):
        table = _blocks.centroid_table(jnp.asarray(c))
        label, second = _blocks.nearest(jnp.asarray(x), table, second=True)
        part = (c * c).sum(1)[None] - 2 * x @ c.T
        np.testing.assert_array_equal(label, part.argmin(1))
        np.testing.assert_allclose(second, np.sort(part, 1)[:, 1], rtol=1e-12, atol=1e-12)
        assert not np.any(np.asarray(label) == k - 1)
        label_only, none = _blocks.nearest(jnp.asarray(x), table)
        np.testing.assert_array_equal(label_only, label)
        assert np.all(np.isinf(np.asarray(none)))


# ----------------------------------------------------------------------------- Hamerly


@pytest.mark.parametrize("search_all_above", [0.3, 2.0])  # the default / gather from the start
def test_hamerly_and_auto_give_lloyds_iterates_with_either_search(
    monkeypatch, request, search_all_above
):
    """Blobs in float64 with 150 rows per block: several gathered chunks and padding."""
    monkeypatch.setattr(_hamerly, "_SEARCH_ALL_ABOVE", search_all_above)
    jax.clear_caches()  # the threshold is read when tracing: no program compiled with another
    request.addfinalizer(jax.clear_caches)
    x, _ = make_blobs(1003, 70, 5, cluster_std=2.0, seed=3)  # 70 clusters: groups of 16
    init = np.asarray(x[:70], np.float64)
    with jax.enable_x64(True):
        x64 = np.asarray(x, np.float64)
        fit = functools.partial(em.kmeans, jax.random.key(0), x64, 70, init=init, num_steps=15,
                                tol=0.0, block_size=150)  # fmt: skip
        lloyd, hamerly = fit(algorithm="lloyd"), fit(algorithm="hamerly")
        monkeypatch.setattr(_kmeans, "_BOUNDS_FROM_PAIRS", 0)  # "auto" takes hamerly
        auto = fit()
        for out in (hamerly, auto):
            np.testing.assert_allclose(out.centroids, lloyd.centroids, rtol=0, atol=1e-10)
            np.testing.assert_array_equal(out.labels, lloyd.labels)
            np.testing.assert_allclose(out.inertia_trace, lloyd.inertia_trace, rtol=1e-10)
            np.testing.assert_allclose(out.inertia, lloyd.inertia, rtol=1e-10)


def test_auto_takes_bounds_for_many_point_centroid_pairs_only():
    assert _kmeans.choose_algorithm(np.empty((1797, 64)), 10) == "lloyd"  # digits
    cpu = jax.default_backend() == "cpu"
    assert _kmeans.choose_algorithm(np.empty((100_000, 16)), 64) == ("hamerly" if cpu else "lloyd")
    assert _kmeans.choose_algorithm(np.empty((200_000, 64)), 256) == ("hamerly" if cpu else "lloyd")


def test_hamerly_pass_searches_only_what_the_bounds_leave_open(monkeypatch):
    """With valid bounds the labels are brute force's; a point whose (wrong) bounds claim
    it is decided keeps its label, so the bounds are really what skips the search. The
    statistics given for the stale labels come out as those of the new labels."""
    monkeypatch.setattr(_hamerly, "_SEARCH_ALL_ABOVE", 2.0)  # gather even half the points
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    c = rng.normal(size=(5, 3))
    w = rng.uniform(0.5, 2.0, 64)
    dist = np.sqrt(((x[:, None] - c[None]) ** 2).sum(-1))
    order = np.argsort(dist, 1)
    nearest, second = order[:, 0], np.take_along_axis(dist, order[:, 1:2], 1)[:, 0]
    stale = ((nearest + 1) % 5).astype(np.int32)  # wrong labels

    def statistics(labels):
        sums = np.stack([(w[labels == j, None] * x[labels == j]).sum(0) for j in range(5)])
        counts = np.bincount(labels, w, minlength=5)
        inertia = np.bincount(labels, w * dist[np.arange(64), labels] ** 2, minlength=5)
        return sums, counts, inertia

    with jax.enable_x64(True):
        decided = np.arange(64) < 32  # the first half: bounds that (wrongly) decide
        upper = np.where(decided, 0.0, dist[np.arange(64), stale] + 1.0)[None]
        lower = np.where(decided, 1e9, 0.0)[None]
        bounds = jax.tree.map(jnp.asarray, _hamerly.Bounds(upper, lower, *statistics(stale)))
        args = (x[None], w[None], (x * x).sum(1)[None], c, stale[None])
        labels, out = _hamerly.hamerly_pass(*map(jnp.asarray, args), bounds)
        labels, low = np.asarray(labels)[0], np.asarray(out.lower)[0]
        np.testing.assert_array_equal(labels[32:], nearest[32:])
        np.testing.assert_allclose(low[32:], second[32:], rtol=1e-10)
        np.testing.assert_allclose(out.upper[0, 32:], dist[np.arange(32, 64), nearest[32:]])
        np.testing.assert_array_equal(labels[:32], stale[:32])
        for got, want in zip(out[2:], statistics(labels), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_moved_statistics_are_those_of_the_moved_centroids():
    """Σ w‖x - c⁺‖² per cluster follows from the old one, the sums and the weights."""
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(40, 3)), rng.uniform(0.5, 2.0, 40)
    labels, old = rng.integers(0, 4, 40, dtype=np.int32), rng.normal(size=(4, 3))
    new = old + rng.normal(size=(4, 3))

    def inertia(c):
        return np.bincount(labels, w * ((x - c[labels]) ** 2).sum(1), minlength=4)

    sums = np.stack([(w[labels == j, None] * x[labels == j]).sum(0) for j in range(4)])
    with jax.enable_x64(True):
        zeros = jnp.zeros((1, 40))
        statistics = sums, np.bincount(labels, w, minlength=4), inertia(old)
        bounds = _hamerly.Bounds(zeros, zeros, *map(jnp.asarray, statistics))
        moved = _hamerly.move_bounds(bounds, jnp.asarray(labels[None]), old, new)
        np.testing.assert_allclose(moved.cluster_inertia, inertia(new), rtol=1e-12)


# ----------------------------------------------------------------------------- Yinyang


def test_yinyang_gives_lloyds_iterates_with_weights_and_restarts():
    """Blobs in float64, 70 clusters in 7 groups of 10, 150 rows per block, 2 restarts
    from random starts (the same keys, so the same starts): the first sweeps search
    every point, the later ones gather the open points in chunks."""
    x, _ = make_blobs(1003, 70, 5, cluster_std=2.0, seed=3)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(x))
    with jax.enable_x64(True):
        x64 = np.asarray(x, np.float64)
        fit = functools.partial(em.kmeans, jax.random.key(0), x64, 70, init="random", n_init=2,
                                num_steps=15, tol=0.0, block_size=150, weights=weights)  # fmt: skip
        lloyd, yinyang = fit(algorithm="lloyd"), fit(algorithm="yinyang")
        np.testing.assert_allclose(yinyang.centroids, lloyd.centroids, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(yinyang.labels, lloyd.labels)
        np.testing.assert_allclose(yinyang.inertia_trace, lloyd.inertia_trace, rtol=1e-10)
        np.testing.assert_allclose(yinyang.inertia, lloyd.inertia, rtol=1e-10)


def test_groups_are_equal_runs_of_all_centroids():
    c = jax.random.normal(jax.random.key(0), (70, 3))
    order, group_of = jax.jit(_yinyang.group_centroids)(c)
    t, g = _yinyang.group_shape(70)
    assert (t, g) == (7, 10)
    np.testing.assert_array_equal(np.sort(np.asarray(order)), np.arange(70))
    np.testing.assert_array_equal(np.asarray(group_of)[np.asarray(order)], np.arange(70) // 10)
    assert _yinyang.group_shape(256) == (26, 10)  # 260 columns, the last group of 6
    assert _yinyang.group_shape(4) == (1, 4)


def test_yinyang_bounds_skip_only_what_they_may():
    """Exact bounds moved by the true centroid shifts: a centroid moved onto a point of
    another cluster takes it (its group's bound drops, so the point is searched); a
    point whose (wrong) bounds claim it is decided keeps its label."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    c = rng.normal(size=(25, 3))  # 2 groups of 13 (one padding column)
    with jax.enable_x64(True):
        xb, wb = jnp.asarray(x[None]), jnp.ones((1, 64))
        x_sq = jnp.sum(xb * xb, -1)
        order, group_of = _yinyang.group_centroids(jnp.asarray(c))
        first, lower = jax.jit(_yinyang.search_all)(xb, wb, x_sq, jnp.asarray(c), order)
        brute = ((x[:, None] - c[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(first.labels[0], brute.argmin(1))
        assert _yinyang.group_shape(25) == (2, 13)
        for grp in range(2):  # exact group bounds: nearest member other than the label
            members = np.asarray(group_of) == grp
            masked = np.where(members[None] & (np.arange(25) != brute.argmin(1)[:, None]),
                              brute, np.inf)  # fmt: skip
            np.testing.assert_allclose(lower[0, grp], np.sqrt(masked.min(1)), rtol=1e-10)
        target = int(np.flatnonzero(brute.argmin(1) != 0)[0])
        new_c = c.copy()
        new_c[0] = x[target] + 1e-3  # centroid 0 jumps next to a point it did not own
        upper, lower = _yinyang.move_bounds(
            jnp.sqrt(first.sq_distances), lower, first.labels, group_of, jnp.asarray(c),
            jnp.asarray(new_c),
        )  # fmt: skip
        args = (xb, wb, x_sq, jnp.asarray(new_c), first.labels, upper, lower, order)
        yinyang_pass = jax.jit(_yinyang.yinyang_pass)
        sweep, _ = yinyang_pass(*args)
        brute = ((x[:, None] - new_c[None]) ** 2).sum(-1)
        assert int(sweep.labels[0, target]) == 0
        np.testing.assert_array_equal(sweep.labels[0], brute.argmin(1))
        np.testing.assert_allclose(sweep.sq_distances[0], brute.min(1), rtol=1e-10)
        np.testing.assert_allclose(sweep.counts, np.bincount(brute.argmin(1), minlength=25))
        np.testing.assert_allclose(
            sweep.sums, jax.ops.segment_sum(x, brute.argmin(1), 25), rtol=1e-10, atol=1e-12
        )
        # bounds that (wrongly) decide every point keep the stale labels: no search ran
        stale = (first.labels + 1) % 25
        sweep, _ = yinyang_pass(
            xb, wb, x_sq, jnp.asarray(new_c), stale, jnp.zeros_like(upper),
            jnp.full_like(lower, 1e9), order,
        )  # fmt: skip
        np.testing.assert_array_equal(sweep.labels, stale)


def test_hamerly_restarts_and_vmap_equal_lloyd():
    x, _ = make_blobs(300, 4, 2, seed=7)
    lloyd = em.kmeans(jax.random.key(0), x, 4, n_init=3)
    # vmapped over [x, x + 1]: the cond inside becomes a select; K-Means is translation-equivariant
    fit = lambda x: em.kmeans(jax.random.key(0), x, 4, n_init=3, algorithm="hamerly")  # noqa: E731
    batched = jax.vmap(fit)(jnp.stack([x, x + 1.0]))
    for i in range(2):
        np.testing.assert_allclose(batched.centroids[i], lloyd.centroids + i, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(batched.labels[i], lloyd.labels)
        assert int(batched.num_steps[i]) == int(lloyd.num_steps)
    single = em.kmeans(jax.random.key(0), x, 1, algorithm="hamerly")  # one centroid: no gaps
    np.testing.assert_allclose(single.centroids[0], jnp.mean(x, 0), rtol=1e-5)


# ----------------------------------------------------------------------------- the math


def test_inertia_never_increases_and_matches_a_final_assignment():
    x, _ = load_digits()
    out = em.kmeans(jax.random.key(3), x, 12, init="random", num_steps=40, tol=0.0)
    trace = np.asarray(out.inertia_trace, np.float64)
    assert np.all(np.diff(trace) <= 1e-6 * trace[0])
    labels, dist = em.assign(x, out.centroids)
    np.testing.assert_array_equal(out.labels, labels)
    np.testing.assert_allclose(out.inertia, jnp.sum(dist), rtol=1e-6)
    assert float(out.inertia) <= trace[-1] * (1 + 1e-6)


def test_data_far_from_the_origin_keep_their_float32_clustering():
    """Translation-equivariance in float32: ‖x‖² - 2x·c + ‖c‖² at ‖x‖ ~ 4e4 would lose
    the distances (rounding ~ 1e-7·‖x‖² ≈ 160 vs squared distances ~ 8) without centring."""
    x, _ = make_blobs(2000, 20, 4, cluster_std=1.0, seed=8)
    near = em.kmeans(jax.random.key(0), x, 20, init=x[:20], num_steps=30, tol=0.0)
    far = em.kmeans(jax.random.key(0), x + 2e4, 20, init=x[:20] + 2e4, num_steps=30, tol=0.0)
    np.testing.assert_array_equal(far.labels, near.labels)
    np.testing.assert_allclose(far.centroids, near.centroids + 2e4, rtol=0, atol=1e-2)
    np.testing.assert_allclose(far.inertia, near.inertia, rtol=1e-3)
    labels, _ = em.assign(x + 2e4, near.centroids + 2e4)
    np.testing.assert_array_equal(labels, near.labels)


def test_blob_recovery():
    x, y = make_blobs(600, 4, 3, cluster_std=0.5, seed=1)
    out = em.kmeans(jax.random.key(0), x, 4, n_init=3)
    assert adjusted_rand_score(np.asarray(y), np.asarray(out.labels)) == 1.0


def test_integer_weights_equal_repeated_points():
    x, _ = make_blobs(200, 3, 2, seed=2)
    counts = np.random.default_rng(0).integers(0, 4, len(x))
    counts[:3] = 1
    init = np.asarray(x[:3])
    with jax.enable_x64(True):
        x64 = np.asarray(x, np.float64)
        weighted = em.kmeans(jax.random.key(0), x64, 3, init=init, weights=counts, tol=0.0)
        repeated = em.kmeans(jax.random.key(0), np.repeat(x64, counts, 0), 3, init=init, tol=0.0)
        np.testing.assert_allclose(weighted.centroids, repeated.centroids, atol=1e-12)
        np.testing.assert_allclose(weighted.inertia, repeated.inertia, rtol=1e-12)
        np.testing.assert_array_equal(np.repeat(weighted.labels, counts), repeated.labels)


def test_blocks_and_padding_do_not_change_the_result():
    x, _ = make_blobs(1003, 5, 3, seed=4)  # 1003 rows: the blocks need padding
    whole = em.kmeans(jax.random.key(0), x, 5, num_steps=10, tol=0.0, init=x[:5])
    blocked = em.kmeans(jax.random.key(0), x, 5, num_steps=10, tol=0.0, init=x[:5], block_size=96)
    np.testing.assert_allclose(whole.centroids, blocked.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(whole.labels, blocked.labels)
    labels, dist = em.assign(x, whole.centroids, block_size=100)
    brute = np.sum((np.asarray(x)[:, None] - np.asarray(whole.centroids)[None]) ** 2, -1)
    np.testing.assert_array_equal(labels, np.argmin(brute, 1))
    np.testing.assert_allclose(dist, np.min(brute, 1), rtol=1e-5, atol=1e-5)


def test_kmeans_plusplus_picks_distinct_weighted_points():
    x, _ = make_blobs(50, 3, 2, seed=5)
    weights = np.ones(50)
    weights[::2] = 0.0
    c = em.kmeans_plusplus(jax.random.key(0), x, 25, weights=weights)
    picked = [int(np.flatnonzero(np.all(np.asarray(x) == row, 1))[0]) for row in np.asarray(c)]
    assert sorted(picked) == list(range(1, 50, 2))  # every positive-weight point, once
    # greedy seeding on well-separated blobs takes one point per blob
    x, y = make_blobs(300, 5, 2, cluster_std=0.1, seed=6)
    seeds, _ = em.assign(em.kmeans_plusplus(jax.random.key(1), x, 5), x)
    assert len(set(np.asarray(y)[np.asarray(seeds)])) == 5


# ----------------------------------------------------------------------------- transforms


def test_jit_does_not_retrace():
    """(jit == eager, data passed in or closed over, restarts included: test_jit_contract.py)"""
    x, _ = make_blobs(300, 3, 2, seed=7)

    @functools.partial(jax.jit, static_argnums=2)
    @chex.assert_max_traces(n=1)
    def fit(key, x, k):
        return em.kmeans(key, x, k, n_init=2)

    fit(jax.random.key(0), x, 3)
    fit(jax.random.key(1), x + 1.0, 3)  # a second trace would raise


def test_vmap_over_problems_equals_a_loop():
    xs = jnp.stack([make_blobs(120, 3, 2, seed=s)[0] for s in range(3)])
    starts = xs[:, :3] + 0.1
    batched = jax.vmap(lambda x, c: em.kmeans(jax.random.key(0), x, 3, init=c))(xs, starts)
    for i in range(3):
        single = em.kmeans(jax.random.key(0), xs[i], 3, init=starts[i])
        np.testing.assert_allclose(batched.centroids[i], single.centroids, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(batched.labels[i], single.labels)


# ----------------------------------------------------------------------------- integer input
# (traced NaN and Inf, and jit with data passed in or closed over: test_jit_contract.py)


def test_assign_accepts_integer_centroids():
    x = np.array([[0.0, 0.2], [4.0, 5.2], [0.1, 0.0]], np.float32)
    labels, d2 = em.assign(x, [[0, 0], [5, 5]])
    np.testing.assert_array_equal(labels, [0, 1, 0])
    assert d2.dtype == jnp.float32
    np.testing.assert_allclose(d2, [0.04, 1.04, 0.01], rtol=1e-5)
    # concrete JAX and NumPy ints as num_clusters/num_steps: tests/em/test_jit_contract.py


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"num_clusters": 11}, ValueError, "num_clusters"),
        ({"num_clusters": 0}, ValueError, "num_clusters"),
        ({"num_clusters": 2.0}, TypeError, "num_clusters"),
        ({"x": np.zeros(10)}, ValueError, "x must be a 2-D"),
        ({"x": np.zeros((10, 2), np.complex64)}, TypeError, "x must be"),
        ({"x": np.full((10, 2), np.nan)}, ValueError, "x must be finite"),
        ({"weights": np.ones(9)}, ValueError, "weights"),
        ({"weights": -np.ones(10)}, ValueError, "weights"),
        ({"weights": np.zeros(10)}, ValueError, "weights"),
        ({"init": "kmeans++"}, ValueError, "init"),
        ({"init": np.zeros((3, 2))}, ValueError, "init"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"num_steps": -1}, ValueError, "num_steps"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"algorithm": "elkan"}, ValueError, "algorithm"),
        ({"metric": "l1"}, ValueError, "metric"),
        ({"key": 0}, TypeError, "key must be a PRNG key"),
        ({"key": jax.random.split(KEY)}, ValueError, "key must be a single PRNG key"),
        ({"x": np.zeros((0, 2))}, ValueError, "x must be non-empty"),
        ({"x": np.zeros((10, 0))}, ValueError, "x must be non-empty"),
        ({"x": [["a", "b"]] * 10}, TypeError, "x must be a real"),
        ({"x": np.ones((10, 2), bool)}, TypeError, "x must be a real .int or floating. array"),
        ({"weights": np.ones(10, bool)}, TypeError, "weights must be a real"),
        ({"init": np.ones((2, 2), bool)}, TypeError, "init must be a real"),
        ({"init": np.array([[np.nan, 0.0], [1.0, 1.0]])}, ValueError, "init must be finite"),
        ({"init": jnp.array([[0.0, 0.0], [jnp.inf, 1.0]])}, ValueError, "init must be finite"),
        ({"weights": np.array([np.nan] + [1.0] * 9)}, ValueError, "weights must be finite"),
        ({"num_clusters": jnp.int32(0)}, ValueError, "num_clusters must be >= 1"),
        ({"num_clusters": jnp.float32(2)}, TypeError, "num_clusters must be an int"),
        ({"num_steps": 2.5}, TypeError, "num_steps must be an int"),
        ({"tol": np.float32(-1)}, ValueError, "tol must be finite and >= 0"),
        ({"tol": jnp.array(-1.0)}, ValueError, "tol must be finite and >= 0"),
        ({"tol": np.nan}, ValueError, "tol must be finite"),
        ({"tol": "1e-4"}, TypeError, "tol must be a real scalar, got str"),
        ({"tol": None}, TypeError, "tol must be a real scalar"),
        ({"block_size": 0}, ValueError, "block_size"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, name):
    args = {"key": KEY, "x": np.zeros((10, 2), np.float32), "num_clusters": 2} | kwargs
    with pytest.raises(error, match=name):
        em.kmeans(args.pop("key"), args.pop("x"), args.pop("num_clusters"), **args)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_one_key_gives_the_same_seeds_for_float32_and_float64_data(init):
    """The draws are made in float32 whatever the data's dtype (num_steps=0 returns the
    start), and kmeans_plusplus returns rows of x itself."""
    x, _ = make_blobs(120, 6, 3, seed=9)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, 120)
    with jax.enable_x64(True):
        x32, x64 = np.asarray(x, np.float32), np.asarray(x, np.float64)
        for key in jax.random.split(jax.random.key(4), 2):
            fit = lambda x: em.kmeans(key, x, 6, init=init, num_steps=0, weights=weights)  # noqa: E731,B023
            # the same rows (float32 rounding of the centring aside)
            np.testing.assert_allclose(fit(x64).centroids, fit(x32).centroids, rtol=1e-6, atol=1e-5)
        seeds32 = em.kmeans_plusplus(jax.random.key(1), x32, 6, weights=weights)
        seeds64 = em.kmeans_plusplus(jax.random.key(1), x64, 6, weights=weights)
        assert seeds64.dtype == jnp.float64
        np.testing.assert_array_equal(seeds32, np.float32(seeds64))
        assert all(np.any(np.all(x64 == row, 1)) for row in np.asarray(seeds64))


SPARSE = {
    "csr": lambda a: scipy.sparse.csr_matrix(np.asarray(a)),
    "bcoo": lambda a: sparse.BCOO.fromdense(jnp.asarray(a)),
}
DENSE = np.eye(4, 2, dtype=np.float32)
MB = em.minibatch_kmeans(2)


@pytest.mark.parametrize("kind", SPARSE)
@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("x", lambda s: em.kmeans(KEY, s, 2)),
        ("x", lambda s: em.soft_kmeans(KEY, s, 2, stiffness=1.0)),
        ("x", lambda s: em.kmeans_plusplus(KEY, s, 2)),
        ("x", lambda s: em.assign(s, DENSE[:2])),
        ("centroids", lambda s: em.assign(DENSE, s)),
        ("init", lambda s: em.kmeans(KEY, DENSE, 4, init=s)),
        ("x_first", lambda s: MB.init(KEY, s)),
        ("batch", lambda s: MB.update(MB.init(KEY, DENSE), s)),
        ("each batch", lambda s: em.fit_minibatch_kmeans(KEY, [s], 2, progress=False)),
    ],
)  # fmt: skip
def test_a_sparse_matrix_is_a_type_error_asking_for_dense_input(kind, name, call):
    with pytest.raises(TypeError, match=f"{name} must be a dense array .dense input is required"):
        call(SPARSE[kind](DENSE))


def test_a_step_to_nan_centroids_is_refused_and_flagged():
    """A traced NaN point (label 0 by the E-step's rule) would make centroid 0 NaN: the
    step is refused, the start comes back, the status is NONFINITE."""
    x, _ = make_blobs(60, 3, 2, seed=2)
    x, init = np.asarray(x, np.float32), np.asarray(x[:3], np.float32)
    x[5] = np.nan
    out = jax.jit(lambda x: em.kmeans(KEY, x, 3, init=init, algorithm="lloyd"))(x)
    assert int(out.status) == Status.NONFINITE and not bool(out.converged)
    np.testing.assert_array_equal(out.centroids, init)
    assert int(out.num_steps) == 0


def test_a_traced_num_clusters_is_a_type_error():
    with pytest.raises(TypeError, match="num_clusters must be a static"):
        jax.jit(lambda k: em.kmeans(KEY, np.zeros((10, 2)), k))(jnp.int32(2))


X4 = np.zeros((4, 2), np.float32)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: em.assign(X4, np.zeros((2, 3))), ValueError,
         r"centroids must have shape \(k >= 1, 2\), got \(2, 3\)"),
        (lambda: em.assign(X4, np.zeros((0, 2))), ValueError, "centroids must have shape"),
        (lambda: em.assign(X4, np.zeros(2)), ValueError, "centroids must be a 2-D array"),
        (lambda: em.assign(X4, [[0.0], [1.0, 2.0]]), TypeError, "centroids must be a real array"),
        (lambda: em.assign(X4, np.zeros((2, 2), np.complex64)), TypeError,
         "centroids must be a real"),
        (lambda: em.assign(X4, np.array([[np.nan, 0], [1, 1]])), ValueError,
         "centroids must be finite"),
        (lambda: em.assign(X4[:0], np.zeros((2, 2))), ValueError, "x must be non-empty"),
        (lambda: em.assign(np.zeros(4), np.zeros((2, 2))), ValueError, "x must be a 2-D"),
        (lambda: em.assign(np.full((4, 2), np.nan), np.zeros((2, 2))), ValueError,
         "x must be finite"),
        (lambda: em.assign(X4, np.zeros((2, 2)), block_size=0), ValueError, "block_size"),
        (lambda: em.kmeans_plusplus(0, X4, 2), TypeError, "key must be a PRNG key"),
        (lambda: em.kmeans_plusplus(KEY, X4, 5), ValueError, "num_clusters"),
        (lambda: em.kmeans_plusplus(KEY, X4, 2.0), TypeError, "num_clusters must be an int"),
        (lambda: em.kmeans_plusplus(KEY, X4, 2, num_trials=0), ValueError, "num_trials"),
        (lambda: em.kmeans_plusplus(KEY, X4[:0], 1), ValueError, "x must be non-empty"),
        (lambda: em.kmeans_plusplus(KEY, X4 + np.inf, 2), ValueError, "x must be finite"),
        (lambda: em.kmeans_plusplus(KEY, X4, 2, weights=np.array([1, np.nan, 1, 1])),
         ValueError, "weights must be finite"),
    ],
)  # fmt: skip
def test_bad_input_of_assign_and_kmeans_plusplus(call, error, words):
    with pytest.raises(error, match=words):
        call()
