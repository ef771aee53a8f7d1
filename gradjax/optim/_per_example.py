r"""Per-example gradient clipping: the clipped mean gradient of DP-SGD, in both forms.

For a batch of B examples with per-example gradients gᵢ = ∇ℓᵢ(θ), the clipped mean is

.. math:: \bar g = \frac1B \sum_{i=1}^{B} c_i\, g_i, \qquad
          c_i = \min\Big(1, \frac{\gamma}{\|g_i\|}\Big) \text{ (hard)} \quad\text{or}\quad
          c_i = \frac{\gamma}{\|g_i\| + \gamma} \text{ (soft)},

so every example moves the mean by less than γ/B: the sensitivity that DP-SGD's noise
is scaled to. The factors are those of :mod:`gradjax.optim._clipping` (one formula).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._checks import check_bool, check_callable, check_choice, check_int, check_scalar
from gradjax.optim._accumulate import _batch_size
from gradjax.optim._clipping import _hard_scale, _norm, _soft_scale, _wide

PyTree = Any

FORMS = {"hard": _hard_scale, "soft": _soft_scale}
METHODS = ("vmap", "ghost")
OTHER_LAYERS = ("error", "vmap")


class PerExampleClipInfo(NamedTuple):
    """What :func:`per_example_clipped_grad` reports beside the value.

    Attributes:
      norms: (B,) float32, each example's gradient norm ‖gᵢ‖ *before* clipping.
      clipped_fraction: float32 scalar, the fraction of examples with ‖gᵢ‖ > γ (those
        the hard form scales down; the soft form scales every example).
      aux: the user's aux with ``has_aux``: that of each example's call (on its batch of
        one), stacked on a leading axis of size B; ``None`` otherwise.
    """

    norms: jax.Array
    clipped_fraction: jax.Array
    aux: Any


class ChunkResult(NamedTuple):
    """One chunk's contribution: Σ ℓᵢ, Σ cᵢgᵢ (wide), the norms and the stacked aux."""

    loss_sum: jax.Array
    grad_sum: PyTree
    norms: jax.Array
    aux: Any


def single_example(fun: Callable, has_aux: bool) -> Callable:
    """``ℓᵢ(params, example, ...)``: ``fun`` on a batch of one (a leading axis of size 1)."""

    def loss(params, example, *args, **kwargs):
        one = jax.tree.map(lambda x: jnp.expand_dims(x, 0), example)
        out = fun(params, one, *args, **kwargs)
        value, aux = out if has_aux else (out, None)
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(
                f"fun must return a scalar loss (mean-reduced over the batch), got shape "
                f"{value.shape}"
            )
        return value, aux

    return loss


def weighted_sum(factors: jax.Array, per_example: PyTree) -> PyTree:
    """Σᵢ cᵢ·gᵢ over the leading axis, in float32 or wider."""
    return jax.tree.map(
        lambda g: jnp.tensordot(factors.astype(_wide(g).dtype), _wide(g), axes=1), per_example
    )


def vmap_chunk(fun, has_aux, scale_fn, max_norm):
    """Per-example gradients by ``vmap(grad)``: B copies of the gradient, one chunk at a time."""
    grad_fn = jax.value_and_grad(single_example(fun, has_aux), has_aux=True)

    def run(params, chunk, args, kwargs):
        (values, aux), grads = jax.vmap(lambda ex: grad_fn(params, ex, *args, **kwargs))(chunk)
        norms = jax.vmap(_norm)(grads)
        factors = scale_fn(norms, max_norm)
        return ChunkResult(jnp.sum(_wide(values)), weighted_sum(factors, grads), norms, aux)

    return run


