"""Soft K-Means: the surrogate of the EM derivation, monotonicity, the Lloyd limit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import Status, em
from gradjax.datasets import make_blobs

KEY = jax.random.key(0)


def sq_distances(x, c):
    return jnp.sum((x[:, None, :] - c[None, :, :]) ** 2, axis=-1)


def smoothed_objective(c, x, stiffness):
    """L_M(c) = -1/M Σ_i log Σ_j exp(-M ‖x_i - c_j‖²), written out independently."""
    return -jnp.sum(jax.nn.logsumexp(-stiffness * sq_distances(x, c), axis=1)) / stiffness


def surrogate(c, c_now, x, stiffness):
    """L' = Σ_ij C_ij ‖x_i - c_j‖² with C = softmax_j(-M d_ij) frozen at c_now."""
    resp = jax.lax.stop_gradient(jax.nn.softmax(-stiffness * sq_distances(x, c_now), axis=1))
    return jnp.sum(resp * sq_distances(x, c))


def problem(seed=0, n=90, k=3):
    x, _ = make_blobs(n, k, 2, cluster_std=1.5, seed=seed)
    x = np.asarray(x, np.float64)
    return x, x[:k] + 0.1


def test_surrogate_gradient_equals_true_gradient_at_the_current_point():
    x, c0 = problem()
    with jax.enable_x64(True):
        for stiffness in (0.1, 1.0, 10.0):
            true = jax.grad(smoothed_objective)(c0, x, stiffness)
            sur = jax.grad(surrogate)(c0, c0, x, stiffness)
            np.testing.assert_allclose(sur, true, rtol=1e-10, atol=1e-12)
            # and the closed form of the derivation: Σ_i 2 C_ij (c_j - x_i)
            resp = jax.nn.softmax(-stiffness * sq_distances(x, c0), axis=1)
            closed = 2 * (resp.sum(0)[:, None] * c0 - resp.T @ x)
            np.testing.assert_allclose(closed, true, rtol=1e-10, atol=1e-12)


def test_one_step_is_the_argmin_of_the_surrogate():
    x, c0 = problem(1)
    with jax.enable_x64(True):
        out = em.soft_kmeans(jax.random.key(0), x, 3, stiffness=0.5, num_steps=1, init=c0, tol=0)
        grad_at_new = jax.grad(surrogate)(out.centroids, c0, x, 0.5)
        np.testing.assert_allclose(grad_at_new, 0.0, atol=1e-10)
        np.testing.assert_allclose(out.inertia_trace[0], smoothed_objective(c0, x, 0.5), rtol=1e-12)


def test_smoothed_objective_never_increases():
    x, c0 = problem(2, n=300, k=4)
    with jax.enable_x64(True):
        out = em.soft_kmeans(jax.random.key(0), x, 4, stiffness=0.3, num_steps=40, init=c0, tol=0)
        trace = np.asarray(out.inertia_trace)
        assert np.all(np.diff(trace) <= 1e-10 * abs(trace[0]))
        assert trace[-1] < trace[0]
        final = smoothed_objective(out.centroids, x, 0.3)
        assert final <= trace[-1] + 1e-10 * abs(trace[0])


def test_large_stiffness_reproduces_lloyd():
    x, c0 = problem(3, n=200, k=3)
    with jax.enable_x64(True):
        for num_steps in (1, 5):
            soft = em.soft_kmeans(
                jax.random.key(0), x, 3, stiffness=1e6, num_steps=num_steps, init=c0, tol=0
            )
            hard = em.kmeans(jax.random.key(0), x, 3, num_steps=num_steps, init=c0, tol=0)
            np.testing.assert_allclose(soft.centroids, hard.centroids, rtol=1e-10, atol=1e-10)
            np.testing.assert_array_equal(soft.labels, hard.labels)
            np.testing.assert_allclose(soft.inertia, hard.inertia, rtol=1e-10)


def test_converges_and_works_under_jit_and_vmap():
    x, _ = make_blobs(120, 3, 2, seed=4)
    eager = em.soft_kmeans(jax.random.key(0), x, 3, stiffness=2.0)
    assert bool(eager.converged) and int(eager.num_steps) < 100
    assert eager.labels.dtype == jnp.int32
    xs = jnp.stack([x, x[::-1] + 1.0])
    starts = jnp.stack([x[:3], x[:3] + 0.5])

    def fit(x, c):
        return em.soft_kmeans(jax.random.key(0), x, 3, stiffness=2.0, init=c)

    batched = jax.jit(jax.vmap(fit))(xs, starts)
    for i in range(2):  # vmap == a loop of eager calls
        single = fit(xs[i], starts[i])
        np.testing.assert_allclose(batched.centroids[i], single.centroids, rtol=1e-5, atol=1e-5)
        assert int(batched.num_steps[i]) == int(single.num_steps)


def test_large_stiffness_on_float32_data_far_apart_stays_finite_and_is_lloyd():
    """M·d ≈ 1e9 here: ``exp(-M d - logsumexp)`` of unshifted logits loses every digit in
    float32 (NaN centroids); shifted by each row's minimum it is Lloyd's step."""
    x, c0 = problem(3, n=200, k=4)
    x, c0 = np.float32(x * 100), np.float32(c0 * 100)
    soft = em.soft_kmeans(jax.random.key(0), x, 4, stiffness=1e4, num_steps=10, init=c0, tol=0)
    assert bool(jnp.all(jnp.isfinite(soft.centroids))) and bool(jnp.isfinite(soft.inertia))
    c = np.float64(c0)  # Lloyd's 10 steps, written out in float64
    for _ in range(10):
        labels = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), 1)
        c = np.stack([x[labels == j].mean(0) for j in range(4)])
    labels = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), 1)
    # float32 sums of 200 points of size ~1e3: a few ulps of the centroids
    chex.assert_trees_all_close(soft.centroids, c, rtol=1e-5, atol=0)
    np.testing.assert_array_equal(soft.labels, labels)


