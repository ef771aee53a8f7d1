"""Noise, gradient penalties, FGM and VAT against closed forms (kexue.fm/archives/7466)."""

import functools
import itertools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from gradjax import regularizers as reg
from gradjax.models import CharCNN
from gradjax.regularizers._penalties import _signed_jacobian_penalty
from gradjax.regularizers._vat import _kl_from_logits


def spd(key, n):
    m = jax.random.normal(key, (n, n), jnp.float64)
    return m @ m.T / n + 0.5 * jnp.eye(n, dtype=jnp.float64)


def normal(seed, shape, dtype=jnp.float64):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


# ----------------------------------------------------------------------------- noise


def test_noisy_loss_of_quadratic_gains_half_sigma2_laplacian():
    """E l(x + σε) = l(x) + ½σ² tr(A) exactly for l = ½xᵀAx + bᵀx; Monte Carlo within 4 SE."""
    with jax.enable_x64(True):
        a, b, x = spd(jax.random.key(0), 5), normal(1, (5,)), normal(2, (5,))
        sigma, n = 0.7, 5_000  # the laplacian term is still > 20 standard errors

        def loss(z):
            return 0.5 * z @ a @ z + b @ z

        estimate = jax.jit(
            lambda x: reg.noisy_loss(jax.random.key(3), loss, x, stdev=sigma, num_samples=n)
        )(x)
        laplacian = jnp.trace(jax.hessian(loss)(x))
        expected = loss(x) + 0.5 * sigma**2 * laplacian
        g = a @ x + b
        variance = sigma**2 * g @ g + 0.5 * sigma**4 * jnp.trace(a @ a)  # Var of one sample
        se = jnp.sqrt(variance / n)
        assert abs(estimate - expected) < 4 * se
        assert 0.5 * sigma**2 * laplacian > 20 * se  # the oracle can tell noise from no noise
        assert reg.noisy_loss(jax.random.key(3), loss, x, stdev=0.0) == loss(x)


def test_noise_on_a_linear_model_is_the_frobenius_penalty():
    """E‖f(x + σε) − f(x)‖² = σ²‖W‖²_F for f(x) = Wx (MSE: ½σ² Σᵢ 2‖∇fᵢ‖²)."""
    with jax.enable_x64(True):
        w, x = normal(0, (3, 6)), normal(1, (6,))
        sigma, n = 0.5, 5_000
        estimate = reg.noisy_loss(
            jax.random.key(4),
            lambda z: jnp.sum((w @ z - w @ x) ** 2),
            x,
            stdev=sigma,
            num_samples=n,
        )
        exact = sigma**2 * jnp.sum(w**2)
        assert jnp.allclose(
            exact, 0.5 * sigma**2 * 2 * reg.jacobian_penalty(None, lambda z: w @ z, x)
        )
        se = jnp.sqrt(2 * sigma**4 * jnp.trace((w.T @ w) @ (w.T @ w)) / n)
        assert abs(estimate - exact) < 4 * se


# ----------------------------------------------------------------------------- penalties


def test_gradient_penalty_closed_forms():
    with jax.enable_x64(True):
        a, b, x = spd(jax.random.key(0), 4), normal(1, (4,)), normal(2, (4,))
        assert jnp.allclose(reg.gradient_penalty(lambda z: b @ z + 3.0, x), b @ b, rtol=1e-14)
        quad = reg.gradient_penalty(lambda z: 0.5 * z @ a @ z + b @ z, x)
        assert jnp.allclose(quad, jnp.sum((a @ x + b) ** 2), rtol=1e-14)
        tree = {"u": x, "v": b}
        got = reg.gradient_penalty(lambda t: jnp.sum(t["u"] * t["v"]), tree)
        assert jnp.allclose(got, x @ x + b @ b, rtol=1e-14)


@pytest.mark.parametrize("out_dim", [2, 9])  # reverse mode (2 < 5) and forward mode (9 > 5)
def test_jacobian_penalty_exact_is_frobenius_norm(out_dim):
    with jax.enable_x64(True):
        w, x = normal(0, (out_dim, 5)), normal(1, (5,))

        def fn(z):
            return jnp.tanh(w @ z) * z.sum()

        expected = jnp.sum(jax.jacobian(fn)(x) ** 2)
        assert jnp.allclose(reg.jacobian_penalty(None, fn, x), expected, rtol=1e-13)


