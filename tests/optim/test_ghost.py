"""per_example_clipped_grad(method="ghost"): ghost norms equal the vmap norms for every
supported flax layer (sequences, both the Gram and the direct branch, weight sharing),
the clipped gradients are equal, and unsupported layers are named."""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import optim


class Head(nn.Module):
    """``body`` then a sum over everything but the batch axis: a scalar per example."""

    body: nn.Module

    def __call__(self, x):
        h = self.body(x)
        return h.reshape(h.shape[0], -1).sum(-1)


class Shared(nn.Module):
    """One Dense applied twice (weight sharing across calls) around a tanh."""

    @nn.compact
    def __call__(self, x):
        dense = nn.Dense(x.shape[-1])
        return dense(jnp.tanh(dense(x)))


class Tokens(nn.Module):
    """Two Embeds then Dense on a (B, T=12) int sequence with repeated tokens: a large
    table (50·8 > T²: the Gram mask) and a small one (3·2 < T²: the direct sum)."""

    @nn.compact
    def __call__(self, tokens):
        h = nn.Embed(50, 8)(tokens) + nn.Dense(8)(nn.Embed(3, 2)(tokens % 3))
        return nn.Dense(3)(jnp.sin(h))


class Tied(nn.Module):
    """Embed whose table is reused by ``attend`` (tied output weights)."""

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(7, 4)
        return embed.attend(jnp.tanh(embed(tokens)))


class Normed(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.LayerNorm()(nn.Dense(4)(x)))


def float_inputs(shape):
    return jax.random.normal(jax.random.key(1), shape)


def int_inputs(shape, vocab):
    return jax.random.randint(jax.random.key(1), shape, 0, vocab)


class Chain(nn.Module):
    """Several layers in a row, each followed by a sine, so one compile checks them all."""

    layers: tuple

    def __call__(self, x):
        for layer in self.layers:
            x = jnp.sin(layer(x))
        return x


# (name, module, inputs): every layer with positions T and features chosen so both the
# Gram branch (T² <= p·q) and the direct branch (T² > p·q) are taken.
CASES = [
    (
        "dense_and_dense_general",
        lambda: Chain(
            (
                nn.Dense(2),  # (T=9)² > 2·2: the direct branch
                nn.Dense(8),
                nn.Dense(12),  # (T=9)² <= 8·12: the Gram branch
                nn.Dense(3, use_bias=False),
                nn.DenseGeneral((2, 3)),  # (B, 9, 2, 3)
                nn.DenseGeneral(4, axis=(-2, -1)),  # contracts two axes
                Shared(),  # one Dense called twice: weight sharing
                nn.DenseGeneral(2, axis=1),  # contracts the positions
            )
        ),
        lambda: float_inputs((5, 9, 2)),
    ),
    ("embed", lambda: Tokens(), lambda: int_inputs((5, 12), 6)),
    (
        "conv_2d",
        lambda: Chain(
            (
                nn.Conv(3, (3, 3)),  # SAME
                nn.Conv(2, (2, 2), strides=2, padding="VALID"),
                nn.Conv(2, (3, 3), kernel_dilation=2, padding=1),
            )
        ),
        lambda: float_inputs((4, 6, 6, 2)),
    ),
    ("conv_1d", lambda: nn.Conv(3, (3,)), lambda: float_inputs((5, 8, 2))),
]


def setup(module, make_inputs, dtype=jnp.float64):
    model = Head(module)
    x = make_inputs()
    y = jax.random.normal(jax.random.key(2), (x.shape[0],), dtype)
    params = model.init(jax.random.key(0), x)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(dtype)

    def fun(p, batch):
        xb, yb = batch
        return jnp.mean((model.apply(p, xb) - yb) ** 2)

    return fun, params, (x, y)


@pytest.mark.parametrize(("name", "module", "make_inputs"), CASES, ids=[c[0] for c in CASES])
def test_ghost_norms_and_gradients_equal_vmap(name, module, make_inputs):
    with jax.enable_x64(True):
        fun, params, batch = setup(module(), make_inputs)
        form = "soft" if "gram" in name else "hard"
        vmap = optim.per_example_clipped_grad(fun, 1.0, form=form)
        ghost = optim.per_example_clipped_grad(fun, 1.0, form=form, method="ghost")
        (v_value, v_info), v_grads = jax.jit(vmap)(params, batch)
        (g_value, g_info), g_grads = jax.jit(ghost)(params, batch)
        np.testing.assert_allclose(g_info.norms, v_info.norms, rtol=1e-6)
        np.testing.assert_allclose(g_value, v_value, rtol=1e-12)
        for a, b in zip(jax.tree.leaves(g_grads), jax.tree.leaves(v_grads), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_ghost_in_chunks_eager_equals_ghost_whole_jitted():
    fun, params, batch = setup(nn.Embed(20, 4), lambda: int_inputs((6, 5), 20), jnp.float32)
    whole = optim.per_example_clipped_grad(fun, 0.5, method="ghost")
    chunked = optim.per_example_clipped_grad(fun, 0.5, method="ghost", chunk_size=2)
    (_, a), ga = jax.jit(whole)(params, batch)
    (_, b), gb = chunked(params, batch)  # eager, in chunks of 2
    np.testing.assert_allclose(a.norms, b.norms, rtol=1e-5)
    for u, v in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)


