"""Both clipping forms, global and per leaf: closed forms, bounds, optax equality, dtypes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradjax import optim

ALL_FORMS = [
    optim.clip_by_global_norm,
    optim.soft_clip_by_global_norm,
    optim.clip_by_leaf_norm,
    optim.soft_clip_by_leaf_norm,
]


def apply(transform, updates):
    return transform.update(updates, transform.init(updates))[0]


def global_norm(tree):
    return float(
        np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree)))
    )


def random_tree(seed, scale=1.0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {
        "w": scale * jax.random.normal(k1, (7, 3)),
        "b": [scale * jax.random.normal(k2, (3,)), scale * jax.random.normal(k3, ())],
    }


def test_closed_form_values():
    g = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}  # ‖g‖ = 5
    hard = apply(optim.clip_by_global_norm(1.0), g)
    soft = apply(optim.soft_clip_by_global_norm(1.0), g)
    np.testing.assert_allclose(hard["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(hard["b"], [[0.8]], rtol=1e-6)
    np.testing.assert_allclose(soft["a"], [0.5, 0.0], rtol=1e-6)  # 3 · 1/(5 + 1)
    np.testing.assert_allclose(soft["b"], [[4.0 / 6.0]], rtol=1e-6)
    # Below the threshold clip-1 is exactly the identity; clip-2 still shrinks.
    chex.assert_trees_all_equal(apply(optim.clip_by_global_norm(10.0), g), g)
    np.testing.assert_allclose(apply(optim.soft_clip_by_global_norm(10.0), g)["a"], [2.0, 0.0])


def test_leaf_forms_clip_each_leaf_on_its_own():
    g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4]), "c": jnp.array([0.0, 12.0])}
    hard = apply(optim.clip_by_leaf_norm(1.0), g)
    soft = apply(optim.soft_clip_by_leaf_norm(1.0), g)
    np.testing.assert_allclose(hard["a"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(hard["b"], g["b"])  # norm 0.5 <= 1: untouched
    np.testing.assert_allclose(hard["c"], [0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(soft["a"], [0.5, 2.0 / 3.0], rtol=1e-6)
    np.testing.assert_allclose(soft["b"], [0.2, 0.4 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(soft["c"], [0.0, 12.0 / 13.0], rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_soft_within_factor_two_of_hard_and_both_bounded(seed):
    gamma = float(jnp.exp(jax.random.normal(jax.random.key(100 + seed)) * 2.0))
    g = random_tree(seed, scale=10.0 ** (seed - 2))
    n = global_norm(g)
    hard, soft = (
        apply(optim.clip_by_global_norm(gamma), g),
        apply(optim.soft_clip_by_global_norm(gamma), g),
    )
    n_hard, n_soft = global_norm(hard), global_norm(soft)
    assert 0.5 * n_hard * (1 - 1e-6) <= n_soft <= n_hard * (1 + 1e-6)
    np.testing.assert_allclose(n_hard, min(n, gamma), rtol=1e-5)
    np.testing.assert_allclose(n_soft, gamma * n / (n + gamma), rtol=1e-5)
    assert n_soft <= gamma * (1 + 1e-6)
    # Direction preserved: every leaf is the input times one common positive factor.
    for out in (hard, soft):
        ratios = np.concatenate(
            [
                np.ravel(o) / np.ravel(x)
                for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(g), strict=True)
            ]
        )
        np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)


def test_soft_form_is_smooth_and_monotone_along_a_ray():
    direction = {"w": jnp.array([0.6, -0.8])}  # unit vector
    gamma = 2.0

    def out_norm(transform, t):
        out = transform.update({"w": t * direction["w"]}, optax.EmptyState())[0]
        return jnp.linalg.norm(out["w"])

    soft, hard = optim.soft_clip_by_global_norm(gamma), optim.clip_by_global_norm(gamma)
    ts = jnp.linspace(0.01, 20.0, 400)
    norms = jax.jit(jax.vmap(lambda t: out_norm(soft, t)))(ts)
    assert np.all(np.diff(np.asarray(norms)) > 0)  # strictly increasing in ‖g‖
    slopes = jax.jit(jax.vmap(jax.grad(lambda t: out_norm(soft, t))))(ts)
    np.testing.assert_allclose(slopes, gamma**2 / (ts + gamma) ** 2, rtol=1e-4)  # continuous
    # clip-1 has a kink at ‖g‖ = γ: slope 1 just below, 0 just above; clip-2 does not.
    below, above = gamma * (1 - 1e-3), gamma * (1 + 1e-3)
    assert float(jax.grad(lambda t: out_norm(hard, t))(below)) == pytest.approx(1.0)
    assert float(jax.grad(lambda t: out_norm(hard, t))(above)) == pytest.approx(0.0, abs=1e-6)
    soft_slope = jax.grad(lambda t: out_norm(soft, t))
    assert float(soft_slope(below)) == pytest.approx(float(soft_slope(above)), rel=1e-2)


def test_global_hard_form_equals_optax_also_inside_adam_chain():
    params = random_tree(0)
    grads = [random_tree(s, scale=3.0) for s in range(1, 6)]
    ours = optax.chain(optim.clip_by_global_norm(1.5), optax.adam(1e-2))
    theirs = optax.chain(optax.clip_by_global_norm(1.5), optax.adam(1e-2))
    s_ours, s_theirs, p_ours, p_theirs = ours.init(params), theirs.init(params), params, params
    for g in grads:
        u, s_ours = jax.jit(ours.update)(g, s_ours, p_ours)
        v, s_theirs = jax.jit(theirs.update)(g, s_theirs, p_theirs)
        p_ours, p_theirs = optax.apply_updates(p_ours, u), optax.apply_updates(p_theirs, v)
    chex.assert_trees_all_close(p_ours, p_theirs, rtol=1e-6, atol=1e-7)


def test_leaf_hard_form_equals_optax_block_rms_for_equal_leaf_sizes():
    # optax.clip_by_block_rms bounds each leaf's RMS = ‖g_i‖/√n: with threshold γ/√n it is
    # exactly per-leaf norm clipping when every leaf has n elements.
    g = {"a": 5.0 * jax.random.normal(jax.random.key(0), (4, 4)), "b": jnp.full((16,), 0.01)}
    ours = apply(optim.clip_by_leaf_norm(2.0), g)
    theirs = apply(optax.clip_by_block_rms(2.0 / 4.0), g)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6)


@pytest.mark.parametrize("form", ALL_FORMS)
def test_zero_gradient_gives_zeros(form):
    g = {"a": jnp.zeros((3,)), "b": jnp.zeros((2, 2), jnp.bfloat16)}
    out = jax.jit(form(1.0).update)(g, optax.EmptyState())[0]
    for x in jax.tree.leaves(out):
        assert np.all(np.asarray(x, np.float32) == 0.0)


@pytest.mark.parametrize("form", ALL_FORMS)
def test_derivative_through_the_update_is_finite_at_zero(form):
    def total(g):
        return jnp.sum(form(1.0).update({"a": g}, optax.EmptyState())[0]["a"])

    np.testing.assert_allclose(jax.grad(total)(jnp.zeros(3)), np.ones(3))


@pytest.mark.parametrize("form", ALL_FORMS)
def test_dtypes_preserved_and_norm_is_computed_wide(form):
    # 1000 float16 entries of 300: the squared norm 9e7 overflows float16 (max 65504).
    g = {"h": jnp.full((1000,), 300.0, jnp.float16), "b": jnp.ones((4,), jnp.bfloat16)}
    out = form(1.0).update(g, optax.EmptyState())[0]
    assert out["h"].dtype == jnp.float16 and out["b"].dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(out["h"], np.float32)))
    assert 0.4 < global_norm({"h": out["h"]}) <= 1.01
    with jax.enable_x64(True):
        g64 = {"a": jnp.array([3.0, 4.0], jnp.float64)}
        out64 = form(1.0).update(g64, optax.EmptyState())[0]
        assert out64["a"].dtype == jnp.float64
        expected = 0.2 if form in (optim.clip_by_global_norm, optim.clip_by_leaf_norm) else 1 / 6
        np.testing.assert_allclose(out64["a"], expected * np.array([3.0, 4.0]), rtol=1e-15)


class JitEqualsEagerTest(chex.TestCase):
    """Each form inside an SGD-momentum chain: jit == eager, and one trace for three steps."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_three_steps(self):
        for form in ALL_FORMS:
            chex.clear_trace_counter()
            transform = optax.chain(form(0.7), optax.sgd(0.1, momentum=0.9))

            @self.variant
            @chex.assert_max_traces(n=1)
            def step(p, s, g, transform=transform):
                u, s = transform.update(g, s, p)
                return optax.apply_updates(p, u), s

            params = want = random_tree(3)
            state = want_state = transform.init(params)
            for seed in range(3):
                g = random_tree(10 + seed)
                params, state = step(params, state, g)
                u, want_state = transform.update(g, want_state, want)
                want = optax.apply_updates(want, u)
            chex.assert_trees_all_close(params, want, rtol=1e-6, atol=1e-7)


