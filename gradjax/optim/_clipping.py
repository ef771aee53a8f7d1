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

Complex gradients are supported: ‖g‖² = Σ|gᵢ|² = Σ gᵢ·conj(gᵢ), so ``[3+4j, 0]`` has norm 5.
Integer or bool gradients are a ``TypeError`` naming ``updates`` (scaling them would
truncate to zeros). A NaN or Inf gradient makes the norm non-finite, so the whole
clipped tree (or leaf) is NaN: the failure shows, it is never masked.

Every form keeps the pre-clip global norm of the last gradient in its state
(:class:`ClipState`, ``grad_norm``, float32; the leaf forms too), for logging:
``optax.tree.get(opt_state, "grad_norm")``. It costs one scalar.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import check_scalar, inexact_tree

PyTree = Any


def _wide(x: jax.Array) -> jax.Array:
    """``x`` in float32 or wider (complex64 for complex), where norms and scales are computed."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _norm(tree: PyTree) -> jax.Array:
    """‖tree‖ = sqrt(Σ|x|²) accumulated wide, with a finite derivative at zero.

    ``optax.tree.norm`` sums |x|² (x·conj(x) for complex leaves); the leaves are widened
    first so a bf16/float16 squared norm cannot overflow, and the square root is guarded
    so gradients through the update (meta-learning) stay finite at g = 0.
    """
    squared = optax.tree.norm(jax.tree.map(_wide, tree), squared=True)
    zero = squared == 0  # (not ``squared > 0``, which would turn a NaN norm into 0)
    return jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, squared)))


def _scale(x: jax.Array, scale: jax.Array) -> jax.Array:
    wide = _wide(x)
    return (wide * scale.astype(wide.dtype)).astype(jnp.result_type(x))


def _hard_scale(norm: jax.Array, max_norm: Any) -> jax.Array:
    max_norm = jnp.asarray(max_norm, norm.dtype)
    return max_norm / jnp.maximum(norm, max_norm)


def _soft_scale(norm: jax.Array, max_norm: Any) -> jax.Array:
    max_norm = jnp.asarray(max_norm, norm.dtype)
    return max_norm / (norm + max_norm)


def _check_max_norm(max_norm: Any) -> None:
    check_scalar("max_norm", max_norm, low=0.0, strict=True)


class ClipState(NamedTuple):
    """State of every clipping transformation: ``grad_norm``, the global norm ‖g‖ of the
    last gradient *before* clipping (float32, 0 before the first update), for logging:
    ``optax.tree.get(state, "grad_norm")`` finds it inside any chain."""

    grad_norm: jax.Array


def _init_clip_state(params: PyTree) -> ClipState:
    del params
    return ClipState(grad_norm=jnp.zeros([], jnp.float32))


def _logged(norm: jax.Array) -> ClipState:
    # Complex trees have a real norm already; float64 norms are logged in float32 too.
    return ClipState(grad_norm=jnp.asarray(norm).real.astype(jnp.float32))


def _global_transform(scale_fn, max_norm) -> optax.GradientTransformation:
    _check_max_norm(max_norm)

    def update_fn(updates, state, params=None):
        del params, state  # the state is only written: the last pre-clip norm
        inexact_tree("updates", updates)
        if not jax.tree.leaves(updates):
            return updates, _logged(jnp.zeros([]))
        norm = _norm(updates)
        scale = scale_fn(norm, max_norm)
        return jax.tree.map(lambda x: _scale(x, scale), updates), _logged(norm)

    return optax.GradientTransformation(_init_clip_state, update_fn)


def _leaf_transform(scale_fn, max_norm) -> optax.GradientTransformation:
    _check_max_norm(max_norm)

    def update_fn(updates, state, params=None):
        del params, state
        inexact_tree("updates", updates)
        norms = jax.tree.map(_norm, updates)
        clipped = jax.tree.map(lambda x, n: _scale(x, scale_fn(n, max_norm)), updates, norms)
        # The global norm from the leaf norms already taken: a few scalars more.
        return clipped, _logged(_norm(jax.tree.leaves(norms)))

    return optax.GradientTransformation(_init_clip_state, update_fn)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Hard clipping (clip-1): rescales the whole gradient tree to a global norm of at most γ.

    .. math:: g \leftarrow g \cdot \min\Big(1, \frac{\gamma}{\|g\|}\Big),
              \qquad \|g\|^2 = \textstyle\sum_{\text{leaves}} \sum |g_{ij}|^2

    The direction is kept; the output norm is ``min(‖g‖, γ)``. Same result as
    ``optax.clip_by_global_norm`` up to rounding, with the norm in float32 or wider.

    Args:
      max_norm: γ > 0, finite, the largest global norm let through. A Python, NumPy or JAX
        scalar; a traced one (a schedule) is used unchecked.

    Returns:
      An ``optax.GradientTransformation`` whose state, a :class:`ClipState`, holds the
      pre-clip global norm ``grad_norm`` (float32) of the last update.

    Example:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from gradjax import optim
      >>> tx = optim.clip_by_global_norm(1.0)
      >>> grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}  # ‖g‖ = 5
      >>> updates, _ = tx.update(grads, tx.init(grads))
      >>> updates["a"], updates["b"]
      (Array([0.6, 0. ], dtype=float32), Array([0.8], dtype=float32))
      >>> tx = optax.chain(optim.clip_by_global_norm(1.0), optax.adam(1e-3))
      >>> _, state = tx.update(grads, tx.init(grads))
      >>> optax.tree.get(state, "grad_norm")  # the norm before clipping, for logging
      Array(5., dtype=float32)

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
      max_norm: γ > 0, finite, the norm the output approaches for large gradients. A
        Python, NumPy or JAX scalar; a traced one (a schedule) is used unchecked.

    Returns:
      An ``optax.GradientTransformation`` whose state, a :class:`ClipState`, holds the
      pre-clip global norm ``grad_norm`` (float32) of the last update.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import optim
      >>> tx = optim.soft_clip_by_global_norm(1.0)
      >>> updates, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(None))  # 1/(5 + 1)
      >>> updates
      Array([0.5      , 0.6666667], dtype=float32)

    References:
      Zhang, He, Sra & Jadbabaie, "Why gradient clipping accelerates training",
      ICLR 2020. Su Jianlin, kexue.fm/archives/7469.
    """
    return _global_transform(_soft_scale, max_norm)


