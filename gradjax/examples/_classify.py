"""Classification losses and accuracy shared by the tour, the examples and the benchmarks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer ``labels``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> float:
    """The fraction of rows whose largest logit is at the label."""
    return float(jnp.mean(jnp.argmax(logits, -1) == labels))


def classifier_loss(model):
    """``loss(params, (x, y), key=None)``: the cross-entropy of ``model.apply(params, x)``,
    in the signature of :func:`gradjax.models.fit`."""

    def loss(params, batch, key=None):
        del key
        x, y = batch
        return cross_entropy(model.apply(params, x), y)

    return loss
