"""Sums over sample or quadrature axes, evaluated all at once or a fixed number at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def chunked_sum(term: Callable[[PyTree], PyTree], data: PyTree, chunk_size: int | None) -> PyTree:
    """``term(data)``, or the sum of ``term`` over consecutive chunks of ``chunk_size`` rows.

    ``data`` is a pytree of arrays sharing a leading axis of length ``n`` (the nodes,
    noise draws, ...), drawn before chunking; ``term(rows)`` returns the sum of the
    rows' contributions. Full chunks run in a ``lax.scan`` (memory of one chunk), the
    remainder after it, so the result is the unchunked one up to float rounding.
    """
    n = jax.tree.leaves(data)[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return term(data)
    num_chunks, rest = divmod(n, chunk_size)
    full = num_chunks * chunk_size
    chunks = jax.tree.map(lambda a: a[:full].reshape(num_chunks, chunk_size, *a.shape[1:]), data)
    shapes = jax.eval_shape(term, jax.tree.map(lambda a: a[0], chunks))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(total, chunk):
        return jax.tree.map(jnp.add, total, term(chunk)), None

    total, _ = jax.lax.scan(body, zeros, chunks)
    if rest:
        total = jax.tree.map(jnp.add, total, term(jax.tree.map(lambda a: a[full:], data)))
    return total
