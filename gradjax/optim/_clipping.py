r"""Gradient clipping in its two forms, over the whole tree or leaf by leaf.

With γ > 0 the *hard* form (clip-1) and the *soft* form (clip-2) scale a gradient g by

.. math::

    s_1 = \min\Big(1, \frac{\gamma}{\|g\|}\Big), \qquad s_2 = \frac{\gamma}{\|g\| + \gamma},
    \qquad \tfrac12 s_1 \le s_2 \le s_1 .

Both make ‖s·g‖ < γ; clip-1 is the identity while ‖g‖ ≤ γ, clip-2 shrinks every
gradient and is smooth in g. Under the relaxed (L₀, L₁) smoothness of Zhang et al.,
gradient descent with the step 1/(L₀ + L₁‖g‖) is guaranteed to decrease the loss, and
that step is exactly clip-2 with η = 1/L₀ and γ = L₀/L₁.

Norms are accumulated in float32 or wider whatever the gradient dtype, updates keep
their dtype (bf16 in, bf16 out), and a zero gradient gives zeros (no NaN): s₁ is
computed as γ / max(‖g‖, γ), and the norm has a finite derivative at zero, so gradients
through the update (meta-learning) stay finite too.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any


def _check_max_norm(max_norm: Any) -> None:
    if isinstance(max_norm, bool) or not (
        isinstance(max_norm, numbers.Real) or isinstance(max_norm, np.ndarray | jax.Array)
    ):
        raise TypeError(f"max_norm must be a positive float, got {max_norm!r}")
    if np.ndim(max_norm) != 0:
        raise ValueError(f"max_norm must be a scalar, got shape {np.shape(max_norm)}")
    if isinstance(max_norm, jax.core.Tracer):
        return  # a traced max_norm (a schedule, a meta-gradient) cannot be checked here
    if not np.isfinite(max_norm) or max_norm <= 0:
        raise ValueError(f"max_norm must be positive and finite, got {max_norm}")


def _wide(x: jax.Array) -> jax.Array:
    """``x`` in float32 or wider, where norms and scales are computed."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _squared_norm(x: jax.Array) -> jax.Array:
    x = _wide(x)
    return jnp.sum(x * x)


def _sqrt(squared_norm: jax.Array) -> jax.Array:
    """The norm, with a finite derivative at zero (for gradients through the update)."""
    positive = squared_norm > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared_norm, 1)), 0)


def _scale(x: jax.Array, scale: jax.Array) -> jax.Array:
    wide = _wide(x)
    return (wide * scale.astype(wide.dtype)).astype(x.dtype)


def _hard_scale(norm: jax.Array, max_norm: Any) -> jax.Array:
    max_norm = jnp.asarray(max_norm, norm.dtype)
    return max_norm / jnp.maximum(norm, max_norm)


def _soft_scale(norm: jax.Array, max_norm: Any) -> jax.Array:
    max_norm = jnp.asarray(max_norm, norm.dtype)
    return max_norm / (norm + max_norm)


def _global_transform(scale_fn, max_norm) -> optax.GradientTransformation:
    _check_max_norm(max_norm)

    def update_fn(updates, state, params=None):
        del params
        leaves = jax.tree.leaves(updates)
        if not leaves:
            return updates, state
        norm = _sqrt(sum(_squared_norm(x) for x in leaves))
        scale = scale_fn(norm, max_norm)
        return jax.tree.map(lambda x: _scale(x, scale), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _leaf_transform(scale_fn, max_norm) -> optax.GradientTransformation:
    _check_max_norm(max_norm)

    def clip_leaf(x):
        return _scale(x, scale_fn(_sqrt(_squared_norm(x)), max_norm))

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(clip_leaf, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Hard clipping (clip-1): rescales the whole gradient tree to a global norm of at most γ.

    .. math:: g \leftarrow g \cdot \min\Big(1, \frac{\gamma}{\|g\|}\Big),
              \qquad \|g\|^2 = \textstyle\sum_{\text{leaves}} \sum g_{ij}^2

    The direction is kept; the output norm is ``min(‖g‖, γ)``. Same result as
    ``optax.clip_by_global_norm`` up to rounding, with the norm in float32 or wider.

    Args:
      max_norm: γ > 0, the largest global norm let through.

    Returns:
      A stateless ``optax.GradientTransformation``.

    Example:
      >>> tx = optax.chain(gj.optim.clip_by_global_norm(1.0), optax.adam(1e-3))

    References:
      Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
      networks", ICML 2013. Zhang, He, Sra & Jadbabaie, "Why gradient clipping
      accelerates training", ICLR 2020. Su Jianlin, kexue.fm/archives/7469.
    """
    return _global_transform(_hard_scale, max_norm)


def soft_clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Soft clipping (clip-2): scales the whole gradient tree by γ/(‖g‖ + γ).

    .. math:: g \leftarrow g \cdot \frac{\gamma}{\|g\| + \gamma}

    A smooth, monotone function of ‖g‖: the output norm γ‖g‖/(‖g‖+γ) grows with ‖g‖
    and tends to γ. Within a factor 2 of clip-1 (½·clip-1 ≤ clip-2 ≤ clip-1). With
    plain gradient descent at rate η it is the step 1/(L₀ + L₁‖g‖) that (L₀, L₁)
    smoothness guarantees safe, for η = 1/L₀ and γ = L₀/L₁.

    Args:
      max_norm: γ > 0, the norm the output approaches for large gradients.

    Returns:
      A stateless ``optax.GradientTransformation``.

    Example:
      >>> tx = optax.chain(gj.optim.soft_clip_by_global_norm(1.0), optax.sgd(0.1))

    References:
      Zhang, He, Sra & Jadbabaie, "Why gradient clipping accelerates training",
      ICLR 2020. Su Jianlin, kexue.fm/archives/7469.
    """
    return _global_transform(_soft_scale, max_norm)


def clip_by_leaf_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Hard clipping (clip-1) of each leaf by its own norm.

    .. math:: g_i \leftarrow g_i \cdot \min\Big(1, \frac{\gamma}{\|g_i\|}\Big)

    Args:
      max_norm: γ > 0, the largest norm let through for any single leaf.

    Returns:
      A stateless ``optax.GradientTransformation``.

    Example:
      >>> tx = optax.chain(gj.optim.clip_by_leaf_norm(1.0), optax.sgd(0.1))

    References:
      Zhang, He, Sra & Jadbabaie, "Why gradient clipping accelerates training",
      ICLR 2020.
    """
    return _leaf_transform(_hard_scale, max_norm)


def soft_clip_by_leaf_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Soft clipping (clip-2) of each leaf by its own norm.

    .. math:: g_i \leftarrow g_i \cdot \frac{\gamma}{\|g_i\| + \gamma}

    Args:
      max_norm: γ > 0, the norm each leaf's output approaches for large gradients.

    Returns:
      A stateless ``optax.GradientTransformation``.

    Example:
      >>> tx = optax.chain(gj.optim.soft_clip_by_leaf_norm(1.0), optax.sgd(0.1))

    References:
      Zhang, He, Sra & Jadbabaie, "Why gradient clipping accelerates training",
      ICLR 2020. Su Jianlin, kexue.fm/archives/7469.
    """
    return _leaf_transform(_soft_scale, max_norm)