def _chunks(batch: PyTree, batch_size: int, chunk_size: int) -> PyTree:
    return jax.tree.map(
        lambda x: jnp.reshape(x, (batch_size // chunk_size, chunk_size, *np.shape(x)[1:])), batch
    )


def per_example_clipped_grad(
    fun: Callable[..., Any],
    max_norm: float,
    *,
    form: str = "hard",
    method: str = "vmap",
    chunk_size: int | None = None,
    has_aux: bool = False,
    other_layers: str = "error",
) -> Callable[..., Any]:
    r"""The mean of per-example gradients, each clipped to norm γ: DP-SGD's clipped gradient.

    .. math:: \bar g = \frac1B \sum_{i=1}^{B} c_i\,\nabla\ell_i(\theta), \qquad
              c_i = \min\Big(1, \frac{\gamma}{\|\nabla\ell_i\|}\Big) \text{ (form="hard")}
              \ \text{or}\ \frac{\gamma}{\|\nabla\ell_i\| + \gamma} \text{ (form="soft")}

    where ℓᵢ(θ) = ``fun(params, batch_i)`` on a batch of one (example i with a leading
    axis of size 1): ``fun`` is a mean-reduced loss whose second argument is the batch, as
    for :func:`microbatched_value_and_grad`, and must treat examples independently (no
    BatchNorm). Every example changes ḡ by less than γ/B, in either form: the
    sensitivity :func:`dp_aggregate` adds noise for. The soft form (Bu et al.'s
    "automatic clipping", here with a finite γ) is smooth in the gradient.

    - ``method="vmap"``: per-example gradients by ``jax.vmap(jax.grad)``, ``chunk_size``
      examples at a time in a ``lax.scan`` (memory of ``chunk_size`` gradient copies).
    - ``method="ghost"``: ghost clipping (Li et al. 2021; Bu et al. 2023). The norms come
      from each layer's inputs aᵢ and output gradients δᵢ without forming gᵢ: for a flax
      ``Dense`` kernel ‖Σₜ aₜδₜᵀ‖² = ⟨AAᵀ, ΔΔᵀ⟩ over the positions t of a sequence
      (B, T, d), the (T×T) Gram form, or ‖AᵀΔ‖² when that is cheaper; ``DenseGeneral``,
      ``Embed`` (an equality mask for the Gram of one-hot rows) and ``Conv`` (its input
      patches) alike, biases as ‖Σₜδₜ‖². A layer called several times (weight sharing)
      concatenates its positions. ḡ is then formed from the same stored inputs and
      output gradients, Σᵢ cᵢ Σₜ aₜδₜᵀ (book-keeping: no second backward pass). Any
      other layer with parameters (LayerNorm, a parameter used outside a layer, or one
      transformed before reaching its layer) is a ``ValueError`` naming it, unless
      ``other_layers="vmap"``: those parameters' per-example gradients are then formed by
      ``vmap`` (cheap for small parameters such as LayerNorm's scale and bias).
      flax is imported only on this path.

    Args:
      fun: ``fun(params, batch, *args, **kwargs) -> loss`` (or ``(loss, aux)`` with
        ``has_aux``), mean-reduced over ``batch``, a pytree of arrays sharing a leading
        batch axis. ``args``/``kwargs`` go unchanged to every example.
      max_norm: γ > 0, finite.
      form: ``"hard"`` (clip-1) or ``"soft"`` (clip-2).
      method: ``"vmap"`` or ``"ghost"``.
      chunk_size: examples per ``vmap`` (both methods); must divide the batch size.
        ``None``: the whole batch at once.
      has_aux: whether ``fun`` returns ``(loss, aux)``.
      other_layers: ghost only: ``"error"`` (default) or ``"vmap"``, for parameters no
        ghost rule covers.

    Returns:
      A function with ``fun``'s signature returning ``((value, info), grads)``, the
      structure of ``jax.value_and_grad(fun, has_aux=True)``: ``value`` the mean loss
      over the batch (unclipped, in the loss's dtype), ``info`` a
      :class:`PerExampleClipInfo` (per-example norms, fraction clipped, the user's aux),
      ``grads`` the clipped mean ḡ in the parameters' dtypes (summed in float32 or wider).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import optim
      >>> def fun(w, batch):
      ...     x, y = batch
      ...     return jnp.mean((x @ w - y) ** 2)
      >>> x, y = jnp.array([[1.0, 0.0], [0.0, 3.0]]), jnp.zeros(2)
      >>> grad_fn = optim.per_example_clipped_grad(fun, 1.0)
      >>> (value, info), grads = grad_fn(jnp.ones(2), (x, y))  # gᵢ = 2xᵢ(xᵢ·w - yᵢ)
      >>> info.norms, info.clipped_fraction  # ‖g₁‖ = 2, ‖g₂‖ = 18: both clipped to 1
      (Array([ 2., 18.], dtype=float32), Array(1., dtype=float32))
      >>> grads  # the mean of [1, 0] and [0, 1]
      Array([0.5, 0.5], dtype=float32)

    References:
      Abadi et al., "Deep learning with differential privacy", CCS 2016. Li, Tramèr,
      Liang & Hashimoto, "Large language models can be strong differentially private
      learners", ICLR 2022 (ghost clipping for sequences). Bu, Wang, Zha & Karypis,
      "Differentially private optimization on large model at small cost", ICML 2023
      (book-keeping); Bu, Wang, Zha & Karypis, "Automatic clipping: differentially
      private deep learning made easier and stronger", NeurIPS 2023 (the soft form).
    """
    check_callable("fun", fun)
    check_scalar("max_norm", max_norm, low=0.0, strict=True)
    check_choice("form", form, list(FORMS))
    check_choice("method", method, METHODS)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, 1)
    has_aux = check_bool("has_aux", has_aux)
    check_choice("other_layers", other_layers, OTHER_LAYERS)
    if method != "ghost" and other_layers != "error":
        raise ValueError(
            f"other_layers belongs to method='ghost' only, got other_layers={other_layers!r} "
            f"with method={method!r}"
        )
    scale_fn = FORMS[form]
    if method == "vmap":
        chunk_fn = vmap_chunk(fun, has_aux, scale_fn, max_norm)
    else:
        from gradjax.optim._ghost import ghost_chunk  # imports flax

        chunk_fn = ghost_chunk(single_example(fun, has_aux), scale_fn, max_norm, other_layers)

    @functools.wraps(fun)
    def wrapped(params, batch, *args, **kwargs):
        size = _batch_size(batch, chunk_size or 1, "chunk_size")
        chunk = size if chunk_size is None else chunk_size
        if chunk == size:
            result = chunk_fn(params, batch, args, kwargs)
        else:
            shape = jax.eval_shape(
                lambda p, b: chunk_fn(p, b, args, kwargs),
                params,
                jax.tree.map(lambda x: x[:chunk], batch),
            )

            def body(carry, c):
                out = chunk_fn(params, c, args, kwargs)
                carry = jax.tree.map(jnp.add, carry, (out.loss_sum, out.grad_sum))
                return carry, (out.norms, out.aux)

            zeros = jax.tree.map(
                lambda s: jnp.zeros(s.shape, s.dtype), (shape.loss_sum, shape.grad_sum)
            )
            (loss_sum, grad_sum), (norms, aux) = jax.lax.scan(
                body, zeros, _chunks(batch, size, chunk)
            )
            flat = functools.partial(jax.tree.map, lambda a: a.reshape(size, *a.shape[2:]))
            result = ChunkResult(loss_sum, grad_sum, flat(norms), flat(aux))
        value_dtype = jax.eval_shape(
            lambda p, b: single_example(fun, has_aux)(p, b, *args, **kwargs)[0],
            params,
            jax.tree.map(lambda x: x[0], batch),
        ).dtype
        value = (result.loss_sum / size).astype(value_dtype)
        grads = jax.tree.map(
            lambda s, p: (s / size).astype(jnp.result_type(p)), result.grad_sum, params
        )
        norms = result.norms.astype(jnp.float32)
        clipped = jnp.mean((result.norms > max_norm).astype(jnp.float32))
        info = PerExampleClipInfo(norms, clipped, result.aux if has_aux else None)
        return (value, info), grads

    return wrapped
