"""Many output indices at once: one linearisation per point, ``vmap`` over one-hot cotangents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradjax._checks import check_callable, index_array

from ._chunks import chunked_sum

PyTree = Any


class Targets(NamedTuple):
    """Checked ``targets``: the (K,) int indices and the output's shape and dtype."""

    indices: jax.Array
    num_outputs: int
    dtype: Any


def check_targets(name: str, fun: Any, targets: Any, *example_args: Any) -> Targets:
    """``fun(*example_args)`` must be a (C,) floating vector and ``targets`` ints in ``[0, C)``.

    The output's shape comes from ``jax.eval_shape`` (nothing runs), so out-of-range
    targets are caught before tracing whenever the targets are concrete.
    """
    check_callable(name, fun)
    out = jax.eval_shape(fun, *example_args)
    if not isinstance(out, jax.ShapeDtypeStruct) or len(out.shape) != 1:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"{name} must return a vector of outputs (C,) when targets is given, got output "
            f"of shape {shape}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return real floating outputs, got dtype {out.dtype}")
    indices = index_array("targets", targets, out.shape[0])
    return Targets(indices, out.shape[0], out.dtype)


def split_chunk(chunk_size: int | None, num_targets: int) -> tuple[int | None, int]:
    """(rows per chunk, targets per chunk) so that a chunk holds at most ``chunk_size``
    (row, target) pairs: all targets and ``chunk_size // K`` rows, or one row and
    ``chunk_size`` targets when there are more targets than that."""
    if chunk_size is None:
        return None, num_targets
    if chunk_size >= num_targets:
        return chunk_size // num_targets, num_targets
    return 1, chunk_size


def map_over_targets(per_chunk: Callable[[jax.Array], PyTree], indices: jax.Array, size: int):
    """``per_chunk(indices)`` (leaves with a leading targets axis), ``size`` targets at a
    time in a ``lax.map``; the last chunk is padded with a repeated index, then cut."""
    k = indices.shape[0]
    if size >= k:
        return per_chunk(indices)
    num_chunks = -(-k // size)
    padded = jnp.concatenate([indices, jnp.full(num_chunks * size - k, indices[-1])])
    out = jax.lax.map(per_chunk, padded.reshape(num_chunks, size))
    return jax.tree.map(lambda a: a.reshape(num_chunks * size, *a.shape[2:])[:k], out)


def pullbacks(vector_fun: Callable[[PyTree], jax.Array], u: PyTree, cotangents: jax.Array):
    """``[vjp(eₜ) for eₜ in cotangents]`` stacked: one linearisation of ``vector_fun`` at
    ``u`` (one forward pass), its transpose ``vmap``-ed over the cotangents."""
    _, vjp = jax.vjp(vector_fun, u)
    return jax.vmap(lambda c: vjp(c)[0])(cotangents)


def summed_pullbacks(
    term: Callable[[PyTree, PyTree], jax.Array],
    u: PyTree,
    data: PyTree,
    targets: Targets,
    chunk_size: int | None,
) -> PyTree:
    """``Σ_rows ∂term(rows, u)[t]/∂u`` for every target ``t``: leaves ``(K, *u_leaf.shape)``.

    ``term(rows, u) -> (C,)`` sums the rows' outputs (weighted as the caller wants); the
    rows are ``data``'s leading axis. Memory is bounded by ``chunk_size`` (row, target)
    pairs per chunk; the result does not depend on it (up to float rounding).
    """
    rows_per_chunk, targets_per_chunk = split_chunk(chunk_size, targets.indices.shape[0])

    def for_targets(indices):
        cotangents = jax.nn.one_hot(indices, targets.num_outputs, dtype=targets.dtype)
        return chunked_sum(
            lambda rows: pullbacks(lambda v: term(rows, v), u, cotangents), data, rows_per_chunk
        )

    return map_over_targets(for_targets, targets.indices, targets_per_chunk)
