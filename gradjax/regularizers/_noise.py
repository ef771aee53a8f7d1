"""Input noise: the Monte-Carlo average of the loss under Gaussian perturbations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import (
    as_mask,
    check_int,
    check_key,
    check_scalar,
    check_scalar_fun,
    floating_inputs,
    nan_outside,
)

from ._tree import _apply_mask, _axpy

PyTree = Any


def noisy_loss(
    key: jax.Array,
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    stdev: float,
    num_samples: int = 1,
    mask: PyTree | None = None,
) -> jax.Array:
    """Monte-Carlo average of the loss under additive Gaussian input noise.

    ``(1/k) Σⱼ fun(x + σεⱼ)``, σ = ``stdev``, εⱼ ~ N(0, I) iid, an unbiased estimate of
    E l(x + σε) ≈ l(x) + ½σ²Δl(x) (exact for a quadratic loss).

    Args:
      key: PRNG key for the noise.
      fun: ``x -> scalar``, the loss (close over parameters and labels).
      x: one example: a floating array or pytree of them.
      stdev: the noise's standard deviation σ >= 0 (a traced negative one gives NaN).
      num_samples: number k of noise draws averaged, >= 1 (evaluated with ``vmap``).
      mask: optional bool array (or pytree like x), True where x may be perturbed; its
        shape is a prefix of x's (e.g. (L,) for (L, E) embeddings).

    Returns:
      The averaged loss, a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> loss = regularizers.noisy_loss(  # E‖x + σε‖² = ‖x‖² + 3σ² = 3.03
      ...     jax.random.key(0), lambda x: jnp.sum(x**2), jnp.ones(3), stdev=0.1,
      ...     num_samples=100_000)
      >>> round(float(loss), 2)
      3.03
    """
    x = floating_inputs("x", x, " (perturb embeddings, not token ids)")
    check_scalar_fun("fun", fun, x)
    check_key("key", key)
    stdev = nan_outside(check_scalar("stdev", stdev, low=0.0), 0.0)
    num_samples = check_int("num_samples", num_samples, 1)
    mask = as_mask("mask", mask, x)

    def one(k):
        return fun(_axpy(stdev, _apply_mask(optax.tree.random_like(k, x), mask), x))

    return jnp.mean(jax.vmap(one)(jax.random.split(key, num_samples)))
