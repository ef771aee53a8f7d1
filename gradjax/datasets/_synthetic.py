"""Synthetic data with known ground truth: the 8-Gaussian ring and pLSA corpora."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradjax._checks import check_int, check_key, check_scalar


def ring_modes(num_modes: int = 8, radius: float = 2.0) -> jax.Array:
    """The centres of the ring: ``radius·(cos 2πk/m, sin 2πk/m)``, shape (m, 2)."""
    num_modes = check_int("num_modes", num_modes, 1)
    radius = check_scalar("radius", radius)
    angles = 2 * jnp.pi * jnp.arange(num_modes) / num_modes
    return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)


def ring_of_gaussians(
    key: jax.Array, n: int, *, num_modes: int = 8, radius: float = 2.0, std: float = 0.02
) -> jax.Array:
    """``n`` samples of an equal mixture of isotropic Gaussians on a ring, (n, 2) float32."""
    check_key("key", key)
    n = check_int("n", n, 1)
    std = check_scalar("std", std, low=0.0)
    mode_key, noise_key = jax.random.split(key)
    modes = ring_modes(num_modes, radius)
    which = jax.random.randint(mode_key, (n,), 0, num_modes)
    return modes[which] + std * jax.random.normal(noise_key, (n, 2))


class PLSACorpus(NamedTuple):
    """Word counts drawn from the pLSA model, with the factors that generated them."""

    counts: jax.Array  # (D, W) float32
    p_w_given_z: jax.Array  # (K, W)
    p_z_given_d: jax.Array  # (D, K)


def plsa_corpus(
    key: jax.Array,
    num_docs: int,
    vocab_size: int,
    num_topics: int,
    *,
    doc_length: int = 200,
    concentration: float = 0.1,
) -> PLSACorpus:
    """Documents from pLSA's generative model: z ~ p(z|d), then w ~ p(w|z).

    Topics are Dirichlet(concentration) over words (small values give peaked,
    well-separated topics) and mixtures Dirichlet(concentration) over topics; each
    document has ``doc_length`` words, so ``counts[d] ~ Multinomial(doc_length, p(w|d))``.
    """
    for name, value in (
        ("num_docs", num_docs),
        ("vocab_size", vocab_size),
        ("num_topics", num_topics),
        ("doc_length", doc_length),
    ):
        check_int(name, value, 1)
    check_key("key", key)
    concentration = check_scalar("concentration", concentration, low=0.0, strict=True)
    k_topics, k_mix, k_words = jax.random.split(key, 3)
    p_w_given_z = jax.random.dirichlet(k_topics, jnp.full(vocab_size, concentration), (num_topics,))
    p_z_given_d = jax.random.dirichlet(k_mix, jnp.full(num_topics, concentration), (num_docs,))
    p_w_given_d = p_z_given_d @ p_w_given_z
    words = jax.random.categorical(
        k_words, jnp.log(p_w_given_d)[:, None, :], shape=(num_docs, doc_length)
    )
    counts = jax.vmap(lambda w: jnp.bincount(w, length=vocab_size))(words)
    return PLSACorpus(counts.astype(jnp.float32), p_w_given_z, p_z_given_d)
