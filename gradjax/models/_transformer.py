"""Small pre-LN transformers: a token classifier and a causal language model.

Built only from ``nn.Embed``, ``nn.Dense`` / ``nn.DenseGeneral`` and ``nn.LayerNorm``
(the attention is written out with ``DenseGeneral`` projections), so that per-example
gradient norms by ghost clipping (``gradjax.optim``) see only layers they support.
Both models take int tokens or, for attribution, input embeddings: ``embed(tokens)``
gives the token embeddings and ``__call__(embeddings=...)`` runs the rest (the
learned position embeddings are added inside, so they are not attributed).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

PAD = 0


def _check_length(length: int, max_len: int) -> None:
    if length > max_len:
        raise ValueError(
            f"the sequence has {length} positions, more than the model's context max_len={max_len}"
        )


class SelfAttention(nn.Module):
    """Multi-head dot-product self-attention from ``DenseGeneral`` projections.

    ``mask`` is a bool array broadcastable to (..., T, T) (query, key): ``False``
    entries get weight exactly 0 (their logits are replaced before the softmax), so
    no gradient flows to masked keys.
    """

    num_heads: int
    head_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        shape = (self.num_heads, self.head_dim)
        q = nn.DenseGeneral(shape, name="query")(x)
        k = nn.DenseGeneral(shape, name="key")(x)
        v = nn.DenseGeneral(shape, name="value")(x)
        logits = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(self.head_dim).astype(q.dtype)
        logits = jnp.where(mask[..., None, :, :], logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        weights = jnp.where(mask[..., None, :, :], weights, 0.0)
        out = jnp.einsum("...hqk,...khd->...qhd", weights, v)
        return nn.DenseGeneral(x.shape[-1], axis=(-2, -1), name="out")(out)


class Block(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` (GELU)."""

    num_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        d_model = x.shape[-1]
        x = x + SelfAttention(self.num_heads, d_model // self.num_heads, name="attention")(
            nn.LayerNorm(name="ln_attention")(x), mask
        )
        h = nn.Dense(self.mlp_dim, name="mlp_in")(nn.LayerNorm(name="ln_mlp")(x))
        return x + nn.Dense(d_model, name="mlp_out")(nn.gelu(h))


class _Trunk(nn.Module):
    """Token and position embeddings, then ``num_layers`` blocks and a final LayerNorm."""

    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    max_len: int

    def setup(self):
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model must be a multiple of num_heads, got {self.d_model} and {self.num_heads}"
            )
        self.token_embedding = nn.Embed(self.vocab_size, self.d_model)
        self.position_embedding = nn.Embed(self.max_len, self.d_model)
        self.blocks = [Block(self.num_heads, self.mlp_dim) for _ in range(self.num_layers)]
        self.ln_final = nn.LayerNorm()

    def embed(self, tokens: jax.Array) -> jax.Array:
        return self.token_embedding(tokens)

    def encode(self, embeddings: jax.Array, mask: jax.Array) -> jax.Array:
        _check_length(embeddings.shape[-2], self.max_len)
        positions = jnp.broadcast_to(jnp.arange(embeddings.shape[-2]), embeddings.shape[:-1])
        x = embeddings + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_final(x)