def test_random_sign_estimator_is_exact_over_all_sign_patterns_and_unbiased():
    with jax.enable_x64(True):
        w, x = normal(0, (4, 6)), normal(1, (6,))

        def fn(z):
            return jnp.sin(w @ z)

        exact = reg.jacobian_penalty(None, fn, x)
        patterns = jnp.array(list(itertools.product([-1.0, 1.0], repeat=4)))
        average = jnp.mean(jax.vmap(lambda s: _signed_jacobian_penalty(fn, x, s))(patterns))
        assert jnp.allclose(average, exact, rtol=1e-13)

        keys = jax.random.split(jax.random.key(2), 5_000)
        samples = jax.vmap(lambda k: reg.jacobian_penalty(k, fn, x))(keys)
        se = jnp.std(samples) / jnp.sqrt(samples.size)
        assert jnp.std(samples) > 0  # a real estimator, not the exact value
        assert abs(jnp.mean(samples) - exact) < 4 * se


# ----------------------------------------------------------------------------- FGM


def linear_model(theta, z):
    return jnp.tanh(theta["w"] @ z + theta["b"])


def xent(theta, z, label=1):
    return -jax.nn.log_softmax(linear_model(theta, z) * 3.0)[label]


def theta_and_x(seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    theta = {
        "w": jax.random.normal(k1, (3, 5), jnp.float64),
        "b": jax.random.normal(k2, (3,), jnp.float64),
    }
    return theta, jax.random.normal(k3, (5,), jnp.float64)


def test_fgm_has_norm_epsilon_along_the_gradient():
    with jax.enable_x64(True):
        theta, x = theta_and_x()
        g = jax.grad(xent, argnums=1)(theta, x)
        delta = reg.fgm_perturbation(lambda z: xent(theta, z), x, epsilon=0.3)
        assert jnp.allclose(jnp.linalg.norm(delta), 0.3, rtol=1e-14)
        assert jnp.allclose(delta, 0.3 * g / jnp.linalg.norm(g), rtol=1e-13)


def test_fgm_zero_gradient_gives_zero_and_finite_gradients():
    x = jnp.ones(4)

    def flat(z):
        return 0.0 * jnp.sum(z)

    assert jnp.array_equal(reg.fgm_perturbation(flat, x, epsilon=1.0), jnp.zeros(4))
    assert jnp.array_equal(reg.adversarial_loss(flat, x, epsilon=1.0), 0.0)
    grads = jax.jit(jax.grad(lambda z: reg.adversarial_loss(flat, z, epsilon=1.0)))(x)
    assert jnp.all(jnp.isfinite(grads))


def test_fgm_tiny_gradient_still_has_norm_epsilon():
    """float32: ‖g‖² of g ~ 1e-30 underflows; the max-abs rescaling keeps it exact."""
    x = jnp.ones(8, jnp.float32)
    delta = reg.fgm_perturbation(lambda z: 1e-30 * jnp.sum(z), x, epsilon=2.0)
    assert delta.dtype == jnp.float32
    np.testing.assert_allclose(jnp.linalg.norm(delta), 2.0, rtol=1e-6)


def test_fgm_gradient_is_stopped():
    """∇θ of the adversarial loss equals ∇θ loss(θ, x + Δ) with Δ a precomputed constant."""
    with jax.enable_x64(True):
        theta, x = theta_and_x()
        delta = reg.fgm_perturbation(lambda z: xent(theta, z), x, epsilon=0.4)
        got = jax.grad(lambda t: reg.adversarial_loss(lambda z: xent(t, z), x, epsilon=0.4))(theta)
        expected = jax.grad(lambda t: xent(t, x + delta))(theta)
        chex.assert_trees_all_close(got, expected, rtol=1e-12)
        dx = jax.grad(lambda z: reg.fgm_perturbation(lambda u: xent(theta, u), z, epsilon=0.4)[0])
        assert jnp.array_equal(dx(x), jnp.zeros(5))


def test_adversarial_loss_on_a_linear_loss_is_loss_plus_epsilon_grad_norm():
    with jax.enable_x64(True):
        w, x = normal(0, (6,)), normal(1, (6,))

        def loss(z):
            return w @ z + 1.5

        got = reg.adversarial_loss(loss, x, epsilon=0.25)
        assert jnp.allclose(got, loss(x) + 0.25 * jnp.linalg.norm(w), rtol=1e-14)


def test_fgm_gradient_matches_gradient_penalty_gradient_to_second_order():
    """∇θ L(x + ε ĝ) − ∇θ[L + ε‖g‖] = O(ε²), and ∇θ L(x + ε g) − ∇θ[L + ½ε‖g‖²] = O(ε²)."""
    with jax.enable_x64(True):
        theta, x = theta_and_x(3)

        def error(eps, normalised):
            if normalised:
                adv = jax.grad(lambda t: reg.adversarial_loss(lambda z: xent(t, z), x, epsilon=eps))

                def penalised(t):
                    return xent(t, x) + eps * jnp.sqrt(
                        reg.gradient_penalty(lambda z: xent(t, z), x)
                    )
            else:

                def step(t):
                    g = jax.lax.stop_gradient(jax.grad(xent, argnums=1)(t, x))
                    return xent(t, x + eps * g)

                adv = jax.grad(step)

                def penalised(t):
                    return xent(t, x) + 0.5 * eps * reg.gradient_penalty(lambda z: xent(t, z), x)

            diff = jax.tree.map(jnp.subtract, adv(theta), jax.grad(penalised)(theta))
            return jnp.sqrt(sum(jnp.sum(d**2) for d in jax.tree.leaves(diff)))

        for normalised in (True, False):
            e1, e2 = error(1e-2, normalised), error(5e-3, normalised)
            assert 3.5 < e1 / e2 < 4.5, (normalised, e1, e2)


# ----------------------------------------------------------------------------- VAT


def test_kl_hessian_in_probabilities_is_diag_inverse_f():
    """Pulled back through softmax, diag(1/f) gives the logit Hessian of the KL at F = f."""
    with jax.enable_x64(True):
        z = normal(0, (4,))
        f = jax.nn.softmax(z)
        hess = jax.hessian(lambda u: _kl_from_logits(f, u))(z)
        jac = jax.jacobian(jax.nn.softmax)(z)
        np.testing.assert_allclose(hess, jac.T @ jnp.diag(1 / f) @ jac, atol=1e-13)
        np.testing.assert_allclose(hess, jnp.diag(f) - jnp.outer(f, f), atol=1e-13)
        assert abs(_kl_from_logits(f, z)) < 1e-15


def linear_softmax(seed=0, classes=3, dim=6):
    w, x = normal(seed, (classes, dim)), normal(seed + 1, (dim,))
    p = jax.nn.softmax(w @ x)
    hessian = w.T @ (jnp.diag(p) - jnp.outer(p, p)) @ w
    values, vectors = jnp.linalg.eigh(hessian)
    return w, x, vectors[:, -1], values


def test_vat_direction_converges_to_top_eigenvector_of_kl_hessian():
    with jax.enable_x64(True):
        w, x, top, values = linear_softmax()
        assert values[-1] > 1.5 * values[-2]  # a clear spectral gap

        def alignment(iters):
            d = reg.vat_direction(jax.random.key(1), lambda z: w @ z, x, xi=1e-5, num_steps=iters)
            assert jnp.allclose(jnp.linalg.norm(d), 1.0, rtol=1e-14)
            return abs(d @ top)

        aligns = [alignment(r) for r in (0, 1, 3, 10, 60)]
        assert all(a <= b + 1e-12 for a, b in itertools.pairwise(aligns)), aligns
        assert 1 - aligns[-1] < 1e-8
        assert aligns[0] < 0.9


def test_vat_zero_power_iterations_is_a_random_unit_direction():
    w1, w2, x = normal(0, (3, 5), jnp.float32), normal(1, (3, 5), jnp.float32), jnp.ones(5)
    d1 = reg.vat_direction(jax.random.key(7), lambda z: w1 @ z, x, num_steps=0)
    d2 = reg.vat_direction(jax.random.key(7), lambda z: w2 @ z, x, num_steps=0)
    d3 = reg.vat_direction(jax.random.key(8), lambda z: w1 @ z, x, num_steps=0)
    assert jnp.array_equal(d1, d2)  # independent of the model
    assert not jnp.allclose(d1, d3)  # but depends on the key
    np.testing.assert_allclose(jnp.linalg.norm(d1), 1.0, rtol=1e-6)


def test_vat_direction_is_unit_even_for_tiny_xi_in_float32():
    w, x = normal(0, (3, 5), jnp.float32), normal(1, (5,), jnp.float32)
    for xi in (10.0, 1e-6, 1e-30, 0.0):
        d = reg.vat_direction(jax.random.key(0), lambda z: w @ z, x, xi=xi, num_steps=2)
        assert d.dtype == jnp.float32
        np.testing.assert_allclose(jnp.linalg.norm(d), 1.0, rtol=1e-6)


def test_vat_loss_nonnegative_second_order_and_stopped():
    with jax.enable_x64(True):
        w, x, _, values = linear_softmax(2)

        @functools.partial(jax.jit, static_argnums=(3,))
        def loss(k, w, eps=1e-3, iters=30):
            return reg.vat_loss(k, lambda z: w @ z, x, epsilon=eps, xi=1e-6, num_steps=iters)

        keys = jax.random.split(jax.random.key(0), 16)
        losses = jax.vmap(lambda k: loss(k, w, 0.5, 1))(keys)
        assert jnp.all(losses >= 0)
        # ε small: KL ≈ ½ε²λ_max along the top eigenvector, and above a random direction's.
        np.testing.assert_allclose(loss(keys[0], w), 0.5 * 1e-6 * values[-1], rtol=1e-2)
        random_dir = jax.vmap(lambda k: loss(k, w, 1e-3, 0))(keys)
        assert jnp.all(random_dir <= loss(keys[0], w) * (1 + 1e-9))

        d = jax.jit(lambda k: reg.vat_direction(k, lambda z: w @ z, x, xi=1e-6, num_steps=30))(
            keys[0]
        )
        p = jax.nn.softmax(w @ x)
        got = jax.jit(jax.grad(lambda w: loss(keys[0], w)))(w)
        expected = jax.jit(jax.grad(lambda w: _kl_from_logits(p, w @ (x + 1e-3 * d))))(w)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


# ----------------------------------------------------------------------------- masks


def test_mask_keeps_padding_unperturbed():
    ids = jnp.array([5, 3, 7, 0, 0])
    mask = ids > 0
    model = CharCNN(vocab_size=10, embed_dim=4, channels=6)
    params = jax.jit(model.init)(jax.random.key(0), ids[None], mask[None])
    emb = jax.jit(lambda p: model.apply(p, ids, method=CharCNN.embed))(params)

    def leaky(e):  # a model that would read padding if it were perturbed
        return jnp.stack([jnp.sum(jnp.sin(e)), jnp.sum(e**2)])

    def loss(e):
        return -jax.nn.log_softmax(leaky(e))[0]

    delta = jax.jit(lambda e: reg.fgm_perturbation(loss, e, epsilon=0.5, mask=mask))(emb)
    assert jnp.all(delta[~mask] == 0) and jnp.any(delta[mask] != 0)
    np.testing.assert_allclose(jnp.linalg.norm(delta), 0.5, rtol=1e-6)
    d = jax.jit(lambda e: reg.vat_direction(jax.random.key(1), leaky, e, mask=mask))(emb)
    assert jnp.all(d[~mask] == 0)
    np.testing.assert_allclose(jnp.linalg.norm(d), 1.0, rtol=1e-6)

    def padding_only(e):
        return jnp.sum(e[3:] ** 2)

    noisy = jax.jit(
        lambda e: reg.noisy_loss(jax.random.key(2), padding_only, e, stdev=1.0, mask=mask)
    )(emb)
    assert noisy == padding_only(emb)

    def classify(e):
        return model.apply(params, e, mask, method=CharCNN.classify)

    assert jax.jit(lambda e: reg.vat_loss(jax.random.key(3), classify, e, mask=mask))(emb) >= 0


def test_batchnorm_recipe_keeps_running_statistics_of_the_clean_pass():
    """The documented flax recipe: perturbed pass with mutable=["batch_stats"], result dropped."""

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(nn.Dense(4)(x))
            return nn.Dense(2)(nn.relu(x))

    net, x, y = Net(), normal(0, (8, 3), jnp.float32), jnp.arange(8) % 2
    variables = net.init(jax.random.key(0), x, train=False)

    def loss(params, stats, xb):
        out, updates = net.apply(
            {"params": params, "batch_stats": stats}, xb, train=True, mutable=["batch_stats"]
        )
        return -jnp.mean(jax.nn.log_softmax(out)[jnp.arange(8), y]), updates["batch_stats"]

    def total(params, stats):
        clean, new_stats = loss(params, stats, x)
        adv = reg.adversarial_loss(lambda xb: loss(params, stats, xb)[0], x, epsilon=1.0)
        return clean + adv, new_stats

    (_, new_stats), grads = jax.jit(jax.value_and_grad(total, has_aux=True))(
        variables["params"], variables["batch_stats"]
    )
    _, clean_only = jax.jit(loss)(variables["params"], variables["batch_stats"], x)
    chex.assert_trees_all_equal(new_stats, clean_only)
    assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))


