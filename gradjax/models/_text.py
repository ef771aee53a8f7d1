"""A character-level convolutional text classifier with an embedding-level entry point."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class CharCNN(nn.Module):
    """Embedding → Conv1D (ReLU) → max over unmasked positions → Dense logits.

    ``embed`` and ``classify`` are separate methods so that regularisers (FGM, VAT)
    and attributions (integrated gradients) can work on the embeddings:
    ``model.apply(params, emb, mask, method=CharCNN.classify)``; ``classify`` is
    ``pool_classify(features(...))``, split at the convolution's ReLU output for layer
    attributions.
    """

    vocab_size: int
    embed_dim: int = 64
    channels: int = 128
    kernel_size: int = 3
    num_classes: int = 2

    def setup(self):
        self.embedding = nn.Embed(self.vocab_size, self.embed_dim)
        self.conv = nn.Conv(self.channels, (self.kernel_size,), padding="SAME")
        self.head = nn.Dense(self.num_classes)

    def embed(self, ids: jax.Array) -> jax.Array:
        """(..., L) int ids → (..., L, embed_dim) embeddings."""
        return self.embedding(ids)

    def features(self, embeddings: jax.Array, mask: jax.Array) -> jax.Array:
        """(..., L, E) embeddings → (..., L, channels) ReLU(conv) features, per position."""
        # Padding positions are zeroed before the convolution, so a padded token
        # contributes nothing to its unpadded neighbours' features.
        return nn.relu(self.conv(embeddings * mask[..., None]))

    def pool_classify(self, features: jax.Array, mask: jax.Array) -> jax.Array:
        """(..., L, channels) features → (..., num_classes) logits: max over unmasked positions."""
        h = jnp.max(jnp.where(mask[..., None], features, -jnp.inf), axis=-2)
        h = jnp.where(jnp.isfinite(h), h, 0.0)  # an all-padding row pools to zeros
        return self.head(h)

    def classify(self, embeddings: jax.Array, mask: jax.Array) -> jax.Array:
        """(..., L, E) embeddings and (..., L) bool mask → (..., num_classes) logits."""
        return self.pool_classify(self.features(embeddings, mask), mask)

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        return self.classify(self.embed(ids), mask)
