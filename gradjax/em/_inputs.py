"""Argument checks and data preparation shared by the clustering functions.

Each check runs before tracing and raises an error that names the argument. The
data preparation (centring for the squared-distance expansion, unit rows for
cosine) lives here too, so every algorithm sees points prepared the same way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._checks import check_int, is_concrete

INITS = ("k-means++", "random")
METRICS = ("euclidean", "cosine")


def as_points(x: Any, name: str = "x") -> jax.Array:
    """``x`` as a 2-D floating array (integers become the default float dtype)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {x.shape}")
    if jnp.issubdtype(x.dtype, jnp.complexfloating) or not (
        jnp.issubdtype(x.dtype, jnp.floating)
        or jnp.issubdtype(x.dtype, jnp.integer)
        or x.dtype == bool
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    x = jnp.asarray(x) if jnp.issubdtype(x.dtype, jnp.floating) else jnp.asarray(x, float)
    if is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} must be finite, got NaN or infinite entries")
    return x


def check_num_clusters(num_clusters: Any, n: int) -> int:
    k = check_int("num_clusters", num_clusters, 1)
    if k > n:
        raise ValueError(f"num_clusters must be <= the number of points {n}, got {k}")
    return k


def check_nonnegative(name: str, value: Any) -> None:
    if is_concrete(value) and np.ndim(value) == 0 and not float(value) >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def check_block_size(block_size: Any) -> int | None:
    return None if block_size is None else check_int("block_size", block_size, 1)


def as_weights(weights: Any, n: int, dtype) -> jax.Array:
    """Sample weights as an (n,) array of ``dtype``; ``None`` is all ones."""
    if weights is None:
        return jnp.ones(n, dtype)
    shape = np.shape(weights)
    if shape != (n,):
        raise ValueError(f"weights must have shape ({n},) (one per point), got {shape}")
    if is_concrete(weights):
        host = np.asarray(weights)
        if not np.issubdtype(host.dtype, np.number) and host.dtype != bool:
            raise TypeError(f"weights must be numeric, got dtype {host.dtype}")
        if not np.all(np.isfinite(host)) or np.any(host < 0):
            raise ValueError("weights must be finite and >= 0, got a negative or non-finite one")
        if not np.any(host > 0):
            raise ValueError("weights must have at least one positive entry, got all zeros")
    return jnp.asarray(weights, dtype)


def check_init(init: Any, num_clusters: int, d: int, dtype) -> str | jax.Array:
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(
                f"init must be one of {INITS} or a (num_clusters, d) array, got {init!r}"
            )
        return init
    if not hasattr(init, "shape"):
        raise TypeError(f"init must be a str or an array, got {type(init).__name__}")
    if tuple(init.shape) != (num_clusters, d):
        raise ValueError(f"init must have shape ({num_clusters}, {d}), got {tuple(init.shape)}")
    return jnp.asarray(init, dtype)


def check_unit_normalisable(name: str, x: jax.Array) -> None:
    """Cosine needs a direction for every row: a zero row is an error when concrete."""
    if is_concrete(x) and bool(jnp.any(jnp.all(x == 0, axis=1))):
        raise ValueError(f"{name} has a zero-norm row, which has no direction for metric='cosine'")


def unit_rows(x: jax.Array) -> jax.Array:
    """Rows scaled to unit Euclidean norm (a zero row becomes NaN when traced)."""
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


def scaled_tolerance(x, tol):
    """``tol`` times the mean per-feature variance of ``x`` (scikit-learn's scaling)."""
    return tol * jnp.mean(jnp.var(x, axis=0))