def test_complex_gradients_are_clipped_by_their_modulus():
    # ‖[3+4j, 0]‖ = 5 (|x|² = x·conj(x)); x·x = -7+24j would not clip at all.
    g = {"z": jnp.array([3 + 4j, 0j], jnp.complex64)}
    np.testing.assert_allclose(apply(optim.clip_by_global_norm(1.0), g)["z"], [0.6 + 0.8j, 0])
    np.testing.assert_allclose(apply(optim.soft_clip_by_leaf_norm(1.0), g)["z"], [0.5 + 2j / 3, 0])
    # Each form on a complex leaf equals the form on its real and imaginary parts.
    z = random_tree(4)["w"] + 1j * random_tree(5)["w"]
    for form in ALL_FORMS:
        out = apply(form(0.5), {"z": z})["z"]
        real = apply(form(0.5), {"z": jnp.stack([z.real, z.imag])})["z"]
        assert out.dtype == jnp.complex64
        np.testing.assert_allclose(out, real[0] + 1j * real[1], rtol=1e-6)


@pytest.mark.parametrize("form", ALL_FORMS)
def test_nan_gradient_propagates(form):
    g = {"a": jnp.array([jnp.nan, 1.0]), "b": jnp.array([3.0, 4.0])}
    out = jax.jit(form(1.0).update)(g, optax.EmptyState())[0]
    assert np.all(np.isnan(out["a"]))  # the whole clipped leaf, not just the NaN entry
    if form in (optim.clip_by_global_norm, optim.soft_clip_by_global_norm):
        assert np.all(np.isnan(out["b"]))  # one global norm: every leaf shows it
    else:
        np.testing.assert_allclose(out["b"], apply(form(1.0), {"b": g["b"]})["b"])


