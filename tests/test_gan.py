"""gradjax.gan: GAN-QP and hinge losses, and the single-loss stop_gradient step."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradjax import gan
from gradjax.models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator

# --- helpers ------------------------------------------------------------------------------


def np_qp(t_real, t_fake, x_real, x_fake, lam, distance):
    """GAN-QP written out in NumPy float64, pair by pair."""
    t_real, t_fake = np.ravel(t_real), np.ravel(t_fake)
    d_terms = []
    for i in range(len(t_real)):
        diff = np.asarray(x_real[i], np.float64) - np.asarray(x_fake[i], np.float64)
        d = np.mean(np.abs(diff)) if distance == "l1" else np.sqrt(np.mean(diff**2))
        delta = t_real[i] - t_fake[i]
        d_terms.append(-delta + delta**2 / (2 * lam * d))
    return np.mean(d_terms), np.mean(t_real - t_fake)


def players(dtype=jnp.float64):
    """A tiny MLP generator/critic pair with parameters cast to ``dtype``."""
    gen, critic = MLPGenerator(hidden=(8, 8), out_dim=3), MLPCritic(hidden=(8, 8))
    kg, kd, kx, kz = jax.random.split(jax.random.key(0), 4)
    params = {
        "generator": gen.init(kg, jnp.zeros((1, 2))),
        "discriminator": critic.init(kd, jnp.zeros((1, 3))),
    }
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x_real = jax.random.normal(kx, (6, 3), dtype)
    z = jax.random.normal(kz, (6, 2), dtype)
    return gen.apply, critic.apply, params, x_real, z


def separate_grads(losses, generator, discriminator, params, x_real, z):
    """∇_D d_loss and ∇_G g_loss, each from its own backward pass."""

    def d_loss(pd):
        x_fake = generator(params["generator"], z)
        return losses(discriminator(pd, x_real), discriminator(pd, x_fake), x_real, x_fake)[0]

    def g_loss(pg):
        x_fake = generator(pg, z)
        pd = params["discriminator"]
        return losses(discriminator(pd, x_real), discriminator(pd, x_fake), x_real, x_fake)[1]

    # Eager: on these tiny players four compilations cost more than the eager passes.
    return (
        jax.grad(d_loss)(params["discriminator"]),
        jax.grad(g_loss)(params["generator"]),
        d_loss(params["discriminator"]),
        g_loss(params["generator"]),
    )


F64 = {"rtol": 1e-12, "atol": 1e-14}  # float64 comparisons of two exact routes

LOSSES = {
    "qp_l1": functools.partial(gan.qp_losses, distance="l1"),
    "qp_l2": functools.partial(gan.qp_losses, distance="l2", lam=3.0),
    "hinge": gan.hinge_losses,
}

# --- GAN-QP values and optima -------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["l1", "l2"])
@pytest.mark.parametrize("score_shape", [(4,), (4, 1)])
def test_qp_losses_closed_form(distance, score_shape):
    rng = np.random.default_rng(0)
    t_real, t_fake = rng.normal(size=score_shape), rng.normal(size=score_shape)
    x_real, x_fake = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
    with jax.enable_x64(True):
        got = gan.qp_losses(t_real, t_fake, x_real, x_fake, lam=2.5, distance=distance)
    want = np_qp(t_real, t_fake, x_real, x_fake, 2.5, distance)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_qp_losses_hand_computed_pair():
    # one pair: Δ = 3 − 1 = 2; L1 d = mean(|1|, |3|) = 2, L2 d = sqrt((1 + 9) / 2) = sqrt(5)
    t_real, t_fake = jnp.array([3.0]), jnp.array([1.0])
    x_real, x_fake = jnp.array([[1.0, 3.0]]), jnp.array([[0.0, 0.0]])
    d1, g1 = gan.qp_losses(t_real, t_fake, x_real, x_fake, lam=10.0, distance="l1")
    d2, g2 = gan.qp_losses(t_real, t_fake, x_real, x_fake, lam=10.0, distance="l2")
    np.testing.assert_allclose(d1, -2 + 4 / (2 * 10 * 2), rtol=1e-6)
    np.testing.assert_allclose(d2, -2 + 4 / (2 * 10 * np.sqrt(5)), rtol=1e-6)
    np.testing.assert_allclose([g1, g2], [2.0, 2.0])


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_qp_identical_pair_has_finite_loss_and_gradients_and_its_optimum_tends_to_zero(distance):
    # d is floored at eps, so d_loss = mean(−Δ + Δ²/(2λ·eps)): finite, with gradients finite
    # in Δ and in x_fake, and its minimiser Δ* = λ·eps, the limit 0 of λd as d → 0.
    x, lam = jnp.ones((2, 3)), 10.0
    optimum = lam * float(jnp.finfo(jnp.float32).eps)

    def d_loss(t, x_f):
        return gan.qp_losses(t, jnp.zeros(2), x, x_f, lam=lam, distance=distance)[0]

    grad = jax.jit(jax.value_and_grad(d_loss, argnums=(0, 1)))
    value, (g_t, g_x) = grad(jnp.zeros(2), x)
    assert value == 0 and np.all(np.isfinite(g_x))
    np.testing.assert_allclose(g_t, [-0.5, -0.5])  # −1/B per pair
    value, (g_t, _) = grad(jnp.full(2, optimum), x)  # the gradient vanishes at Δ*
    np.testing.assert_allclose(g_t, 0.0, atol=1e-6)
    np.testing.assert_allclose(value, -optimum / 2, rtol=1e-5)


@pytest.mark.parametrize("distance", ["l1", "l2"])
@pytest.mark.parametrize("lam", [1.0, 10.0])
def test_point_mass_optimum_is_lambda_d(distance, lam):
    # p = δ(α), q = δ(β): gradient descent on a free Δ converges to λd, d_loss to −λd/2.
    alpha, beta = jnp.array([[0.5, -1.0, 2.0]]), jnp.array([[0.0, 0.0, 0.0]])
    d = np.mean([0.5, 1.0, 2.0]) if distance == "l1" else np.sqrt(np.mean([0.25, 1.0, 4.0]))

    def d_loss(delta):
        return gan.qp_losses(delta, jnp.zeros(1), alpha, beta, lam=lam, distance=distance)[0]

    delta = jnp.zeros(1)
    for _ in range(60):  # d_loss is a parabola with curvature 1/(λd): lr λd/2 halves the error
        delta = delta - 0.5 * lam * d * jax.grad(d_loss)(delta)
    np.testing.assert_allclose(delta[0], lam * d, rtol=1e-5)
    np.testing.assert_allclose(d_loss(delta), -lam * d / 2, rtol=1e-5)


def tabular_qp_optimum(p, q, points, lam):
    """Minimises the QP critic loss over a tabular antisymmetric Δ_ij = A_ij − A_ji.

    Pairs (i, j) are repeated 16·p_i·q_j times (p, q are multiples of 1/4), so the
    mean over the batch is the expectation over p(x_r)q(x_f). The loss is quadratic
    in A, so one pseudo-inverse Newton step from 0 is exact.
    """
    n = len(p)
    rows = [(i, j) for i in range(n) for j in range(n) for _ in range(round(16 * p[i] * q[j]))]
    assert len(rows) == 16
    ii, jj = np.array(rows).T
    x_real, x_fake = points[ii], points[jj]

    def d_loss(a_flat):
        a = a_flat.reshape(n, n)
        delta = (a - a.T)[ii, jj]
        return gan.qp_losses(delta, jnp.zeros(16), x_real, x_fake, lam=lam, distance="l2")[0]

    @jax.jit
    def newton_from_zero():
        a0 = jnp.zeros(n * n)
        a = a0 - jnp.linalg.pinv(jax.hessian(d_loss)(a0), hermitian=True) @ jax.grad(d_loss)(a0)
        return a.reshape(n, n) - a.reshape(n, n).T, d_loss(a)

    return newton_from_zero()


def test_optimal_critic_ratio_on_discrete_problem():
    with jax.enable_x64(True):
        points = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
        dist = np.sqrt(np.mean((points[:, None] - points[None]) ** 2, axis=-1))
        p, q = np.array([0.5, 0.25, 0.25]), np.array([0.25, 0.25, 0.5])
        for lam in (1.0, 10.0):
            delta, value = tabular_qp_optimum(p, q, points, lam)
            pq = p[:, None] * q[None, :]
            want = (pq - pq.T) / (pq + pq.T)
            off = ~np.eye(3, dtype=bool)
            ratio = np.asarray(delta)[off] / (lam * dist[off])
            np.testing.assert_allclose(ratio, want[off], atol=1e-10)
            assert np.all(np.abs(ratio) <= 1)
            # the divergence −min d_loss = λ Σ p_i q_j ratio_ij d_ij / 2 · ... is > 0 for p ≠ q
            divergence = -float(value)
            np.testing.assert_allclose(divergence, lam * np.sum(pq * want * dist) / 2, rtol=1e-10)
            assert divergence > 0
        # scaling λ scales the optimal Δ linearly
        d1, _ = tabular_qp_optimum(p, q, points, 1.0)
        d10, _ = tabular_qp_optimum(p, q, points, 10.0)
        np.testing.assert_allclose(d10, 10 * d1, atol=1e-10)
        # p = q: the divergence is 0 and the optimal critic is Δ = 0
        delta, value = tabular_qp_optimum(p, p, points, 10.0)
        np.testing.assert_allclose(delta, 0.0, atol=1e-10)
        np.testing.assert_allclose(value, 0.0, atol=1e-10)


def test_hinge_losses_values():
    t_real = jnp.array([[2.0], [0.5], [-1.0]])
    t_fake = jnp.array([[-3.0], [0.0], [0.5]])
    d_loss, g_loss = gan.hinge_losses(t_real, t_fake)
    # relu(1 − t_real) = [0, 0.5, 2]; relu(1 + t_fake) = [0, 1, 1.5]
    np.testing.assert_allclose(d_loss, 2.5 / 3 + 2.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(g_loss, 2.5 / 3, rtol=1e-6)
    # samples are accepted and unused
    same = gan.hinge_losses(t_real[:, 0], t_fake[:, 0], jnp.ones((3, 2)), jnp.zeros((3, 2)))
    np.testing.assert_allclose(same, (d_loss, g_loss))


# --- single_loss ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_single_loss_gradients_equal_separate_gradients(name):
    losses = LOSSES[name]
    with jax.enable_x64(True):
        generator, discriminator, params, x_real, z = players()
        loss_fn = gan.single_loss(losses, generator, discriminator, g_weight=0.7)
        (value, aux), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, x_real, z)
        grad_d, grad_g, d_loss, g_loss = separate_grads(
            losses, generator, discriminator, params, x_real, z
        )
        chex.assert_trees_all_close(grads["discriminator"], grad_d, **F64)
        chex.assert_trees_all_close(
            grads["generator"], jax.tree.map(lambda g: 0.7 * g, grad_g), **F64
        )
        assert float(value) == float(aux["d_loss"])
        np.testing.assert_allclose(value, d_loss, rtol=1e-14)
        np.testing.assert_allclose(aux["g_loss"], g_loss, rtol=1e-14)


def test_stop_gradient_semantics_and_zero_weight_freezes_generator():
    with jax.enable_x64(True):
        generator, discriminator, params, x_real, z = players()
        grads = {
            w: jax.grad(
                gan.single_loss(gan.qp_losses, generator, discriminator, g_weight=w),
                has_aux=True,
            )(params, x_real, z)[0]
            for w in (0.0, 1.0, 3.0)
        }
        # D's gradient does not depend on g_weight (the generator term has none for D) ...
        for w in (1.0, 3.0):
            chex.assert_trees_all_equal(grads[w]["discriminator"], grads[0.0]["discriminator"])
        # ... G's gradient is linear in it and exactly zero at 0 (d_loss gives G nothing)
        chex.assert_trees_all_equal(
            grads[0.0]["generator"], jax.tree.map(jnp.zeros_like, grads[0.0]["generator"])
        )
        chex.assert_trees_all_close(
            grads[3.0]["generator"], jax.tree.map(lambda g: 3 * g, grads[1.0]["generator"]), **F64
        )
        # with g_weight = 0, SGD steps never move the generator
        loss_fn = gan.single_loss(gan.qp_losses, generator, discriminator, g_weight=0.0)
        opt = optax.sgd(0.1)

        @jax.jit
        def sgd_step(p, state):
            g, _ = jax.grad(loss_fn, has_aux=True)(p, x_real, z)
            updates, state = opt.update(g, state, p)
            return optax.apply_updates(p, updates), state

        state, p = opt.init(params), params
        for _ in range(3):
            p, state = sgd_step(p, state)
        chex.assert_trees_all_equal(p["generator"], params["generator"])
        assert not np.allclose(
            p["discriminator"]["params"]["Dense_0"]["kernel"],
            params["discriminator"]["params"]["Dense_0"]["kernel"],
        )


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_generator_gradient_independent_of_lambda_and_distance(distance):
    with jax.enable_x64(True):
        generator, discriminator, params, x_real, z = players()
        want = jax.grad(
            lambda pg: -jnp.mean(discriminator(params["discriminator"], generator(pg, z)))
        )(params["generator"])
        for lam in (0.1, 10.0):
            losses = functools.partial(gan.qp_losses, lam=lam, distance=distance)
            grads, _ = jax.grad(gan.single_loss(losses, generator, discriminator), has_aux=True)(
                params, x_real, z
            )
            chex.assert_trees_all_close(grads["generator"], want, **F64)


def test_one_sgd_step_equals_simultaneous_player_steps():
    lr, g_weight = 0.05, 2.0
    with jax.enable_x64(True):
        generator, discriminator, params, x_real, z = players()
        loss_fn = gan.single_loss(gan.qp_losses, generator, discriminator, g_weight=g_weight)
        grads, _ = jax.grad(loss_fn, has_aux=True)(params, x_real, z)
        updates, _ = optax.sgd(lr).update(grads, optax.sgd(lr).init(params), params)
        stepped = optax.apply_updates(params, updates)
        grad_d, grad_g, _, _ = separate_grads(
            gan.qp_losses, generator, discriminator, params, x_real, z
        )
        want_d = jax.tree.map(lambda p, g: p - lr * g, params["discriminator"], grad_d)
        want_g = jax.tree.map(lambda p, g: p - g_weight * lr * g, params["generator"], grad_g)
        chex.assert_trees_all_close(stepped["discriminator"], want_d, **F64)
        chex.assert_trees_all_close(stepped["generator"], want_g, **F64)


class JitEqualsEagerTest(chex.TestCase):
    """With and without jit: the losses match NumPy oracles, single_loss its eager self."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_single_loss_and_losses(self):
        generator, discriminator, params, x_real, z = players(jnp.float32)
        loss_fn = gan.single_loss(LOSSES["qp_l2"], generator, discriminator, g_weight=0.5)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        # rtol 1e-5: float32, and XLA may fuse the jitted critic passes differently.
        chex.assert_trees_all_close(
            self.variant(grad_fn)(params, x_real, z), grad_fn(params, x_real, z), rtol=1e-5
        )
        t_real, t_fake, x_fake = x_real[:, 0], x_real[:, 1], x_real[::-1]
        for distance, lam in (("l1", 10.0), ("l2", 3.0)):
            got = self.variant(LOSSES[f"qp_{distance}"])(t_real, t_fake, x_real, x_fake)
            want = np_qp(t_real, t_fake, x_real, x_fake, lam, distance)
            np.testing.assert_allclose(got, want, rtol=1e-5)
        hinge = self.variant(gan.hinge_losses)(t_real, t_fake)
        want = np.mean(np.maximum(1 - t_real, 0)) + np.mean(np.maximum(1 + t_fake, 0))
        np.testing.assert_allclose(hinge, (want, -np.mean(t_fake)), rtol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "want"),
    [(jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32), (jnp.float32, jnp.float32)],
)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_both_losses_share_one_dtype_float32_or_wider(name, dtype, want):
    rng = np.random.default_rng(1)
    t_real, t_fake = (jnp.asarray(rng.normal(size=4), dtype) for _ in range(2))
    x_real, x_fake = (jnp.asarray(rng.normal(size=(4, 3)), dtype) for _ in range(2))
    d_loss, g_loss = LOSSES[name](t_real, t_fake, x_real, x_fake)
    assert d_loss.dtype == want and g_loss.dtype == want
    # Formed in float32 from the low-precision values: equal to the float32 losses.
    wide = [jnp.asarray(a, jnp.float32) for a in (t_real, t_fake, x_real, x_fake)]
    np.testing.assert_allclose((d_loss, g_loss), LOSSES[name](*wide), rtol=1e-6)


