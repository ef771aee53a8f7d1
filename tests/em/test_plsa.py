"""pLSA by EM: the oracles of techniques.md §1, sparse == dense, recovery, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.experimental import sparse

from gradjax import Status, em
from gradjax.datasets import plsa_corpus


def small_counts(seed=0, num_docs=30, vocab_size=40, num_topics=3, dtype=jnp.float64):
    """Counts drawn from pLSA's generative model (NumPy: fast for many tiny corpora)."""
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(vocab_size, 0.2), num_topics)
    mixtures = rng.dirichlet(np.full(num_topics, 0.3), num_docs)
    p_w_given_d = mixtures @ topics
    counts = rng.multinomial(60, p_w_given_d / p_w_given_d.sum(1, keepdims=True))
    return jnp.asarray(counts, dtype)


def naive_em_step(counts, theta, phi):
    """One EM step with the explicit (D, W, K) posterior, straight from the formulas."""
    joint = theta[:, None, :] * phi.T[None, :, :]  # p(z|d) p(w|z), (D, W, K)
    total = jnp.sum(joint, axis=2, keepdims=True)  # 0 only for words no topic emits
    posterior = joint / jnp.where(total > 0, total, 1)  # C(z|d,w)
    weighted = counts[:, :, None] * posterior  # n(d,w) C(z|d,w)
    new_phi = jnp.sum(weighted, axis=0).T
    new_phi = new_phi / jnp.sum(new_phi, axis=1, keepdims=True)
    new_theta = jnp.sum(weighted, axis=1) / jnp.sum(counts, axis=1, keepdims=True)
    return new_theta, new_phi


def random_factors(seed, num_docs, vocab_size, num_topics, dtype=jnp.float64):
    """Interior (p(z|d), p(w|z)) with Dirichlet(1) rows."""
    rng = np.random.default_rng(seed)
    theta = rng.dirichlet(np.ones(num_topics), num_docs)
    phi = rng.dirichlet(np.ones(vocab_size), num_topics)
    return jnp.asarray(theta, dtype), jnp.asarray(phi, dtype)


def test_monotone_simplex_and_reported_likelihood():
    with jax.enable_x64(True):
        counts = small_counts()
        fit = em.plsa(jax.random.key(1), counts, 3, num_steps=60, tol=0.0)
        trace = np.asarray(fit.log_likelihood_trace)
        assert trace.shape == (60,) and int(fit.num_steps) == 60
        assert int(fit.status) == Status.MAX_STEPS and not bool(fit.converged)  # tol=0
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
        assert trace[-1] - trace[0] > 1.0  # EM actually moved
        for p in (fit.p_w_given_z, fit.p_z_given_d):
            assert bool(jnp.all(p >= 0))
            np.testing.assert_allclose(jnp.sum(p, axis=1), 1.0, atol=1e-12)
        direct = em.plsa_log_likelihood(counts, fit.p_w_given_z, fit.p_z_given_d)
        np.testing.assert_allclose(fit.log_likelihood, direct, rtol=1e-12)
        np.testing.assert_allclose(trace[-1], direct, rtol=1e-12)


