"""PGD (L∞, L2) and TRADES against closed forms (Madry et al. 2018; Zhang et al. 2019)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import regularizers as reg
from gradjax.regularizers._vat import _kl_from_logits

EPS32 = float(jnp.finfo(jnp.float32).eps)


def normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def small_net(seed=0, dim=6, hidden=8, classes=3):
    """A two-layer tanh net with fixed random weights: x (dim,) -> logits (classes,)."""
    w1, w2 = normal(seed, (hidden, dim)), normal(seed + 1, (classes, hidden))
    return lambda x: w2 @ jnp.tanh(w1 @ x)


def xent(logits_fn, label=0):
    return lambda x: -jax.nn.log_softmax(logits_fn(x))[label]


def linf(d):
    return float(jnp.max(jnp.abs(d)))


# ----------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_keeps_the_ball_and_the_bounds(norm):
    """‖δ‖ ≤ ε and lo ≤ x + δ ≤ hi after large steps from x on the edge of [0, 1]."""
    x = jnp.array([0.0, 0.02, 0.5, 0.97, 1.0, 0.3])
    eps = 0.2 if norm == "linf" else 0.3
    delta = reg.pgd_perturbation(
        jax.random.key(0),
        xent(small_net()),
        x,
        epsilon=eps,
        num_steps=5,
        step_size=eps,  # large steps, so every iterate needs projecting
        norm=norm,
        bounds=(0.0, 1.0),
    )
    size = linf(delta) if norm == "linf" else float(jnp.linalg.norm(delta))
    assert size <= eps * (1 + 4 * EPS32)  # L2: the rescaling ε/‖δ‖ rounds by a few ulps
    assert size > 0.5 * eps  # the walk did move
    assert jnp.all(x + delta >= -EPS32) and jnp.all(x + delta <= 1 + EPS32)


def test_linear_loss_with_bounds_reaches_the_clipped_linf_optimum():
    """argmax wᵀδ over ‖δ‖∞ ≤ ε and 0 ≤ x + δ ≤ 1 is clip(ε·sign(w), −x, 1 − x)."""
    w, x = normal(0, (8,)), jnp.array([0.0, 0.05, 0.5, 0.95, 1.0, 0.3, 0.7, 0.1])
    delta = reg.pgd_perturbation(
        jax.random.key(1), lambda z: w @ z, x, epsilon=0.1, num_steps=10, bounds=(0, 1)
    )
    np.testing.assert_allclose(delta, jnp.clip(0.1 * jnp.sign(w), -x, 1 - x), atol=EPS32)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_loss_reaches_the_optimum_from_a_random_start(norm):
    """The optimum of wᵀδ on the ε-ball: ε·sign(w) (L∞), ε·w/‖w‖ (L2).

    L∞: steps of 0.25ε saturate every coordinate within 8 of the 10 default steps. L2: once on
    the sphere, each step scales the part orthogonal to w by ε/‖δ + αu‖ ≤ 1/(1 + ¼·cos) with
    α = ε/4; 100 steps take it below float32 rounding.
    """
    w, eps = normal(0, (5,)), 0.3
    steps, step = (10, None) if norm == "linf" else (100, eps / 4)
    delta = reg.pgd_perturbation(
        jax.random.key(2),
        lambda z: w @ z,
        jnp.zeros(5),
        epsilon=eps,
        num_steps=steps,
        step_size=step,
        norm=norm,
    )
    optimum = eps * (jnp.sign(w) if norm == "linf" else w / jnp.linalg.norm(w))
    np.testing.assert_allclose(delta, optimum, atol=1e-6)


def test_one_step_from_zero_is_fgsm_and_fgm():
    """num_steps=1, no random start, step ε: ε·sign(g) (L∞) and fgm_perturbation (L2)."""
    loss, x, eps = xent(small_net()), normal(3, (6,)), 0.25
    g = jax.grad(loss)(x)

    def one_step(norm):
        return reg.pgd_perturbation(
            jax.random.key(0), loss, x, epsilon=eps, num_steps=1, step_size=eps,
            norm=norm, random_start=False,
        )  # fmt: skip

    np.testing.assert_array_equal(one_step("linf"), eps * jnp.sign(g))
    fgm = reg.fgm_perturbation(loss, x, epsilon=eps)
    np.testing.assert_allclose(fgm, eps * g / jnp.linalg.norm(g), rtol=1e-6)
    # The projection rescales by ε/‖δ‖ with ‖δ‖ = ε up to float32 rounding of the norm.
    np.testing.assert_allclose(one_step("l2"), fgm, rtol=0, atol=4 * EPS32 * eps)


def test_pgd_finds_a_larger_loss_than_fgsm_on_a_small_net():
    """Over 32 inputs of a nonlinear net, 10 PGD steps raise the mean loss above one FGSM step."""
    net, eps = small_net(seed=4), 0.5
    xs, labels = normal(5, (32, 6)), jnp.arange(32) % 3
    keys = jax.random.split(jax.random.key(6), 32)

    def both(key, x, y):
        loss = xent(net, y)
        fgsm = x + eps * jnp.sign(jax.grad(loss)(x))
        pgd = x + reg.pgd_perturbation(key, loss, x, epsilon=eps)
        return loss(fgsm), loss(pgd)

    fgsm, pgd = jax.jit(jax.vmap(both))(keys, xs, labels)
    assert jnp.mean(pgd) > jnp.mean(fgsm) + 0.01
    assert jnp.mean(pgd >= fgsm - 1e-6) >= 0.9


def test_mask_keeps_padding_unperturbed():
    x = normal(7, (4, 3))
    mask = jnp.array([True, True, False, False])

    def loss(z):  # depends on the padding rows too
        return jnp.sum(jnp.sin(z) * jnp.arange(12.0).reshape(4, 3))

    for norm in ("linf", "l2"):
        delta = reg.pgd_perturbation(
            jax.random.key(8), loss, x, epsilon=0.2, norm=norm, mask=mask, bounds=(-5, 5)
        )
        assert jnp.all(delta[~mask] == 0) and jnp.all(delta[mask] != 0)
    kl = reg.trades_loss(
        jax.random.key(9), lambda z: jnp.stack([jnp.sum(z[2:]), 0.0]), x, epsilon=0.2, mask=mask
    )
    assert kl == 0  # the logits read only padding, which is never perturbed


def test_pytree_input_and_global_l2_norm():
    x = {"a": normal(10, (3,)), "b": normal(11, (2, 2))}
    w = {"a": normal(12, (3,)), "b": normal(13, (2, 2))}

    def loss(z):
        return sum(jnp.vdot(w[k], z[k]) for k in z)

    delta = reg.pgd_perturbation(
        jax.random.key(0), loss, x, epsilon=0.3, norm="l2", random_start=False, num_steps=4
    )  # four steps of ε/4 along w/‖w‖ land on the optimum
    norm_w = jnp.sqrt(sum(jnp.sum(v**2) for v in w.values()))
    chex.assert_trees_all_close(delta, jax.tree.map(lambda v: 0.3 * v / norm_w, w), atol=1e-6)


# ----------------------------------------------------------------------------- TRADES


def test_trades_is_zero_for_a_model_constant_in_x():
    x = normal(14, (6,))

    def constant(z):
        return jnp.array([1.0, -2.0, 0.5]) + 0 * jnp.sum(z)

    assert reg.trades_loss(jax.random.key(0), constant, x, epsilon=0.3) == 0


def test_trades_reaches_a_corner_of_the_ball_on_a_two_class_linear_model():
    """For logits Wx with two classes, KL(p ‖ q(x + δ)) depends on t = (w₁ − w₂)ᵀδ only and is
    convex in t with its minimum at t = 0: its maxima over the L∞ ball are the corners
    ±ε·sign(w₁ − w₂), and PGD from a tiny start walks to one of them."""
    w, x, eps = normal(15, (2, 6)), normal(16, (6,)), 0.3
    p = jax.nn.softmax(w @ x)
    corner = eps * jnp.sign(w[0] - w[1])
    corner_kl = [_kl_from_logits(p, w @ (x + s * corner)) for s in (1, -1)]
    keys = jax.random.split(jax.random.key(0), 3)
    for trades in jax.vmap(lambda k: reg.trades_loss(k, lambda z: w @ z, x, epsilon=eps))(keys):
        assert min(abs(trades - c) / c for c in corner_kl) < 1e-5

    # The gradient w.r.t. the weights flows through the perturbed branch only (p and δ are
    # constants): it is ∇_W KL(p ‖ softmax(W(x + δ))) at the corner δ that was reached.
    def trades_of(v):
        return reg.trades_loss(jax.random.key(0), lambda z: v @ z, x, epsilon=eps)

    value, grad = jax.value_and_grad(trades_of)(w)
    sign = 1 if abs(value - corner_kl[0]) < abs(value - corner_kl[1]) else -1
    expected = jax.grad(lambda v: _kl_from_logits(p, v @ (x + sign * corner)))(w)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_pgd_perturbation_is_a_constant_for_differentiation():
    theta, x = normal(23, (3, 6)), normal(24, (6,))

    def attacked_sum(t):
        loss = xent(lambda z: t @ z)
        return jnp.sum(reg.pgd_perturbation(jax.random.key(0), loss, x, epsilon=0.1, norm="l2"))

    np.testing.assert_array_equal(jax.grad(attacked_sum)(theta), jnp.zeros((3, 6)))


# ----------------------------------------------------------------------------- transforms


def test_nan_gradient_propagates():
    """A loss whose gradient is NaN gives a NaN perturbation, never a finite-looking one."""
    x = jnp.array([1.0, 0.0, 2.0])

    def loss(z):  # at z₂ = 0 the gradient is 0 · d√z/dz = 0 · inf = NaN
        return jnp.sum(jnp.sqrt(z) * jnp.array([1.0, 0.0, 1.0]))

    assert jnp.isnan(jax.grad(loss)(x)).any()
    key, start = jax.random.key(0), {"random_start": False, "epsilon": 0.1}  # first step at x
    linf_delta = reg.pgd_perturbation(key, loss, x, **start)
    l2_delta = reg.pgd_perturbation(key, loss, x, norm="l2", **start)
    assert jnp.isnan(linf_delta).any() and jnp.isnan(l2_delta).all()
    assert jnp.isnan(reg.fgm_perturbation(loss, x, epsilon=0.1)).all()


def test_jit_and_vmap_with_no_retrace():
    """jit == eager, vmap over a batch == a loop over it, and the jitted step traces once."""
    net = small_net(seed=20)
    xs, labels = jax.random.uniform(jax.random.key(21), (4, 6)), jnp.arange(4) % 3
    keys = jax.random.split(jax.random.key(22), 4)

    def both(key, x, y):
        kwargs = {"epsilon": 0.1, "num_steps": 3, "bounds": (0.0, 1.0)}
        delta = reg.pgd_perturbation(key, xent(net, y), x, norm="l2", **kwargs)
        return delta, reg.trades_loss(key, net, x, **kwargs)

    single = jax.jit(chex.assert_max_traces(n=1)(lambda *args: both(*args)))
    batched = jax.jit(jax.vmap(chex.assert_max_traces(n=1)(lambda *args: both(*args))))
    loop = [single(k, x, y) for k, x, y in zip(keys, xs, labels, strict=True)]
    chex.assert_trees_all_close(loop[0], both(keys[0], xs[0], labels[0]), atol=1e-6)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *loop)
    chex.assert_trees_all_close(batched(keys, xs, labels), stacked, rtol=1e-5, atol=1e-6)
    batched(keys, xs + 0.01, labels)  # a second call with new data must not retrace


def test_dtype_is_kept():
    x = jnp.full(4, 0.5, jnp.bfloat16)

    def loss(z):
        return jnp.sum(jnp.arange(1.0, 5.0) * z.astype(jnp.float32))

    for norm in ("linf", "l2"):
        delta = reg.pgd_perturbation(jax.random.key(0), loss, x, epsilon=0.25, norm=norm)
        assert delta.dtype == jnp.bfloat16


def test_traced_epsilon_and_step_size_are_accepted_under_jit():
    w = jnp.array([1.0, -1.0])

    @jax.jit
    def f(eps, step):
        return reg.pgd_perturbation(
            jax.random.key(0), lambda z: w @ z, jnp.zeros(2), epsilon=eps, step_size=step
        )

    np.testing.assert_allclose(f(0.2, 0.1), [0.2, -0.2])
    # Data closed over (concrete inside jit: the bounds check runs) or passed in: the same.
    x = jnp.array([0.5, 0.95])

    def trades(z):
        return reg.trades_loss(jax.random.key(1), lambda u: w * u, z, epsilon=0.1, bounds=(0, 1))

    np.testing.assert_allclose(jax.jit(lambda: trades(x))(), jax.jit(trades)(x), rtol=1e-6)