# ----------------------------------------------------------------------------- transforms


def all_functions(w):
    def loss(z):
        return -jax.nn.log_softmax(w @ z)[0]

    def logits(z):
        return w @ z

    return {
        "noisy_loss": lambda k, x: reg.noisy_loss(k, loss, x, stdev=0.3, num_samples=3),
        "gradient_penalty": lambda k, x: reg.gradient_penalty(loss, x),
        "jacobian_penalty": lambda k, x: reg.jacobian_penalty(None, logits, x),
        "jacobian_penalty_key": lambda k, x: reg.jacobian_penalty(k, logits, x),
        "fgm_perturbation": lambda k, x: reg.fgm_perturbation(loss, x, epsilon=0.5),
        "adversarial_loss": lambda k, x: reg.adversarial_loss(loss, x, epsilon=0.5),
        "vat_direction": lambda k, x: reg.vat_direction(k, logits, x, xi=1e-2),
        "vat_loss": lambda k, x: reg.vat_loss(k, logits, x, xi=1e-2, num_steps=2),
    }


class JitEqualsEagerTest(chex.TestCase):
    """Each regulariser vmapped, with and without jit, equals an eager loop over the batch."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*sorted(all_functions(None)))
    def test_jit_equals_eager_and_vmap_equals_loop(self, name):
        w = normal(0, (3, 5), jnp.float32)
        fn = all_functions(w)[name]
        keys = jax.random.split(jax.random.key(1), 4)
        xs = normal(2, (4, 5), jnp.float32)
        eager = [fn(k, x) for k, x in zip(keys, xs, strict=True)]
        # VAT's direction is the gradient of a KL that is O(ξ²) = 1e-4: float32 rounding of
        # the O(1) log-probabilities (~1e-7) reaches ~1e-5 of the unit vector once divided by ξ.
        atol = 1e-4 if name == "vat_direction" else 1e-6
        batched = self.variant(jax.vmap(fn))(keys, xs)
        chex.assert_trees_all_close(batched, jnp.stack(eager), rtol=1e-5, atol=atol)
        assert jnp.result_type(eager[0]) == jnp.float32


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_perturbations_keep_the_input_dtype(dtype):
    w, x = normal(0, (3, 5), jnp.float32), jnp.ones(5, dtype)

    def logits(z):
        return w @ z.astype(jnp.float32)

    def loss(z):
        return -jax.nn.log_softmax(logits(z))[0]

    delta = reg.fgm_perturbation(loss, x, epsilon=0.5)
    d = reg.vat_direction(jax.random.key(0), logits, x)
    assert delta.dtype == dtype and d.dtype == dtype
    tol = 1e-6 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(jnp.linalg.norm(delta.astype(jnp.float32)), 0.5, rtol=tol)
    np.testing.assert_allclose(jnp.linalg.norm(d.astype(jnp.float32)), 1.0, rtol=tol)


def test_traced_hyperparameters_give_what_concrete_ones_give():
    """epsilon and stdev passed into jit (traced, so unchecked) give the eager results."""
    x, key = jnp.array([0.3, -1.0, 2.0]), jax.random.key(0)

    def loss(z):
        return jnp.sum(jnp.sin(z))

    @jax.jit
    def f(eps, stdev):
        delta = reg.fgm_perturbation(loss, x, epsilon=eps)
        return delta, reg.noisy_loss(key, loss, x, stdev=stdev, num_samples=4)

    delta, noisy = f(0.5, 0.1)
    np.testing.assert_allclose(delta, reg.fgm_perturbation(loss, x, epsilon=0.5), rtol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(delta), 0.5, rtol=1e-6)
    eager = reg.noisy_loss(key, loss, x, stdev=0.1, num_samples=4)
    np.testing.assert_allclose(noisy, eager, rtol=1e-6)
    assert noisy != loss(x)  # the noise was applied


def test_documented_edge_answers():
    """Edge input whose answer is a legitimate value, as the docstrings say."""
    w, x = jnp.array([[1.0, -2.0, 0.5]]), jnp.array([0.3, -1.0, 2.0])
    # One class: softmax is 1 whatever x is, so every KL, VAT's included, is exactly 0.
    assert reg.vat_loss(jax.random.key(0), lambda z: w @ z, x, epsilon=1.0) == 0
    # No outputs: the Jacobian penalty is an empty sum.
    assert reg.jacobian_penalty(None, lambda z: z[:0], x) == 0
    # Everything masked: nothing may move, so the perturbation is zero (not NaN).
    delta = reg.fgm_perturbation(jnp.sum, x, epsilon=1.0, mask=jnp.zeros(3, bool))
    np.testing.assert_array_equal(delta, jnp.zeros(3))


def test_no_retrace_on_second_call():
    chex.clear_trace_counter()

    def loss(z):
        return jnp.sum(jnp.sin(z))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(x):
        return jax.grad(lambda z: reg.adversarial_loss(loss, z, epsilon=0.1))(x)

    step(jnp.ones(3))
    step(jnp.zeros(3))  # new values, same shapes: a retrace would raise
