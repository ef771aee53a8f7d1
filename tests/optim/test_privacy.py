"""dp_aggregate (the noise: variance, reproducibility, dtypes) and dp_epsilon
(dp-accounting's accountants and the published MNIST figure)."""

import chex
import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from gradjax import optim


def noise_of(transform, tree, steps=1):
    state = transform.init(tree)
    out = []
    for _ in range(steps):
        u, state = transform.update(tree, state)
        out.append(jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b), u, tree))
    return out, state


def test_noise_has_variance_sigma_gamma_over_b_squared():
    # N = 40,000 draws: (N-1)s²/v ~ χ²(N-1) and √N·mean/√v ~ N(0, 1). Two-sided tests at
    # false-alarm rate 1e-6 each: a correct implementation fails once in 10⁶ runs.
    sigma, gamma, b = 1.3, 0.7, 16
    tree = {"w": jnp.full((100, 200), 0.25), "b": jnp.zeros((200, 100))}
    tx = optim.dp_aggregate(sigma, key=jax.random.key(3), max_norm=gamma, batch_size=b)
    (noise,), _ = noise_of(tx, tree)
    z = np.concatenate([np.ravel(v) for v in jax.tree.leaves(noise)])
    n, variance = z.size, (sigma * gamma / b) ** 2
    statistic = (n - 1) * np.var(z, ddof=1) / variance
    lo, hi = stats.chi2.ppf([0.5e-6, 1 - 0.5e-6], n - 1)
    assert lo < statistic < hi
    assert abs(np.sqrt(n) * np.mean(z) / np.sqrt(variance)) < stats.norm.ppf(1 - 0.5e-6)


def test_noise_is_reproducible_by_key_and_fresh_each_step():
    tree = {"w": jnp.zeros((4, 3))}

    def run(seed):
        tx = optim.dp_aggregate(1.0, key=jax.random.key(seed), max_norm=1.0, batch_size=2)
        return noise_of(tx, tree, steps=2)

    (a1, a2), state = run(0)
    (b1, b2), _ = run(0)
    (c1, _), _ = run(1)
    chex.assert_trees_all_equal(a1, b1)
    chex.assert_trees_all_equal(a2, b2)
    assert not np.allclose(a1["w"], a2["w"]) and not np.allclose(a1["w"], c1["w"])
    assert int(state.count) == 2


def test_zero_noise_is_the_identity_and_jit_equals_eager_in_an_adam_chain():
    grads = {"w": jnp.array([0.1, -0.2, 0.3]), "b": jnp.array(0.5)}
    tx = optim.dp_aggregate(0.0, key=jax.random.key(0), max_norm=1.0, batch_size=4)
    chex.assert_trees_all_equal(tx.update(grads, tx.init(grads))[0], grads)
    chain = optax.chain(
        optim.dp_aggregate(1.0, key=jax.random.key(0), max_norm=1.0, batch_size=4),
        optax.adam(0.1),
    )
    state = chain.init(grads)
    eager = chain.update(grads, state, grads)
    jitted = jax.jit(chain.update)(grads, state, grads)
    chex.assert_trees_all_close(eager[0], jitted[0], rtol=1e-6)
    keys = [jax.random.key_data(optax.tree.get(s, "key")) for s in (eager[1], jitted[1])]
    np.testing.assert_array_equal(*keys)


def test_bfloat16_updates_keep_their_dtype():
    tree = {"w": jnp.zeros((8,), jnp.bfloat16)}
    tx = optim.dp_aggregate(1.0, key=jax.random.key(0), max_norm=1.0, batch_size=1)
    u, _ = tx.update(tree, tx.init(tree))
    assert u["w"].dtype == jnp.bfloat16 and np.any(np.asarray(u["w"], np.float32) != 0)


def accountant_epsilon(accountant, sigma, q, steps, delta):
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    return accountant.compose(event).get_epsilon(delta)


@pytest.mark.parametrize(("sigma", "q", "steps"), [(1.1, 256 / 60000, 300), (0.8, 0.01, 100)])
def test_dp_epsilon_equals_dp_accountings_accountants(sigma, q, steps):
    rdp = accountant_epsilon(dp_accounting.rdp.RdpAccountant(), sigma, q, steps, 1e-5)
    pld = accountant_epsilon(dp_accounting.pld.PLDAccountant(), sigma, q, steps, 1e-5)
    assert optim.dp_epsilon(sigma, q, steps, 1e-5) == pytest.approx(rdp, rel=1e-12)
    assert optim.dp_epsilon(sigma, q, steps, 1e-5, accountant="pld") == pytest.approx(
        pld, rel=1e-12
    )
    assert pld <= rdp  # PLD accounting is the tighter one


def test_dp_epsilon_mnist_figure_and_monotone():
    # TF-Privacy's MNIST tutorial setting (σ = 1.1, batch 256 of 60,000, 60 epochs,
    # δ = 1e-5): reported there as ε ≈ 3.0 with an older RDP-to-DP conversion;
    # dp-accounting's RdpAccountant (tighter conversion) gives 2.6.
    eps = optim.dp_epsilon(1.1, 256 / 60000, 60 * 60000 // 256, 1e-5)
    assert eps == pytest.approx(2.6, abs=0.01) and eps < 3.01
    assert optim.dp_epsilon(2.0, 0.01, 100, 1e-5) < optim.dp_epsilon(1.0, 0.01, 100, 1e-5)
    assert optim.dp_epsilon(1.0, 0.01, 100, 1e-5) < optim.dp_epsilon(1.0, 0.01, 400, 1e-5)