def test_traced_max_norm_is_accepted_and_a_traced_nan_shows():
    g = {"a": jnp.array([3.0, 4.0])}
    clip = jax.jit(lambda m: optim.clip_by_global_norm(m).update(g, optax.EmptyState())[0])
    np.testing.assert_allclose(clip(1.0)["a"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(clip(np.float32(1.0))["a"], [0.6, 0.8], rtol=1e-6)
    assert np.all(np.isnan(clip(jnp.nan)["a"]))


# ------------------------------------------------------------------ the clipping claim (§7)

L0, L1 = 12.0, 3.0  # θ⁴ is (L0, L1)-smooth: 12θ² <= 12 + 3·|4θ³|


def theta4_run(transform, theta0=10.0, steps=60):
    with jax.enable_x64(True):
        theta = jnp.asarray(theta0, jnp.float64)
        state = transform.init(theta)
        values = [float(theta**4)]
        for _ in range(steps):
            u, state = transform.update(4.0 * theta**3, state, theta)
            theta = theta + u
            values.append(float(theta**4))
        return np.array(values), float(theta)


def test_theta4_fixed_step_diverges_while_both_clipping_forms_descend():
    values, _ = theta4_run(optax.sgd(0.01), steps=1)
    assert values[1] == pytest.approx(30.0**4)  # θ₁ = 10 - 0.01·4000 = -30
    values, _ = theta4_run(optax.sgd(0.01), steps=4)
    assert not np.isfinite(values[-1]) or values[-1] > 1e30
    # clip-2 with η = 1/L0, γ = L0/L1 is exactly the step 1/(L0 + L1·|f'|).
    soft = optax.chain(optim.soft_clip_by_global_norm(L0 / L1), optax.sgd(1.0 / L0))
    soft_values, theta = theta4_run(soft, steps=200)
    assert np.all(np.diff(soft_values) < 0) and abs(theta) < 0.2
    hard = optax.chain(optim.clip_by_global_norm(L0 / L1), optax.sgd(1.0 / L0))
    hard_values, theta = theta4_run(hard, steps=200)
    assert np.all(np.diff(hard_values) < 0) and abs(theta) < 0.2


def test_soft_clip_step_is_the_l0_l1_safe_step():
    with jax.enable_x64(True):
        for theta in (10.0, 1.0, -0.3, 1e-3):
            g = 4.0 * theta**3
            step = optax.chain(optim.soft_clip_by_global_norm(L0 / L1), optax.sgd(1.0 / L0))
            u, _ = step.update(jnp.asarray(g, jnp.float64), step.init(jnp.zeros((), jnp.float64)))
            np.testing.assert_allclose(float(u), -g / (L0 + L1 * abs(g)), rtol=1e-14)


@pytest.mark.parametrize("form", ALL_FORMS)
def test_state_keeps_the_pre_clip_global_norm_in_float32(form):
    g = random_tree(7, scale=3.0)
    transform = optax.chain(form(0.5), optax.adam(1e-2))
    state = transform.init(g)
    assert float(optax.tree.get(state, "grad_norm")) == 0.0
    _, state = jax.jit(transform.update)(g, state, g)
    norm = optax.tree.get(state, "grad_norm")
    assert norm.dtype == jnp.float32 and norm.shape == ()
    np.testing.assert_allclose(norm, global_norm(g), rtol=1e-6)  # before clipping
    with jax.enable_x64(True):
        g64 = {"a": jnp.array([3.0, 4.0], jnp.float64)}
        _, s64 = form(1.0).update(g64, form(1.0).init(g64))
        assert s64.grad_norm.dtype == jnp.float32 and float(s64.grad_norm) == 5.0
