"""Layer-wise learning rates (scale_by_multipliers), leaf paths and map_gradients."""

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradjax import optim
from gradjax.datasets import load_digits
from gradjax.models import MLP


def leaf_paths(tree):
    seen = []
    optim.map_gradients(lambda path, g: seen.append(path) or g).update(tree, optax.EmptyState())
    return seen


class Pair(NamedTuple):
    left: jax.Array
    right: jax.Array


def test_leaf_path_rule():
    tree = {"enc": {"w": jnp.ones(2)}, "dec": [jnp.ones(1), (jnp.ones(3),)], "nt": Pair(1.0, 2.0)}
    assert sorted(leaf_paths(tree)) == sorted(["enc/w", "dec/0", "dec/1/0", "nt/left", "nt/right"])
    params = MLP((4, 3)).init(jax.random.key(0), jnp.ones((1, 5)))
    assert sorted(leaf_paths(params)) == [
        "params/Dense_0/bias",
        "params/Dense_0/kernel",
        "params/Dense_1/bias",
        "params/Dense_1/kernel",
    ]


@functools.lru_cache
def digits_problem(n=128, features=(16, 16, 10)):
    x, y = load_digits()
    x, y = jnp.asarray(x[:n]), jnp.asarray(y[:n])
    model = MLP(features)
    params = model.init(jax.random.key(0), x[:1])

    def loss(p, xb, yb):
        logits = model.apply(p, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    return params, loss, x, y


def train(transform, params, loss, x, y, steps=10):
    @jax.jit
    def step(p, s, i):
        rows = (jnp.arange(32) + 32 * i) % x.shape[0]
        g = jax.grad(loss)(p, x[rows], y[rows])
        u, s = transform.update(g, s, p)
        return optax.apply_updates(p, u), s

    state = transform.init(params)
    for i in range(steps):
        params, state = step(params, state, i)
    return params


LAYER_LABELS = {"Dense_0": "frozen", "Dense_1": "tenth", "Dense_2": "full"}


def group_labels(params):
    return {
        "params": {
            k: jax.tree.map(lambda _, k=k: LAYER_LABELS[k], v) for k, v in params["params"].items()
        }
    }


@pytest.mark.parametrize(
    "make",
    [lambda lr: optax.sgd(lr), lambda lr: optax.sgd(lr, momentum=0.9), lambda lr: optax.adam(lr)],
    ids=["sgd", "momentum", "adam"],
)
def test_layerwise_rates_equal_per_group_optimizers_on_a_flax_mlp(make):
    params, loss, x, y = digits_problem()
    lr = 0.05
    ours = optax.chain(
        make(lr),
        optim.scale_by_multipliers({"params/Dense_0/.*": 0.0, "params/Dense_1/.*": 0.1}),
    )
    reference = optax.multi_transform(
        {"frozen": optax.set_to_zero(), "tenth": make(0.1 * lr), "full": make(lr)},
        group_labels(params),
    )
    p_ours = train(ours, params, loss, x, y)
    p_ref = train(reference, params, loss, x, y)
    # The frozen layer is bit-identical to its initial value.
    chex.assert_trees_all_equal(p_ours["params"]["Dense_0"], params["params"]["Dense_0"])
    chex.assert_trees_all_close(p_ours, p_ref, rtol=2e-5, atol=1e-6)
    # And the others did move.
    assert not np.allclose(
        p_ours["params"]["Dense_1"]["kernel"], params["params"]["Dense_1"]["kernel"]
    )


def test_power_of_two_multiplier_is_bit_exact_for_adam():
    params, loss, x, y = digits_problem()
    ours = optax.chain(optax.adam(0.01), optim.scale_by_multipliers({r".*Dense_1.*": 0.5}))
    reference = optax.multi_transform(
        {"frozen": optax.adam(0.01), "tenth": optax.adam(0.005), "full": optax.adam(0.01)},
        group_labels(params),
    )
    chex.assert_trees_all_equal(
        train(ours, params, loss, x, y, steps=5), train(reference, params, loss, x, y, steps=5)
    )


class ThreeFormsTest(chex.TestCase):
    """Regex table, callable and pytree prefix give the same factors, with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_three_ways_of_giving_multipliers_agree_and_first_regex_wins(self):
        params = MLP((4, 3, 2)).init(jax.random.key(0), jnp.ones((1, 5)))
        grads = jax.tree.map(jnp.ones_like, params)
        # "params/Dense_0" addresses the whole layer (a prefix at a key boundary); the
        # kernel of Dense_0 matches both patterns, and the first one wins.
        by_regex = optim.scale_by_multipliers({"params/Dense_0": 0.5, ".*kernel": 0.25})

        def by_callable_fn(path, leaf):
            if path.startswith("params/Dense_0/"):
                return 0.5
            return 0.25 if path.endswith("kernel") else 1.0

        by_pytree = optim.scale_by_multipliers(
            {
                "params": {
                    "Dense_0": 0.5,  # a prefix: the whole layer
                    "Dense_1": {"kernel": 0.25, "bias": 1.0},
                    "Dense_2": {"kernel": 0.25, "bias": 1.0},
                }
            }
        )
        expected = {
            "Dense_0": {"kernel": 0.5, "bias": 0.5},
            "Dense_1": {"kernel": 0.25, "bias": 1.0},
            "Dense_2": {"kernel": 0.25, "bias": 1.0},
        }
        expected = {"params": jax.tree.map(lambda f, g: f * g, expected, grads["params"])}
        for transform in (by_regex, optim.scale_by_multipliers(by_callable_fn), by_pytree):
            out = self.variant(transform.update)(grads, transform.init(params))[0]
            chex.assert_trees_all_equal(out, expected)


def test_regex_on_a_subtree_freezes_it_and_stops_at_key_boundaries():
    grads = {
        "enc": {"w": jnp.ones(2), "b": jnp.ones(1)},
        "encoder": jnp.ones(1),
        "dec": jnp.ones(3),
    }
    out = optim.scale_by_multipliers({"enc": 0.0}).update(grads, optax.EmptyState())[0]
    frozen = {"enc": {"w": jnp.zeros(2), "b": jnp.zeros(1)}}
    chex.assert_trees_all_equal(out, {**grads, **frozen})  # "encoder" is not under "enc/"
    out = optim.scale_by_multipliers({"enc/w": 0.0}).update(grads, optax.EmptyState())[0]
    np.testing.assert_array_equal(out["enc"]["w"], 0.0)
    np.testing.assert_array_equal(out["enc"]["b"], 1.0)


@pytest.mark.parametrize(
    "table",
    [{"en": 0.0}, {"enc/x": 0.5}, {"enc": 0.5, "enc/w": 0.0}],  # no match, no match, shadowed
    ids=["partial-key", "missing-leaf", "shadowed"],
)
def test_a_pattern_that_applies_to_no_leaf_is_an_error_unless_allowed(table):
    grads = {"enc": {"w": jnp.ones(2), "b": jnp.ones(1)}, "dec": jnp.ones(3)}
    transform = optim.scale_by_multipliers(table)
    with pytest.raises(ValueError, match=r"multipliers.*apply to no leaf.*allow_unused"):
        transform.init(grads)
    with pytest.raises(ValueError, match="allow_unused"):
        transform.update(grads, optax.EmptyState())
    lenient = optim.scale_by_multipliers(table, allow_unused=True)
    out = lenient.update(grads, lenient.init(grads))[0]
    np.testing.assert_array_equal(out["dec"], 1.0)  # unmatched leaves keep their update


@pytest.mark.parametrize("multiplier", [0.0, 0.5, jnp.array(0.0)])
def test_nan_update_propagates_even_on_a_frozen_leaf(multiplier):
    grads = {"a": jnp.array([jnp.nan, 1.0]), "b": jnp.array([jnp.inf])}
    transform = optim.scale_by_multipliers({"a": multiplier, "b": multiplier})
    out = jax.jit(transform.update)(grads, optax.EmptyState())[0]
    assert np.isnan(out["a"][0]) and out["a"][1] == float(multiplier)
    assert not np.isfinite(out["b"][0])


def test_traced_factors_and_complex_updates():
    grads = {"a": jnp.array([1.0, -2.0]), "z": jnp.array([1 + 2j], jnp.complex64)}

    @jax.jit
    def scaled(m):
        return optim.scale_by_multipliers({"a": m, "z": m}).update(grads, optax.EmptyState())[0]

    out = scaled(0.5)
    np.testing.assert_array_equal(out["a"], [0.5, -1.0])
    assert out["z"].dtype == jnp.complex64
    np.testing.assert_array_equal(out["z"], [0.5 + 1j])
    assert np.all(np.isnan(scaled(jnp.nan)["a"]))  # a traced NaN factor shows in the result


def test_callable_receives_the_leaf():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones((2,))}
    transform = optim.scale_by_multipliers(lambda path, leaf: 0.0 if leaf.ndim == 1 else 2.0)
    out = transform.update(params, transform.init(params))[0]
    np.testing.assert_array_equal(out["b"], 0.0)
    np.testing.assert_array_equal(out["w"], 2.0)


def test_dtype_preserved_and_product_formed_wide():
    u = {"h": jnp.full((4,), 3.0, jnp.bfloat16)}
    out = optim.scale_by_multipliers({"h": 0.1}).update(u, optax.EmptyState())[0]
    assert out["h"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        out["h"], jnp.asarray(np.float32(3.0) * np.float32(0.1), jnp.bfloat16)
    )
    with jax.enable_x64(True):
        u64 = {"h": jnp.full((2,), 3.0, jnp.float64)}
        out64 = optim.scale_by_multipliers({"h": 0.1}).update(u64, optax.EmptyState())[0]
        assert out64["h"].dtype == jnp.float64
        np.testing.assert_array_equal(out64["h"], 3.0 * 0.1)


# ----------------------------------------------------------- the re-parameterisation view


def reparam_problem():
    kx = jax.random.key(1)
    x = jax.random.normal(kx, (40, 3), jnp.float64)
    y = jnp.tanh(x @ jnp.array([1.0, -2.0, 0.5])) + 0.1

    def loss(theta):
        return jnp.mean((jnp.tanh(x @ theta["w"]) + theta["b"] - y) ** 2)

    theta0 = {"w": jnp.array([0.3, 0.1, -0.2]), "b": jnp.array(0.0)}
    return loss, theta0


def run(transform, loss, params, steps=25):
    def step(carry, _):
        params, state = carry
        u, state = transform.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, u), state), None

    carry = (params, transform.init(params))
    return jax.jit(lambda c: jax.lax.scan(step, c, length=steps)[0][0])(carry)


@pytest.mark.parametrize(
    ("make", "power"),
    [
        (lambda: optax.sgd(0.2), 2),
        (lambda: optax.sgd(0.2, momentum=0.9), 2),
        (lambda: optax.adam(0.05, eps=0.0), 1),
        (lambda: optax.rmsprop(0.05, eps=0.0), 1),
    ],
    ids=["sgd", "momentum", "adam", "rmsprop"],
)
def test_training_phi_with_theta_lambda_phi_equals_a_multiplier(make, power):
    """θ = λφ: SGD sees λ²·lr, Adam/RMSprop with ε = 0 see λ·lr (techniques.md §3)."""
    lam = 0.3
    with jax.enable_x64(True):
        loss, theta0 = reparam_problem()
        phi0 = {"w": theta0["w"] / lam, "b": theta0["b"]}

        def loss_phi(phi):
            return loss({"w": lam * phi["w"], "b": phi["b"]})

        phi = run(make(), loss_phi, phi0)
        theta = run(
            optax.chain(make(), optim.scale_by_multipliers({"w": lam**power})), loss, theta0
        )
        np.testing.assert_allclose(lam * phi["w"], theta["w"], rtol=1e-10)
        np.testing.assert_allclose(phi["b"], theta["b"], rtol=1e-10)
        assert not np.allclose(theta["w"], theta0["w"])


def test_adam_with_eps_reparameterised_is_adam_with_eps_over_lambda():
    lam, eps = 0.3, 1e-2
    with jax.enable_x64(True):
        loss, theta0 = reparam_problem()
        theta0 = {"w": theta0["w"]}

        def loss_w(t):
            return loss({"w": t["w"], "b": jnp.array(0.0)})

        phi = run(
            optax.adam(0.05, eps=eps),
            lambda p: loss_w({"w": lam * p["w"]}),
            {"w": theta0["w"] / lam},
        )
        theta = run(optax.adam(lam * 0.05, eps=eps / lam), loss_w, theta0)
        np.testing.assert_allclose(lam * phi["w"], theta["w"], rtol=1e-10)
        # ... and differs from the plain multiplier once ε matters.
        plain = run(
            optax.chain(optax.adam(0.05, eps=eps), optim.scale_by_multipliers({"w": lam})),
            loss_w,
            theta0,
        )
        assert not np.allclose(plain["w"], theta["w"], rtol=1e-6)


# ------------------------------------------------------------------------- map_gradients


def test_zero_gradient_hook_leaves_parameters_unchanged():
    params, loss, x, y = digits_problem()
    transform = optax.chain(optim.map_gradients(lambda path, g: jnp.zeros_like(g)), optax.adam(0.1))
    chex.assert_trees_all_equal(train(transform, params, loss, x, y, steps=3), params)


def test_per_leaf_hook_alters_only_selected_leaves():
    grads = {
        "enc": {"w": jnp.array([3.0, -4.0]), "b": jnp.array([1.0])},
        "dec": [jnp.array([-2.0])],
    }

    def l1_clip_kernels(path, g):  # clip "w" by its L1 norm, keep the rest
        if path.endswith("/w"):
            return g * jnp.minimum(1.0, 1.0 / jnp.sum(jnp.abs(g)))
        return g

    out = jax.jit(optim.map_gradients(l1_clip_kernels).update)(grads, optax.EmptyState())[0]
    np.testing.assert_allclose(out["enc"]["w"], [3.0 / 7.0, -4.0 / 7.0], rtol=1e-6)
    np.testing.assert_array_equal(out["enc"]["b"], grads["enc"]["b"])
    np.testing.assert_array_equal(out["dec"][0], grads["dec"][0])


def test_map_gradients_keeps_each_gradient_dtype():
    grads = {"h": jnp.array([1.0, -2.0], jnp.bfloat16), "f": jnp.array([1.0, -2.0])}
    as_float32 = optim.map_gradients(lambda path, g: g.astype(jnp.float32) * 3)
    out = as_float32.update(grads, optax.EmptyState())[0]
    assert out["h"].dtype == jnp.bfloat16 and out["f"].dtype == jnp.float32
    np.testing.assert_array_equal(out["h"].astype(jnp.float32), [3.0, -6.0])
    positive = optim.map_gradients(lambda path, g: g > 0)  # bool out, floating updates kept
    out = positive.update(grads, optax.EmptyState())[0]
    assert out["f"].dtype == jnp.float32
    np.testing.assert_array_equal(out["f"], [1.0, 0.0])
    nan = optim.map_gradients(lambda path, g: g).update({"a": jnp.array([jnp.nan])}, None)[0]
    assert np.isnan(nan["a"][0])
