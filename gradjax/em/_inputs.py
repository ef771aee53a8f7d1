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

from gradjax._checks import check_finite_tree, check_int, concrete_any, is_concrete, real_array

INITS = ("k-means++", "random")
METRICS = ("euclidean", "cosine")


def _real_matrix(name: str, value: Any, what: str) -> jax.Array:
    """``value`` as a 2-D real (int or float) JAX array: the shared rule of ``real_array``
    (dense only; bool and complex are TypeErrors), then the rank."""
    value = real_array(name, value)
    if value.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array {what}, got shape {value.shape}")
    return value


def as_points(x: Any, name: str = "x") -> jax.Array:
    """``x`` as a non-empty 2-D floating array (integers become the default float dtype),
    finite when concrete."""
    x = _real_matrix(name, x, "(n_samples, n_features)")
    if 0 in x.shape:
        raise ValueError(
            f"{name} must be non-empty (at least one point and one feature), got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = jnp.asarray(x, float)
    check_finite_tree(name, x)
    return x


def as_centroids(name: str, value: Any, d: int, dtype: Any, k: int | None = None) -> jax.Array:
    """A (k, d) array of centroids in ``dtype`` (ints are converted), finite when concrete."""
    value = _real_matrix(name, value, f"({'k' if k is None else k}, {d})")
    want = (value.shape[0] if k is None else k, d)
    if value.shape != want or value.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape ({'k >= 1' if k is None else k}, {d}), got {value.shape}"
        )
    check_finite_tree(name, value)
    return jnp.asarray(value, dtype)


def check_num_clusters(num_clusters: Any, n: int) -> int:
    k = check_int("num_clusters", num_clusters, 1)
    if k > n:
        raise ValueError(f"num_clusters must be <= the number of points {n}, got {k}")
    return k


def check_block_size(block_size: Any) -> int | None:
    return None if block_size is None else check_int("block_size", block_size, 1)


def as_weights(weights: Any, n: int, dtype, num_clusters: int | None = None) -> jax.Array:
    """Sample weights as an (n,) array of ``dtype``; ``None`` is all ones.

    Concrete weights must be finite and >= 0, with at least ``num_clusters`` (if given,
    else one) positive entries. Traced ones cannot be checked: a negative weight
    becomes NaN, so the fit reports ``NONFINITE`` rather than a finite-looking answer.
    """
    if weights is None:
        return jnp.ones(n, dtype)
    shape = np.shape(weights)
    if shape != (n,):
        raise ValueError(f"weights must have shape ({n},) (one per point), got {shape}")
    weights = real_array("weights", weights)  # bools are not weights: pass w.astype(float)
    if concrete_any(weights, lambda w: ~jnp.isfinite(w) | (w < 0)):
        raise ValueError("weights must be finite and >= 0, got a negative or non-finite one")
    if is_concrete(weights):
        with jax.ensure_compile_time_eval():
            positive = int(jnp.sum(weights > 0))
        need = 1 if num_clusters is None else num_clusters
        if positive < need:
            raise ValueError(
                f"weights must have at least {need} positive entries (one per cluster), got "
                f"{positive}"
            )
        return jnp.asarray(weights, dtype)
    weights = jnp.asarray(weights, dtype)
    return jnp.where((weights < 0) | (jnp.sum(weights) <= 0), jnp.nan, weights)


def check_init(init: Any, num_clusters: int, d: int, dtype) -> str | jax.Array:
    """A seeding name, or a (num_clusters, d) array of starting centroids."""
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(
                f"init must be one of {list(INITS)} or a (num_clusters, d) array, got {init!r}"
            )
        return init
    if not hasattr(init, "shape"):
        raise TypeError(f"init must be a str or an array, got {type(init).__name__}")
    return as_centroids("init", init, d, dtype, num_clusters)


def check_unit_normalisable(name: str, x: jax.Array) -> None:
    """Cosine needs a direction for every row: a zero row is an error when concrete."""
    if concrete_any(x, lambda v: jnp.all(v == 0, axis=1)):
        raise ValueError(f"{name} has a zero-norm row, which has no direction for metric='cosine'")


def unit_rows(x: jax.Array) -> jax.Array:
    """Rows scaled to unit Euclidean norm, each divided by its largest magnitude first, so
    a row as small as 1e-30 in float32 (whose squared norm underflows to 0) keeps its
    direction. A zero row becomes NaN (it has none): traced, the fit reports NONFINITE."""
    scale = jnp.max(jnp.abs(x), axis=1, keepdims=True)
    x = x / scale
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


def scaled_tolerance(x, tol):
    """``tol`` times the mean per-feature variance of ``x`` (scikit-learn's scaling)."""
    return tol * jnp.mean(jnp.var(x, axis=0))
