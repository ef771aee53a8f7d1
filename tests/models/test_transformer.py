"""Transformer models: padding is ignored, the LM is causal, the embedding entry agrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.models import CausalLM, TransformerClassifier

SIZES = dict(d_model=16, num_layers=2, num_heads=2, max_len=12)


def test_classifier_ignores_padding():
    model = TransformerClassifier(vocab_size=20, num_classes=3, **SIZES)
    tokens = jnp.array([[4, 5, 6, 0, 0, 0]])
    params = model.init(jax.random.key(0), tokens)
    short = model.apply(params, tokens[:, :3])
    np.testing.assert_allclose(model.apply(params, tokens), short, atol=1e-5)
    e = model.apply(params, tokens, method=TransformerClassifier.embed)
    again = model.apply(params, embeddings=e, mask=tokens != 0)
    np.testing.assert_allclose(again, model.apply(params, tokens), atol=1e-6)


def test_lm_gradient_to_the_future_is_exactly_zero():
    model = CausalLM(vocab_size=20, **SIZES)
    tokens = jnp.array([3, 1, 4, 1, 5, 9, 2])
    params = model.init(jax.random.key(0), tokens)
    e = model.apply(params, tokens, method=CausalLM.embed)
    t = 3
    grad = jax.grad(lambda e: model.apply(params, embeddings=e)[t, 7])(e)
    assert np.all(np.asarray(grad[t + 1 :]) == 0.0)
    assert np.all(np.abs(np.asarray(grad[: t + 1])).sum(-1) > 0)


def test_lm_longer_than_context_is_a_named_error():
    model = CausalLM(vocab_size=20, **SIZES)
    params = model.init(jax.random.key(0), jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match="max_len=12"):
        model.apply(params, jnp.zeros(13, jnp.int32))


def test_heads_must_divide_d_model():
    model = CausalLM(vocab_size=20, d_model=10, num_heads=3)
    with pytest.raises(ValueError, match="d_model must be a multiple of num_heads"):
        model.init(jax.random.key(0), jnp.zeros(4, jnp.int32))