def clip_by_leaf_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Hard clipping (clip-1) of each leaf by its own norm.

    .. math:: g_i \leftarrow g_i \cdot \min\Big(1, \frac{\gamma}{\|g_i\|}\Big)

    Args:
      max_norm: γ > 0, finite, the largest norm let through for any single leaf. A
        Python, NumPy or JAX scalar; a traced one (a schedule) is used unchecked.

    Returns:
      An ``optax.GradientTransformation`` whose state, a :class:`ClipState`, holds the
      pre-clip global norm ``grad_norm`` (float32) of the last update.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import optim
      >>> tx = optim.clip_by_leaf_norm(1.0)
      >>> grads = {"big": jnp.array([3.0, 4.0]), "small": jnp.array([0.3, 0.4])}
      >>> updates, _ = tx.update(grads, tx.init(grads))
      >>> updates["big"], updates["small"]
      (Array([0.6, 0.8], dtype=float32), Array([0.3, 0.4], dtype=float32))

    References:
      Zhang, He, Sra & Jadbabaie, "Why gradient clipping accelerates training",
      ICLR 2020.
    """
    return _leaf_transform(_hard_scale, max_norm)


def soft_clip_by_leaf_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Soft clipping (clip-2) of each leaf by its own norm.

    .. math:: g_i \leftarrow g_i \cdot \frac{\gamma}{\|g_i\| + \gamma}

    Args:
      max_norm: γ > 0, finite, the norm each leaf's output approaches for large
        gradients. A Python, NumPy or JAX scalar; a traced one (a schedule) is used
        unchecked.

    Returns:
      An ``optax.GradientTransformation`` whose state, a :class:`ClipState`, holds the
      pre-clip global norm ``grad_norm`` (float32) of the last update.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import optim
      >>> tx = optim.soft_clip_by_leaf_norm(1.0)
      >>> grads = {"big": jnp.array([3.0, 4.0]), "zero": jnp.zeros(2)}
      >>> updates, _ = tx.update(grads, tx.init(grads))
      >>> updates["big"], updates["zero"]
      (Array([0.5      , 0.6666667], dtype=float32), Array([0., 0.], dtype=float32))

    References:
      Zhang, He, Sra & Jadbabaie, "Why gradient clipping accelerates training",
      ICLR 2020. Su Jianlin, kexue.fm/archives/7469.
    """
    return _leaf_transform(_soft_scale, max_norm)