class TransformerClassifier(nn.Module):
    """Pre-LN transformer encoder → mean over unpadded positions → Dense logits.

    Tokens are ints (..., T) with ``0`` the padding id (masked out as keys and from the
    mean). For attribution, ``embed(tokens)`` gives the (..., T, d_model) token
    embeddings and ``model.apply(params, embeddings=e, mask=m)`` the logits from them
    (``mask`` defaults to all positions).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax.models import TransformerClassifier
      >>> model = TransformerClassifier(vocab_size=50, d_model=32, num_layers=2, num_heads=4,
      ...                               max_len=16, num_classes=3)
      >>> tokens = jnp.array([[5, 7, 9, 0, 0], [1, 2, 3, 4, 5]])
      >>> params = model.init(jax.random.key(0), tokens)
      >>> logits = model.apply(params, tokens)
      >>> logits.shape
      (2, 3)
      >>> e = model.apply(params, tokens, method=TransformerClassifier.embed)
      >>> again = model.apply(params, embeddings=e, mask=tokens != 0)
      >>> bool(jnp.allclose(logits, again))
      True
    """

    vocab_size: int
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int | None = None
    max_len: int = 128
    num_classes: int = 2

    def setup(self):
        self.trunk = _Trunk(
            self.vocab_size,
            self.d_model,
            self.num_layers,
            self.num_heads,
            self.mlp_dim or 4 * self.d_model,
            self.max_len,
        )
        self.head = nn.Dense(self.num_classes)

    def embed(self, tokens: jax.Array) -> jax.Array:
        """(..., T) int tokens → (..., T, d_model) token embeddings."""
        return self.trunk.embed(tokens)

    def __call__(
        self,
        tokens: jax.Array | None = None,
        *,
        embeddings: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Logits (..., num_classes) from ``tokens`` or from ``embeddings`` (not both)."""
        if (tokens is None) == (embeddings is None):
            raise ValueError("pass exactly one of tokens and embeddings")
        if tokens is not None:
            mask = tokens != PAD if mask is None else mask
            embeddings = self.embed(tokens)
        if mask is None:
            mask = jnp.ones(embeddings.shape[:-1], bool)
        mask = jnp.asarray(mask, bool)
        h = self.trunk.encode(embeddings, mask[..., None, :])
        w = mask[..., None].astype(h.dtype)
        pooled = jnp.sum(h * w, axis=-2) / jnp.maximum(jnp.sum(w, axis=-2), 1.0)
        return self.head(pooled)


class CausalLM(nn.Module):
    """Pre-LN decoder-only transformer: tokens (..., T) → next-token logits (..., T, vocab).

    Position ``t``'s logits depend on positions ``0..t`` only (causal mask, with
    weight exactly 0 on later keys, so their gradients are exactly 0). For
    attribution, ``embed(tokens)`` gives the token embeddings and
    ``model.apply(params, embeddings=e)`` the logits from them. A sequence longer than
    ``max_len`` is a ValueError.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax.models import CausalLM
      >>> model = CausalLM(vocab_size=40, d_model=32, num_layers=2, num_heads=4, max_len=16)
      >>> tokens = jnp.array([[3, 1, 4, 1, 5, 9]])
      >>> params = model.init(jax.random.key(0), tokens)
      >>> logits = model.apply(params, tokens)
      >>> logits.shape
      (1, 6, 40)
      >>> prefix = model.apply(params, tokens[:, :3])  # the future does not change the past
      >>> bool(jnp.allclose(prefix, logits[:, :3], atol=1e-5))
      True
    """

    vocab_size: int
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int | None = None
    max_len: int = 128

    def setup(self):
        self.trunk = _Trunk(
            self.vocab_size,
            self.d_model,
            self.num_layers,
            self.num_heads,
            self.mlp_dim or 4 * self.d_model,
            self.max_len,
        )
        self.head = nn.Dense(self.vocab_size)

    def embed(self, tokens: jax.Array) -> jax.Array:
        """(..., T) int tokens → (..., T, d_model) token embeddings."""
        return self.trunk.embed(tokens)

    def __call__(
        self, tokens: jax.Array | None = None, *, embeddings: jax.Array | None = None
    ) -> jax.Array:
        """Next-token logits (..., T, vocab_size) from ``tokens`` or ``embeddings``."""
        if (tokens is None) == (embeddings is None):
            raise ValueError("pass exactly one of tokens and embeddings")
        if tokens is not None:
            embeddings = self.embed(tokens)
        length = embeddings.shape[-2]
        causal = jnp.tril(jnp.ones((length, length), bool))
        return self.head(self.trunk.encode(embeddings, causal))
