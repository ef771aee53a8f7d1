"""Input noise: the Monte-Carlo average of the loss under Gaussian perturbations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import check_int, check_key, check_scalar, check_scalar_fun

from ._checks import _as_inputs, _as_mask
from ._tree import _apply_mask, _axpy

PyTree = Any


def noisy_loss(
    key: jax.Array,
    loss_fn: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    sigma: float,
    num_samples: int = 1,
    mask: PyTree | None = None,
) -> jax.Array:
    """Monte-Carlo average of the loss under additive Gaussian input noise.

    ``(1/k) Σⱼ loss_fn(x + σεⱼ)``, εⱼ ~ N(0, I) iid, an unbiased estimate of
    E l(x + σε) ≈ l(x) + ½σ²Δl(x) (exact for a quadratic loss).

    Args:
      key: PRNG key for the noise.
      loss_fn: ``x -> scalar`` (close over parameters and labels).
      x: one example: a floating array or pytree of them.
      sigma: noise standard deviation, >= 0.
      num_samples: number k of noise draws averaged, >= 1 (evaluated with ``vmap``).
      mask: optional bool array (or pytree like x), True where x may be perturbed; its
        shape is a prefix of x's (e.g. (L,) for (L, E) embeddings).

    Returns:
      The averaged loss, a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> loss = regularizers.noisy_loss(  # E‖x + σε‖² = ‖x‖² + 3σ² = 3.03
      ...     jax.random.key(0), lambda x: jnp.sum(x**2), jnp.ones(3), sigma=0.1,
      ...     num_samples=100_000)
      >>> round(float(loss), 2)
      3.03
    """
    x = _as_inputs(x)
    check_scalar_fun("loss_fn", loss_fn, x)
    check_key("key", key)
    check_scalar("sigma", sigma, low=0.0)
    num_samples = check_int("num_samples", num_samples, 1)
    mask = _as_mask(mask, x)

    def one(k):
        return loss_fn(_axpy(sigma, _apply_mask(optax.tree.random_like(k, x), mask), x))

    return jnp.mean(jax.vmap(one)(jax.random.split(key, num_samples)))