X10 = np.zeros((10, 2), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"stiffness": 0.0}, ValueError, "stiffness must be finite and > 0"),
        ({"stiffness": -1.0}, ValueError, "stiffness"),
        ({"stiffness": jnp.array(-1.0)}, ValueError, "stiffness must be finite and > 0"),
        ({"stiffness": np.float32(0)}, ValueError, "stiffness must be finite and > 0"),
        ({"stiffness": np.nan}, ValueError, "stiffness must be finite"),
        ({"stiffness": "1"}, TypeError, "stiffness must be a real scalar, got str"),
        ({"stiffness": None}, TypeError, "stiffness must be a real scalar"),
        ({"tol": np.float32(-1)}, ValueError, "tol must be finite and >= 0"),
        ({"num_steps": jnp.int32(-1)}, ValueError, "num_steps must be >= 0"),
        ({"num_clusters": 20}, ValueError, "num_clusters"),
        ({"init": "nope"}, ValueError, "init"),
        ({"init": np.full((2, 2), np.nan)}, ValueError, "init must be finite"),
        ({"weights": np.ones(3)}, ValueError, "weights"),
        ({"weights": np.full(10, np.nan)}, ValueError, "weights must be finite"),
        ({"key": 0}, TypeError, "key must be a PRNG key"),
        ({"x": X10[:0]}, ValueError, "x must be non-empty"),
        ({"x": np.full((10, 2), np.inf)}, ValueError, "x must be finite"),
        ({"block_size": 0}, ValueError, "block_size"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, words):
    args = {"key": KEY, "x": X10, "num_clusters": 2, "stiffness": 1.0} | kwargs
    with pytest.raises(error, match=words):
        em.soft_kmeans(args.pop("key"), args.pop("x"), args.pop("num_clusters"), **args)


def shifted_blobs():
    """float32 blobs, and the same shifted by 2e4: without centring, ‖x‖² - 2x·c + ‖c‖²
    at ‖x‖ ~ 3e4 rounds by ~1e-7·‖x‖² ≈ 80, against squared distances ~ 4 here."""
    x, _ = make_blobs(400, 8, 2, cluster_std=1.0, seed=8)
    x = np.round(np.asarray(x, np.float32) * 256) / 256  # x + 2e4 is then exact in float32
    return x, x + np.float32(2e4)


def test_shifted_float32_data_keep_soft_kmeans_inertia():
    """Translation-equivariance: soft K-Means on data shifted by 2e4 gives the centroids
    (shifted), labels and inertia of the unshifted fit, and the inertia of K-Means."""
    x, far = shifted_blobs()
    fit = lambda x: em.soft_kmeans(KEY, x, 8, stiffness=4.0, init=x[:8], num_steps=20, tol=0)  # noqa: E731
    near_fit, far_fit = fit(x), fit(far)
    np.testing.assert_array_equal(far_fit.labels, near_fit.labels)
    np.testing.assert_allclose(far_fit.centroids, near_fit.centroids + 2e4, rtol=0, atol=2e-2)
    np.testing.assert_allclose(far_fit.inertia, near_fit.inertia, rtol=1e-3)
    hard = em.kmeans(KEY, far, 8, init=far[:8], num_steps=20, tol=0)
    # the same order (another local optimum may differ by tens of %; uncentred it was 10x)
    np.testing.assert_allclose(far_fit.inertia, hard.inertia, rtol=0.5)


def test_growing_stiffness_reproduces_lloyd_on_shifted_float32_data():
    """As M grows the responsibilities harden: the distance to Lloyd's centroids shrinks,
    and at M = 1e4 (M·gap² ≫ 1) the fit is Lloyd's, shifted data and all."""
    _, far = shifted_blobs()
    hard = em.kmeans(KEY, far, 8, init=far[:8], num_steps=10, tol=0)
    gaps = []
    for stiffness in (0.3, 3.0, 1e4):
        soft = em.soft_kmeans(KEY, far, 8, stiffness=stiffness, init=far[:8], num_steps=10, tol=0)
        gaps.append(float(jnp.max(jnp.abs(soft.centroids - hard.centroids))))
    assert gaps[0] > gaps[1] > gaps[2], gaps
    assert gaps[2] <= 1e-2  # float32 ulps of 2e4 are 2e-3
    np.testing.assert_array_equal(soft.labels, hard.labels)
    np.testing.assert_allclose(soft.inertia, hard.inertia, rtol=1e-4)


def test_status_says_how_the_fit_ended():
    """SUCCESS when the shift test passed, MAX_STEPS at tol=0, and a traced NaN point
    gives NONFINITE with the last finite centroids (here the given start)."""
    x, c0 = problem(5)
    x, c0 = np.float32(x), np.float32(c0)
    done = em.soft_kmeans(KEY, x, 3, stiffness=1.0, init=c0)
    assert int(done.status) == Status.SUCCESS and bool(done.converged)
    capped = em.soft_kmeans(KEY, x, 3, stiffness=1.0, init=c0, num_steps=3, tol=0)
    assert int(capped.status) == Status.MAX_STEPS and not bool(capped.converged)
    fit = jax.jit(lambda x: em.soft_kmeans(KEY, x, 3, stiffness=1.0, init=c0, tol=0))
    x[0, 0] = np.nan
    broken = fit(x)
    assert int(broken.status) == Status.NONFINITE and not bool(broken.converged)
    np.testing.assert_array_equal(broken.centroids, c0)
    assert int(broken.num_steps) == 0  # the refused step is not counted
