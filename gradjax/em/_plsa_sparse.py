"""pLSA's E-step sums over the non-zeros of a sparse count matrix, segment by segment.

For each non-zero ``(d, w, n)`` the model probability is a K-dot of two rows,
``m = Σ_z Θ[d, z] Φ[z, w]``, and the ratio ``r = n / m`` goes back onto both factors:
``(RΦᵀ)[d] += r Φ[:, w]`` and ``(ΘᵀR)[:, w] += r Θ[d]``.

Layout: the non-zeros are grouped by document into *segments* of ``L`` slots (a
document's non-zeros fill ``ceil(len/L)`` segments; unused slots hold a zero count).
Each segment belongs to one document, so ``Θ[d]`` is gathered once per segment and
the document-side sum is a reduction over the ``L`` slots before a small scatter;
only the word side needs a gather and a scatter per non-zero. ``L`` is the largest
power of two <= the mean document length (at most 16), so the slots number at most
``nnz + D·L <= 2·nnz``. A ``fori_loop`` visits ``CHUNK`` slots at a time, so each
gathered block is reused while it is in cache and the working memory is
O(CHUNK·K + (D + W)·K): never D×W, and not nnz×K.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import sparse

CHUNK = 4096  # slots per loop iteration
MAX_SLOTS = 16  # slots per segment


class Segments(NamedTuple):
    """The non-zeros of a BCOO grouped into per-document segments, in loop chunks."""

    docs: jax.Array  # (num_chunks, rows) int: the document of each segment (sorted)
    words: jax.Array  # (num_chunks, rows, slots) int
    values: jax.Array  # (num_chunks, rows, slots) float; 0 in unused slots
    num_docs: int
    num_words: int


def segment(counts: sparse.BCOO) -> Segments:
    """Groups the non-zeros of a 2-D BCOO by document (works under ``jit``)."""
    num_docs, num_words = counts.shape
    nnz = counts.nse
    docs, words, values = counts.indices[:, 0], counts.indices[:, 1], counts.data
    if not counts.indices_sorted:
        order = jnp.argsort(docs, stable=True)
        docs, words, values = docs[order], words[order], values[order]
    slots = 1
    while slots * 2 <= min(MAX_SLOTS, nnz // max(num_docs, 1)):
        slots *= 2
    rows_per_chunk = CHUNK // slots
    max_rows = -(-nnz // slots) + num_docs  # Σ_d ceil(len_d / slots) <= nnz/slots + D
    num_chunks = max(1, -(-max_rows // rows_per_chunk))
    num_rows = num_chunks * rows_per_chunk

    lengths = jnp.zeros(num_docs, jnp.int32).at[docs].add(1, indices_are_sorted=True)
    first = jnp.cumsum(lengths) - lengths  # index of each document's first non-zero
    rows = (lengths + slots - 1) // slots
    first_row = jnp.cumsum(rows) - rows
    position = jnp.arange(nnz, dtype=jnp.int32) - first[docs]
    row = first_row[docs] + position // slots
    slot = row * slots + position % slots  # unique, < num_rows * slots
    seg_words = jnp.zeros(num_rows * slots, words.dtype).at[slot].set(words, unique_indices=True)
    seg_values = jnp.zeros(num_rows * slots, values.dtype).at[slot].set(values, unique_indices=True)
    # unused rows (all at the end) point at the last document, keeping ``docs`` sorted
    seg_docs = jnp.full(num_rows, num_docs - 1, docs.dtype).at[row].set(docs)
    return Segments(
        seg_docs.reshape(num_chunks, rows_per_chunk),
        seg_words.reshape(num_chunks, rows_per_chunk, slots),
        seg_values.reshape(num_chunks, rows_per_chunk, slots),
        num_docs,
        num_words,
    )


def e_step_sums(
    segments: Segments, theta: jax.Array, phi: jax.Array, *, doc_side: bool, word_side: bool
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """``(Σ n log m, RΦᵀ (D, K) or None, ΘᵀR (K, W) or None)`` over the non-zeros."""
    dtype = theta.dtype
    num_topics = theta.shape[1]
    phi_t = phi.T  # (W, K): rows are gathered

    def body(i, acc):
        log_lik, doc_sums, word_sums = acc
        docs, words, values = segments.docs[i], segments.words[i], segments.values[i]
        theta_rows = theta[docs]  # (rows, K): one gather per segment
        phi_rows = phi_t[words]  # (rows, slots, K)
        model = jnp.einsum("rk,rsk->rs", theta_rows, phi_rows)
        positive = values > 0  # unused slots and explicit zeros contribute nothing
        safe = jnp.where(positive, model, 1)
        log_lik = log_lik + jnp.sum(jnp.where(positive, values * jnp.log(safe), 0))
        ratio = jnp.where(positive, values / safe, 0)
        if doc_side:
            per_row = jnp.einsum("rs,rsk->rk", ratio, phi_rows)
            doc_sums = doc_sums.at[docs].add(per_row, indices_are_sorted=True)
        if word_side:
            spread = ratio[:, :, None] * theta_rows[:, None, :]
            word_sums = word_sums.at[words.reshape(-1)].add(spread.reshape(-1, num_topics))
        return log_lik, doc_sums, word_sums

    init = (
        jnp.zeros((), dtype),
        jnp.zeros((segments.num_docs, num_topics), dtype) if doc_side else None,
        jnp.zeros((segments.num_words, num_topics), dtype) if word_side else None,
    )
    log_lik, doc_sums, word_sums = jax.lax.fori_loop(0, segments.docs.shape[0], body, init)
    return log_lik, doc_sums, None if word_sums is None else word_sums.T


def doc_lengths(segments: Segments) -> jax.Array:
    """``n(d) = Σ_w n(d, w)``."""
    per_row = jnp.sum(segments.values, axis=-1).ravel()
    return (
        jnp.zeros(segments.num_docs, per_row.dtype)
        .at[segments.docs.ravel()]
        .add(per_row, indices_are_sorted=True)
    )