def test_float64_and_uint8_inputs():
    with jax.enable_x64(True):
        t = jnp.array([1.0, 2.0], jnp.float64)
        x = jnp.zeros((2, 3), jnp.float64)
        assert all(a.dtype == jnp.float64 for a in gan.qp_losses(t, -t, x, x + 1))
    # uint8 images are differenced in float32, not wrapped around modulo 256.
    images = jnp.array([[0, 255]], jnp.uint8), jnp.array([[255, 0]], jnp.uint8)
    d_loss, _ = gan.qp_losses(jnp.array([1.0]), jnp.array([0.0]), *images, lam=1.0)
    np.testing.assert_allclose(d_loss, -1 + 1 / (2 * 255), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_nan_scores_or_samples_give_nan_losses(name):
    t, x = jnp.array([1.0, 2.0]), jnp.array([[1.0, 2.0], [3.0, 4.0]])
    nan_t = t.at[0].set(jnp.nan)
    assert np.all(np.isnan(jax.jit(LOSSES[name])(t, nan_t, x, -x)))  # both losses see t_fake
    assert np.isnan(jax.jit(LOSSES[name])(nan_t, t, x, -x)[0])
    if name != "hinge":  # hinge ignores the samples
        d_loss, g_loss = jax.jit(LOSSES[name])(t, -t, x.at[1, 0].set(jnp.nan), -x)
        assert np.isnan(d_loss) and np.isfinite(g_loss)  # only d_loss sees the distance


def test_traced_lam_and_g_weight_pass_unchecked_and_a_nan_shows():
    t, x = jnp.array([1.0, 2.0]), jnp.array([[1.0, 2.0], [3.0, 4.0]])
    d_loss = jax.jit(lambda lam: gan.qp_losses(t, -t, x, -x, lam=lam)[0])
    np.testing.assert_allclose(d_loss(10.0), gan.qp_losses(t, -t, x, -x, lam=10.0)[0])
    assert np.isnan(d_loss(jnp.nan))
    generator, critic = (lambda pg, z: pg * z), (lambda pd, x: jnp.sum(pd * x, axis=1))
    params = {"generator": jnp.ones(2), "discriminator": jnp.ones(2)}

    @jax.jit
    def grad_g(w):
        loss_fn = gan.single_loss(gan.hinge_losses, generator, critic, g_weight=w)
        return jax.grad(loss_fn, has_aux=True)(params, x, x)[0]["generator"]

    np.testing.assert_allclose(grad_g(2.0), 2 * grad_g(1.0))
    assert np.all(np.isnan(grad_g(jnp.nan)))


def linear_players(lam):
    """A 1-D location GAN: G(z) = z + b, T(x) = w·x, GAN-QP with λ, data fixed, float64."""
    kx, kz = jax.random.split(jax.random.key(0))
    x_real = jax.random.normal(kx, (8, 1), jnp.float64) + 2.0
    z = jax.random.normal(kz, (8, 1), jnp.float64)
    loss_fn = gan.single_loss(
        functools.partial(gan.qp_losses, lam=lam), lambda b, z: z + b, lambda w, x: w * x[:, 0]
    )
    return loss_fn, x_real, z


@pytest.mark.parametrize("lam", [1.0, 1e6])
def test_single_loss_sgd_on_gan_qp_converges_where_the_quadratic_term_damps_the_critic(lam):
    """Simultaneous SGD (step η) on one loss, Δx = x_r − z − b, A = mean|Δx|/λ:

        w ← w − η(−mean Δx + A·w),    b ← b + η·w    (∇_b g_loss = −w).

    Its fixed point is w = 0, b* = mean(x_r − z), and the error (w, b − b*) is multiplied
    by [[1 − ηA, −η], [η, 1]] per step, whose eigenvalues have modulus √(1 − ηA + η²): below
    1 when η < A (λ = 1: A = 1.42, η = 0.2, modulus 0.87, so 200 steps shrink the error
    by 1e-12), above 1 when the quadratic term vanishes (λ = 1e6, the linear critic of a
    WGAN without constraint: the players circle outwards).
    """
    with jax.enable_x64(True):
        loss_fn, x_real, z = linear_players(lam)
        lr, target = 0.2, float(jnp.mean(x_real - z))
        damping = float(jnp.mean(jnp.abs(x_real - z - target))) / lam
        modulus = np.sqrt(1 - lr * damping + lr**2)

        def step(params, _):
            grads, _ = jax.grad(loss_fn, has_aux=True)(params, x_real, z)
            return jax.tree.map(lambda p, g: p - lr * g, params, grads), None

        start = {"generator": jnp.zeros(()), "discriminator": jnp.zeros(())}
        params, _ = jax.jit(lambda p: jax.lax.scan(step, p, None, 200))(start)
        error = abs(float(params["generator"]) - target)
        if lam == 1.0:
            assert modulus < 0.87 and error < 1e-9 and abs(float(params["discriminator"])) < 1e-9
        else:
            assert modulus > 1 and error > 10 * target  # started at |b − b*| = target


def test_ring_quality_of_the_ring_itself():
    """Samples of the ring: every mode covered, and the fraction within 3 std of a mode is
    P(‖N(0, I₂)‖ ≤ 3) = 1 − exp(−9/2) (the modes are 1.5 apart, 77 std); the origin: none."""
    from gradjax.examples import gan as example

    n = 4000
    quality = example.ring_quality(example.sample_ring(jax.random.key(0), n))
    p = 1 - np.exp(-4.5)
    assert quality.modes_covered == 8 and quality.counts.sum() == round(quality.high_quality * n)
    assert abs(quality.high_quality - p) < 4 * np.sqrt(p * (1 - p) / n)
    origin = example.ring_quality(np.zeros((n, 2)))
    assert origin.modes_covered == 0 and origin.high_quality == 0


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution, channels", [(8, 1), (16, 3)])
def test_dcgan_shapes(resolution, channels):
    gen = DCGANGenerator(resolution=resolution, channels=channels, max_channels=16)
    critic = DCGANCritic(resolution=resolution, max_channels=16)
    z = jnp.zeros((2, 16))
    # Jitted (one compilation costs less than flax's eager op-by-op init of the convolutions);
    # the critic only by shape evaluation, as only its output shape is checked.
    x = jax.jit(lambda z: gen.apply(gen.init(jax.random.key(0), z), z))(z)
    assert x.shape == (2, resolution, resolution, channels)
    assert np.all(np.abs(x) <= 1)
    scores = jax.eval_shape(lambda x: critic.apply(critic.init(jax.random.key(1), x), x), x)
    assert scores.shape == (2,)