def test_layer_norm_is_named_unless_other_layers_vmap():
    with jax.enable_x64(True):
        fun, params, batch = setup(Normed(), lambda: float_inputs((4, 3)))
        with pytest.raises(ValueError, match=r"LayerNorm at 'body/LayerNorm_0'.*other_layers"):
            optim.per_example_clipped_grad(fun, 1.0, method="ghost")(params, batch)
        ghost = optim.per_example_clipped_grad(fun, 1.0, method="ghost", other_layers="vmap")
        (_, g_info), g_grads = jax.jit(ghost)(params, batch)
        (_, v_info), v_grads = jax.jit(optim.per_example_clipped_grad(fun, 1.0))(params, batch)
        np.testing.assert_allclose(g_info.norms, v_info.norms, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(g_grads), jax.tree.leaves(v_grads), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_tied_embedding_is_named_unless_other_layers_vmap():
    with jax.enable_x64(True):
        fun, params, batch = setup(Tied(), lambda: int_inputs((4, 5), 7))
        with pytest.raises(ValueError, match=r"Embed\.attend"):
            optim.per_example_clipped_grad(fun, 1.0, method="ghost")(params, batch)
        ghost = optim.per_example_clipped_grad(fun, 1.0, method="ghost", other_layers="vmap")
        (_, g_info), _ = jax.jit(ghost)(params, batch)
        (_, v_info), _ = jax.jit(optim.per_example_clipped_grad(fun, 1.0))(params, batch)
        np.testing.assert_allclose(g_info.norms, v_info.norms, rtol=1e-6)


def test_parameter_used_outside_a_layer_is_named():
    fun, params, batch = setup(nn.Dense(2), lambda: float_inputs((4, 3)), jnp.float32)
    params = {"net": params, "scale": jnp.ones(())}

    def scaled(p, b):
        return p["scale"] * fun(p["net"], b)

    with pytest.raises(ValueError, match=r"\['scale'\]: a parameter used outside any flax layer"):
        optim.per_example_clipped_grad(scaled, 1.0, method="ghost")(params, batch)


def test_bfloat16_parameters_give_float32_norms():
    fun, params, batch = setup(nn.Dense(3), lambda: float_inputs((4, 5, 2)), jnp.float32)
    low = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    (_, info), grads = jax.jit(optim.per_example_clipped_grad(fun, 1.0, method="ghost"))(low, batch)
    (_, ref), _ = jax.jit(optim.per_example_clipped_grad(fun, 1.0))(low, batch)
    assert (
        info.norms.dtype == jnp.float32 and grads["params"]["body"]["kernel"].dtype == jnp.bfloat16
    )
    np.testing.assert_allclose(info.norms, ref.norms, rtol=0.02)


def test_core_import_does_not_import_flax():
    code = "import sys, gradjax, gradjax.optim; assert 'flax' not in sys.modules, 'flax'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_transformer_classifier_ghost_with_layer_norms_by_vmap_equals_vmap():
    from gradjax.models import TransformerClassifier

    with jax.enable_x64(True):
        model = TransformerClassifier(
            vocab_size=20, d_model=4, num_layers=1, num_heads=2, max_len=6, num_classes=3
        )
        tokens = int_inputs((4, 6), 20)
        labels = jnp.array([0, 1, 2, 1])
        params = jax.tree.map(
            lambda a: a.astype(jnp.float64), model.init(jax.random.key(0), tokens)
        )

        def fun(p, batch):
            logits = model.apply(p, batch[0])
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch[1][:, None], 1))

        ghost = optim.per_example_clipped_grad(fun, 0.5, method="ghost", other_layers="vmap")
        (_, g_info), g_grads = jax.jit(ghost)(params, (tokens, labels))
        (_, v_info), v_grads = jax.jit(optim.per_example_clipped_grad(fun, 0.5))(
            params, (tokens, labels)
        )
        np.testing.assert_allclose(g_info.norms, v_info.norms, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(g_grads), jax.tree.leaves(v_grads), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