def test_each_step_is_the_closed_form_m_step_of_the_surrogate():
    with jax.enable_x64(True):
        counts = small_counts(seed=2)
        theta, phi = random_factors(3, 30, 40, 3)
        for _ in range(3):
            fit = em.plsa(None, counts, 3, num_steps=1, tol=0.0, init=(phi, theta))
            theta_ref, phi_ref = naive_em_step(counts, theta, phi)
            np.testing.assert_allclose(fit.p_z_given_d, theta_ref, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(fit.p_w_given_z, phi_ref, rtol=1e-10, atol=1e-14)
            # the trace's one entry is the likelihood after the step
            after = em.plsa_log_likelihood(counts, phi_ref, theta_ref)
            np.testing.assert_allclose(fit.log_likelihood_trace[0], after, rtol=1e-12)
            theta, phi = theta_ref, phi_ref


def test_surrogate_gradient_matches_true_gradient_at_current_point():
    """techniques.md §1(e)3: grad of S'_n at p_n equals grad of S at p_n."""
    with jax.enable_x64(True):
        counts = small_counts(seed=4, num_docs=12, vocab_size=15)
        theta_n, phi_n = random_factors(5, 12, 15, 3)
        joint = theta_n[:, None, :] * phi_n.T[None, :, :]
        c = joint / jnp.sum(joint, axis=2, keepdims=True)  # fixed at p_n

        def objective(theta, phi):
            return -jnp.sum(counts * jnp.log(theta @ phi))

        def surrogate(theta, phi):
            log_joint = jnp.log(theta[:, None, :]) + jnp.log(phi.T[None, :, :])
            return -jnp.sum(counts[:, :, None] * c * log_joint)

        g_true = jax.grad(objective, argnums=(0, 1))(theta_n, phi_n)
        g_surr = jax.grad(surrogate, argnums=(0, 1))(theta_n, phi_n)
        chex.assert_trees_all_close(g_true, g_surr, rtol=1e-10, atol=0)
        # and the surrogate (+ constant) majorises S: check at the EM update
        theta_1, phi_1 = naive_em_step(counts, theta_n, phi_n)
        const = jnp.sum(counts[:, :, None] * c * jnp.log(c))
        assert objective(theta_1, phi_1) <= surrogate(theta_1, phi_1) + const + 1e-9
        np.testing.assert_allclose(
            objective(theta_n, phi_n), surrogate(theta_n, phi_n) + const, rtol=1e-12
        )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_sparse_equals_dense(dtype):
    with jax.enable_x64(True):
        counts = small_counts(seed=6, dtype=dtype)
        dense = em.plsa(jax.random.key(7), counts, 3, num_steps=40, tol=0.0)
        # unsorted, with duplicate entries that sum to the dense counts
        coo = sparse.BCOO.fromdense(counts)
        half = coo.data / 2
        perm = np.random.default_rng(0).permutation(2 * coo.nse)
        data = jnp.concatenate([half, half])[perm]
        indices = jnp.concatenate([coo.indices, coo.indices])[perm]
        sp = sparse.BCOO((data, indices), shape=counts.shape)
        fit = em.plsa(jax.random.key(7), sp, 3, num_steps=40, tol=0.0)
        rtol = 1e-10 if dtype == jnp.float64 else 2e-4
        np.testing.assert_allclose(fit.p_w_given_z, dense.p_w_given_z, rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(fit.p_z_given_d, dense.p_z_given_d, rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(fit.log_likelihood_trace, dense.log_likelihood_trace, rtol=rtol)
        assert fit.p_w_given_z.dtype == dtype


def test_sparse_equals_dense_over_many_chunks():
    with jax.enable_x64(True):
        counts = small_counts(seed=36, num_docs=200, vocab_size=300, num_topics=4)
        coo = sparse.BCOO.fromdense(counts)
        assert coo.nse > 2 * 4096  # several chunks of the sparse path, the last one padded
        dense = em.plsa(jax.random.key(37), counts, 4, num_steps=10, tol=0.0)
        fit = em.plsa(jax.random.key(37), coo, 4, num_steps=10, tol=0.0)
        np.testing.assert_allclose(fit.p_w_given_z, dense.p_w_given_z, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(fit.p_z_given_d, dense.p_z_given_d, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(fit.log_likelihood, dense.log_likelihood, rtol=1e-12)
        ll = em.plsa_log_likelihood(coo, dense.p_w_given_z, dense.p_z_given_d)
        np.testing.assert_allclose(ll, dense.log_likelihood, rtol=1e-12)


def test_dense_row_blocks_and_padding_do_not_change_the_result(monkeypatch):
    from gradjax.em import _plsa

    with jax.enable_x64(True):
        counts = small_counts(seed=38, num_docs=203, vocab_size=50, num_topics=4)
        whole = em.plsa(jax.random.key(39), counts, 4, num_steps=10, tol=0.0)
        # 8-row blocks: 26 blocks, the last padded with 5 empty documents
        monkeypatch.setattr(_plsa, "_DENSE_BLOCK_ENTRIES", 8 * 50)
        assert _plsa._layout(counts, by_word=True).blocks.shape == (26, 8, 50)
        jax.clear_caches()  # the jitted EM loop would otherwise reuse the one-block program
        blocked = em.plsa(jax.random.key(39), counts, 4, num_steps=10, tol=0.0)
        np.testing.assert_allclose(blocked.p_w_given_z, whole.p_w_given_z, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(blocked.p_z_given_d, whole.p_z_given_d, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(blocked.log_likelihood_trace, whole.log_likelihood_trace)


@pytest.mark.parametrize("shape", [(203, 50), (50, 203)], ids=["rows=documents", "rows=words"])
def test_dense_block_sums_are_the_formulas_in_either_orientation(monkeypatch, shape):
    """Blocks run along the longer axis (rows of words when W > D): the E-step sums,
    over several padded blocks and for each side alone, are the closed forms."""
    from gradjax.em import _plsa

    num_docs, vocab_size = shape
    monkeypatch.setattr(_plsa, "_DENSE_BLOCK_ENTRIES", 8 * min(shape))
    with jax.enable_x64(True):
        counts = small_counts(seed=40, num_docs=num_docs, vocab_size=vocab_size, num_topics=4)
        counts = counts.at[3].set(0.0)  # an empty document
        theta, phi = random_factors(41, num_docs, vocab_size, 4)
        phi = phi.at[1, :7].set(0.0)  # a topic that cannot emit seven of the words
        layout = _plsa._layout(counts, by_word=True)
        assert layout.transposed == (vocab_size > num_docs)
        assert layout.blocks.shape == (26, 8, min(shape))  # the last block padded
        model = theta @ phi
        ratio = jnp.where(counts == 0, 0, counts / jnp.where(counts == 0, 1, model))
        log_lik = jnp.sum(jnp.where(counts == 0, 0, counts * jnp.log(model)))
        for doc_side, word_side in [(True, True), (True, False), (False, True), (False, False)]:
            ll, doc_sums, word_sums = _plsa._e_step_sums(
                layout, theta, phi, doc_side=doc_side, word_side=word_side
            )
            np.testing.assert_allclose(ll, log_lik, rtol=1e-12)
            assert (doc_sums is None) != doc_side and (word_sums is None) != word_side
            if doc_side:
                np.testing.assert_allclose(doc_sums, ratio @ phi.T, rtol=1e-12)
            if word_side:
                np.testing.assert_allclose(word_sums, theta.T @ ratio, rtol=1e-12)
        np.testing.assert_allclose(_plsa._doc_lengths(layout), jnp.sum(counts, axis=1))


def test_sparse_path_never_builds_a_dense_array():
    num_docs, vocab_size, num_topics, nnz = 3000, 4000, 4, 500
    rng = np.random.default_rng(0)
    indices = np.stack([rng.integers(0, num_docs, nnz), rng.integers(0, vocab_size, nnz)], 1)
    sp = sparse.BCOO(
        (jnp.ones(nnz, jnp.float32), jnp.asarray(indices, jnp.int32)),
        shape=(num_docs, vocab_size),
    )
    fn = jax.jit(lambda c: em.plsa(jax.random.key(0), c, num_topics, num_steps=3))
    temp = fn.lower(sp).compile().memory_analysis().temp_size_in_bytes
    # a dense D×W float32 array would be 48 MB; the chunked sums need O(nnz + chunk·K + (D + W)·K)
    assert temp < 4 * (num_docs * vocab_size) // 20, temp


def test_planted_topics_are_recovered():
    sample = jax.jit(plsa_corpus, static_argnums=(1, 2, 3), static_argnames="doc_length")
    corpus = sample(jax.random.key(10), 300, 200, 5, doc_length=300)  # one compilation
    fit = em.plsa(jax.random.key(11), corpus.counts, 5, num_steps=300, tol=1e-7)
    true, found = np.asarray(corpus.p_w_given_z), np.asarray(fit.p_w_given_z)
    tv = 0.5 * np.abs(true[:, None, :] - found[None, :, :]).sum(-1)  # (K, K)
    rows, cols = scipy.optimize.linear_sum_assignment(tv)
    assert np.mean(tv[rows, cols]) < 0.1, tv[rows, cols]
    # the fit explains the data at least as well as the generating parameters
    truth = em.plsa_log_likelihood(corpus.counts, corpus.p_w_given_z, corpus.p_z_given_d)
    assert float(fit.log_likelihood) >= float(truth)


def test_fold_in_reaches_the_unique_optimum():
    with jax.enable_x64(True):
        _, phi = random_factors(12, 1, 25, 3)
        counts = small_counts(seed=13, num_docs=6, vocab_size=25)
        theta = em.plsa_fold_in(jax.random.key(14), counts, phi, num_steps=3000, tol=0).p_z_given_d
        other = em.plsa_fold_in(jax.random.key(15), counts, phi, num_steps=3000, tol=0).p_z_given_d
        np.testing.assert_allclose(theta, other, atol=1e-6)
        np.testing.assert_allclose(jnp.sum(theta, axis=1), 1.0, atol=1e-12)
        for d in range(counts.shape[0]):
            n = np.asarray(counts[d])

            def neg_ll(t, n=n):
                return -np.sum(n * np.log(np.maximum(t @ np.asarray(phi), 1e-300)))

            ref = scipy.optimize.minimize(
                neg_ll,
                np.full(3, 1 / 3),
                method="SLSQP",
                bounds=[(0, 1)] * 3,
                constraints=[{"type": "eq", "fun": lambda t: np.sum(t) - 1}],
                options={"ftol": 1e-14, "maxiter": 500},
            )
            np.testing.assert_allclose(theta[d], ref.x, atol=1e-4)
            assert neg_ll(np.asarray(theta[d])) <= ref.fun + 1e-7
            # KKT: Σ_w n(w) p(w|z) / p(w|d) = n(d) on the support, <= n(d) off it
            grad = (n / (np.asarray(theta[d]) @ np.asarray(phi))) @ np.asarray(phi).T
            support = np.asarray(theta[d]) > 1e-6
            np.testing.assert_allclose(grad[support], n.sum(), rtol=1e-5)
            assert np.all(grad[~support] <= n.sum() * (1 + 1e-5))


def test_fold_in_leaves_out_words_no_topic_emits():
    """A word with p(w|z) = 0 for every topic carries no information on the mixture: the
    mixtures are those of the documents without it (no 0/0 NaN), the log-likelihood is
    -inf, and the status says so (NONFINITE)."""
    with jax.enable_x64(True):
        _, phi = random_factors(16, 1, 40, 3)
        phi = phi.at[:, 7].set(0.0)
        counts = small_counts(seed=17).at[:, 7].set(3.0)
        fold = lambda c: em.plsa_fold_in(jax.random.key(18), c, phi, num_steps=40, tol=0)  # noqa: E731
        with_word, without = fold(counts), fold(counts.at[:, 7].set(0.0))
        np.testing.assert_allclose(with_word.p_z_given_d, without.p_z_given_d, rtol=1e-10)
        assert float(with_word.log_likelihood) == -np.inf
        assert int(with_word.status) == Status.NONFINITE
        assert int(without.status) == Status.MAX_STEPS and np.isfinite(without.log_likelihood)


def test_fold_in_sparse_equals_dense():
    with jax.enable_x64(True):
        _, phi = random_factors(16, 1, 40, 3)
        counts = small_counts(seed=17)
        dense = em.plsa_fold_in(jax.random.key(18), counts, phi, num_steps=30, tol=0)
        sp = em.plsa_fold_in(jax.random.key(18), sparse.BCOO.fromdense(counts), phi, num_steps=30,
                             tol=0)  # fmt: skip
        np.testing.assert_allclose(sp.p_z_given_d, dense.p_z_given_d, rtol=1e-10)
        np.testing.assert_allclose(sp.log_likelihood_trace, dense.log_likelihood_trace, rtol=1e-12)


def test_warm_start_continues_the_run():
    with jax.enable_x64(True):
        counts = small_counts(seed=19)
        full = em.plsa(jax.random.key(20), counts, 3, num_steps=50, tol=0.0)
        half = em.plsa(jax.random.key(20), counts, 3, num_steps=25, tol=0.0)
        rest = em.plsa(
            None, counts, 3, num_steps=25, tol=0.0, init=(half.p_w_given_z, half.p_z_given_d)
        )
        np.testing.assert_allclose(rest.p_w_given_z, full.p_w_given_z, rtol=1e-10)
        np.testing.assert_allclose(
            jnp.concatenate([half.log_likelihood_trace, rest.log_likelihood_trace]),
            full.log_likelihood_trace,
            rtol=1e-12,
        )


def test_convergence_freezes_and_reports():
    with jax.enable_x64(True):
        counts = small_counts(seed=21)
        fit = em.plsa(jax.random.key(22), counts, 3, num_steps=2000, tol=1e-8)
        steps = int(fit.num_steps)
        assert bool(fit.converged) and 1 < steps < 2000
        assert int(fit.status) == Status.SUCCESS
        trace = np.asarray(fit.log_likelihood_trace)
        np.testing.assert_array_equal(trace[steps - 1 :], float(fit.log_likelihood))
        gain = trace[steps - 2] - trace[steps - 3]
        assert gain <= 1e-8 * abs(trace[steps - 2])


def test_empty_documents_get_uniform_mixture_and_do_not_change_topics():
    with jax.enable_x64(True):
        counts = small_counts(seed=23)
        padded = jnp.concatenate([counts[:10], jnp.zeros((2, 40)), counts[10:]])
        fit = em.plsa(jax.random.key(24), counts, 3, num_steps=20, tol=0.0)
        fit_padded = em.plsa(jax.random.key(24), padded, 3, num_steps=20, tol=0.0)
        np.testing.assert_allclose(fit_padded.p_w_given_z, fit.p_w_given_z, rtol=1e-12)
        np.testing.assert_allclose(fit_padded.p_z_given_d[10:12], 1 / 3, rtol=1e-12)
        kept = jnp.concatenate([fit_padded.p_z_given_d[:10], fit_padded.p_z_given_d[12:]])
        np.testing.assert_allclose(kept, fit.p_z_given_d, rtol=1e-12)
        fit_sparse = em.plsa(
            jax.random.key(24), sparse.BCOO.fromdense(padded), 3, num_steps=20, tol=0.0
        )
        np.testing.assert_allclose(fit_sparse.p_z_given_d, fit_padded.p_z_given_d, rtol=1e-10)


def test_zero_probabilities_give_no_nan():
    counts = small_counts(seed=25, dtype=jnp.float32).at[:, 5].set(0.0)  # an unused word
    theta, phi = random_factors(26, 30, 40, 3, dtype=jnp.float32)
    phi = phi.at[0, :20].set(0.0)  # a topic that cannot emit half the words
    theta = theta.at[:, 2].set(0.0)  # a topic no document uses
    fit = em.plsa(None, counts, 3, num_steps=30, tol=0.0, init=(phi, theta))
    for value in fit:
        assert bool(jnp.all(jnp.isfinite(value)))
    np.testing.assert_array_equal(fit.p_z_given_d[:, 2], 0.0)  # zeros stay zero
    np.testing.assert_allclose(fit.p_w_given_z[2], phi[2] / jnp.sum(phi[2]), rtol=1e-6)
    np.testing.assert_allclose(jnp.sum(fit.p_w_given_z, axis=1), 1.0, rtol=1e-5)


def test_jit_equals_eager_and_no_retrace():
    counts = small_counts(seed=27, dtype=jnp.float32)

    def fit_fn(c):
        return em.plsa(jax.random.key(28), c, 3, num_steps=15, tol=0.0)

    jitted = jax.jit(chex.assert_max_traces(fit_fn, n=1))
    chex.assert_trees_all_close(jitted(counts), fit_fn(counts), rtol=1e-5, atol=1e-7)
    jitted(counts + 1.0)  # a second trace would raise


def test_vmap_equals_loop():
    counts = jnp.stack([small_counts(seed=s, dtype=jnp.float32) for s in (29, 30)])
    keys = jax.random.split(jax.random.key(31), 2)
    batched = jax.vmap(lambda k, c: em.plsa(k, c, 3, num_steps=10, tol=0.0))(keys, counts)
    for i in range(2):
        single = em.plsa(keys[i], counts[i], 3, num_steps=10, tol=0.0)
        np.testing.assert_allclose(batched.p_w_given_z[i], single.p_w_given_z, rtol=1e-5)


def test_integer_counts_are_accepted():
    counts = small_counts(seed=32, dtype=jnp.int32)
    fit = em.plsa(jax.random.key(33), counts, 3, num_steps=5)
    assert fit.p_w_given_z.dtype == jnp.float32


KEY = jax.random.key(0)
N46 = jnp.ones((4, 6))
NAN46 = N46.at[1, 2].set(jnp.nan)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"counts": jnp.ones(5)}, ValueError, "counts must be a 2-D"),
        ({"counts": jnp.ones((2, 3, 4))}, ValueError, "counts must be a 2-D"),
        ({"counts": jnp.ones((0, 6))}, ValueError, "counts must have at least one document"),
        ({"counts": -jnp.ones((4, 6))}, ValueError, "counts must be non-negative"),
        ({"counts": NAN46}, ValueError, "counts must be finite"),
        ({"counts": np.full((4, 6), np.inf)}, ValueError, "counts must be finite"),
        ({"counts": jnp.ones((4, 6), jnp.complex64)}, TypeError, "counts must be a real"),
        ({"counts": np.full((4, 6), "a")}, TypeError, "counts must be a real"),
        ({"num_topics": 0}, ValueError, "num_topics must be >= 1, got 0"),
        ({"num_topics": 7}, ValueError, "num_topics must be <= the vocabulary size 6, got 7"),
        ({"num_topics": 2.0}, TypeError, "num_topics must be an int"),
        ({"num_topics": jnp.int32(0)}, ValueError, "num_topics must be >= 1, got 0"),
        ({"num_steps": -1}, ValueError, "num_steps must be >= 0"),
        ({"tol": -1.0}, ValueError, "tol must be finite and >= 0"),
        ({"tol": np.float32(-1)}, ValueError, "tol must be finite and >= 0"),
        ({"tol": jnp.array(-1.0)}, ValueError, "tol must be finite and >= 0"),
        ({"tol": "small"}, TypeError, "tol must be a real scalar, got str"),
        ({"key": 0}, TypeError, "key must be a PRNG key"),
        ({"key": None}, TypeError, "key must be a PRNG key"),  # None only with an init
        ({"init": (jnp.ones((2, 5)), jnp.ones((4, 2)))}, ValueError, r"init\[0\].*shape \(2, 6\)"),
        ({"init": (jnp.ones((2, 6)), -jnp.ones((4, 2)))}, ValueError, "non-negative"),
        ({"init": (jnp.ones((2, 6)).at[0, 0].set(jnp.nan), jnp.ones((4, 2)))}, ValueError,
         r"init\[0\] \(p_w_given_z\) must be finite"),
        ({"init": jnp.ones((2, 6))}, TypeError, "init must be a pair"),
    ],
)  # fmt: skip
def test_bad_input(kwargs, error, match):
    args = {"key": jax.random.key(0), "counts": N46, "num_topics": 2} | kwargs
    key, counts, num_topics = args.pop("key"), args.pop("counts"), args.pop("num_topics")
    with pytest.raises(error, match=match):
        em.plsa(key, counts, num_topics, **args)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: em.plsa(KEY, sparse.BCOO.fromdense(jnp.array([[1.0, 0.0], [0.0, -2.0]])), 1),
         ValueError, "counts must be non-negative"),
        (lambda: em.plsa(KEY, sparse.BCOO.fromdense(jnp.ones((2, 3, 4)), n_batch=1), 1),
         ValueError, "counts must be a 2-D"),
        (lambda: em.plsa(jax.random.key(0), sparse.BCOO.fromdense(NAN46), 1),
         ValueError, "counts must be finite"),
        (lambda: em.plsa_fold_in(jax.random.key(0), N46, jnp.ones((2, 5))),
         ValueError, r"p_w_given_z must have shape \(num_topics, 6\)"),
        (lambda: em.plsa_fold_in(jax.random.key(0), N46, jnp.ones((2, 6)).at[1, 1].set(jnp.inf)),
         ValueError, "p_w_given_z must be finite"),
        (lambda: em.plsa_fold_in(jax.random.key(0), NAN46, jnp.ones((2, 6))),
         ValueError, "counts must be finite"),
        (lambda: em.plsa_fold_in(jax.random.key(0), N46, jnp.ones((2, 6)), num_steps=-1),
         ValueError, "num_steps must be >= 0"),
        (lambda: em.plsa_fold_in(1, N46, jnp.ones((2, 6))), TypeError, "key must be a PRNG key"),
        (lambda: em.plsa_log_likelihood(N46, jnp.ones((2, 6)), jnp.ones((4, 3))),
         ValueError, r"p_z_given_d must have shape \(4, 2\)"),
        (lambda: em.plsa_log_likelihood(N46, jnp.ones((2, 5)), jnp.ones((4, 2))),
         ValueError, r"p_w_given_z must have shape \(num_topics, 6\)"),
        (lambda: em.plsa_log_likelihood(NAN46, jnp.ones((2, 6)), jnp.ones((4, 2))),
         ValueError, "counts must be finite"),
        (lambda: em.plsa_log_likelihood(N46, jnp.ones((2, 6)), jnp.full((4, 2), jnp.nan)),
         ValueError, "p_z_given_d must be finite"),
        (lambda: em.plsa_log_likelihood(-N46, jnp.ones((2, 6)), jnp.ones((4, 2))),
         ValueError, "counts must be non-negative"),
    ],
)  # fmt: skip
def test_bad_input_sparse_fold_in_and_log_likelihood(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_concrete_inputs_closed_over_inside_jit_are_checked():
    counts = small_counts(seed=34, dtype=jnp.float32)
    theta, phi = random_factors(35, 30, 40, 3, dtype=jnp.float32)
    fit = jax.jit(lambda: em.plsa(None, counts, 3, num_steps=3, init=(phi, theta)))()
    assert bool(jnp.all(jnp.isfinite(fit.p_w_given_z)))
    negative, zero_row = -counts, phi.at[1].set(0.0)
    with pytest.raises(ValueError, match="counts must be non-negative"):
        jax.jit(lambda: em.plsa(jax.random.key(0), negative, 3))()
    with pytest.raises(ValueError, match="rows with a positive sum"):
        jax.jit(lambda: em.plsa(None, counts, 3, init=(zero_row, theta)))()
