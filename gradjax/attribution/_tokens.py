"""Token scores of text models: reductions of embedding attributions, and HTML shading."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._checks import check_bool, check_choice, check_scalar

from ._args import as_baseline, input_tree
from ._integrated import path_attributions

REDUCTIONS = ("sum", "l2", "max_abs")
FORMULAS = ("integrated_gradients", "alpha_scaled")


def token_scores(
    attributions: jax.Array,
    *,
    reduce: str = "sum",
    normalize: bool = False,
    mask: jax.Array | None = None,
) -> jax.Array:
    """One score per token from per-dimension attributions: ``(..., T, E) -> (..., T)``.

    ``"sum"`` is the signed total ``Σⱼ aₜⱼ`` (the token's share of ``f(x) - f(x̄)``:
    completeness carries over), ``"l2"`` is ``‖aₜ‖₂`` and ``"max_abs"`` is
    ``maxⱼ |aₜⱼ|`` (the reference's two magnitudes). ``normalize`` maps the scores of
    each sequence to [0, 1] by ``(s - min) / (max - min)`` over its (unmasked) tokens;
    a sequence whose tokens all score the same maps to zeros. A NaN attribution
    (a NaN gradient) makes its sequence's normalised scores NaN: it is never
    hidden.

    Args:
      attributions: ``(..., T, E)`` floating array, e.g. from
        :func:`integrated_gradients` on token embeddings.
      reduce: ``"sum"``, ``"l2"`` or ``"max_abs"``.
      normalize: min-max normalise over the tokens of each sequence.
      mask: optional ``(..., T)`` bool array; masked (padding) tokens score 0 and
        are ignored by the normalisation.

    Returns:
      ``(..., T)`` scores.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax.attribution import token_scores
      >>> token_scores(jnp.array([[1.0, -2.0], [0.5, 0.5]]), reduce="l2", normalize=True)
      Array([1., 0.], dtype=float32)
    """
    check_choice("reduce", reduce, REDUCTIONS)
    check_bool("normalize", normalize)
    attributions = jnp.asarray(attributions)
    if attributions.ndim < 2:
        raise ValueError(
            f"attributions must have shape (..., T, E), got shape {attributions.shape}"
        )
    if not jnp.issubdtype(attributions.dtype, jnp.floating):
        raise TypeError(f"attributions must be floating, got dtype {attributions.dtype}")
    if attributions.size == 0:
        raise ValueError(f"attributions must be non-empty, got shape {attributions.shape}")
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != attributions.shape[:-1]:
            raise ValueError(f"mask must have shape {attributions.shape[:-1]}, got {mask.shape}")
        mask = mask.astype(bool)
    if reduce == "sum":
        scores = jnp.sum(attributions, axis=-1)
    elif reduce == "l2":
        scores = jnp.sqrt(jnp.sum(jnp.square(attributions), axis=-1))
    else:
        scores = jnp.max(jnp.abs(attributions), axis=-1)
    if mask is None:
        mask = jnp.ones(scores.shape, bool)
    if normalize:
        low = jnp.min(jnp.where(mask, scores, jnp.inf), axis=-1, keepdims=True)
        high = jnp.max(jnp.where(mask, scores, -jnp.inf), axis=-1, keepdims=True)
        span = high - low
        flat = span == 0  # not `span > 0`, which would turn a NaN span into zeros
        scores = jnp.where(flat, 0.0, (scores - low) / jnp.where(flat, 1.0, span))
    return jnp.where(mask, scores, 0.0)


def token_attributions(
    fun: Callable[[jax.Array], jax.Array],
    embeddings: jax.Array,
    baseline: jax.Array | None = None,
    *,
    steps: int = 50,
    method: str = "trapezoid",
    chunk_size: int | None = None,
    formula: str = "integrated_gradients",
    reduce: str = "sum",
    normalize: bool = False,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Per-token scores of a text model, attributed on its token embeddings.

    With ``formula="integrated_gradients"`` (the textbook one) the ``(T, E)``
    attributions are ``(e - ē) ⊙ Σₖ wₖ ∇F(ē + αₖ(e - ē))``, which satisfy
    completeness. ``formula="alpha_scaled"`` is the variant of the reference's code,
    the path average of gradient × input ``Σₖ wₖ (αₖ(e - ē)) ⊙ ∇F(ē + αₖ(e - ē))``
    (with a zero baseline: ``mean_α (α·e) ⊙ ∇F(α·e)``); it weights the gradients near
    the input more and does not satisfy completeness. Each token's row is then
    reduced by :func:`token_scores`.

    Args:
      fun: ``fun(embeddings) -> scalar``, e.g. ``lambda e: model.apply(params, e, mask,
        method=CharCNN.classify)[label]`` for one sequence.
      embeddings: ``(T, E)`` token embeddings of one sequence (vmap for a batch).
      baseline: ``(T, E)`` reference embeddings (or a scalar); defaults to zeros.
      steps, method, chunk_size: as in :func:`integrated_gradients`.
      formula: ``"integrated_gradients"`` or ``"alpha_scaled"``.
      reduce, normalize, mask: as in :func:`token_scores`.

    Returns:
      ``(T,)`` scores.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax.attribution import token_attributions
      >>> w = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # a linear model of 3 tokens
      >>> emb = jnp.array([[1.0, 2.0], [3.0, 1.0], [0.5, -0.5]])
      >>> token_attributions(lambda e: jnp.sum(w * e), emb, steps=4)
      Array([1., 2., 0.], dtype=float32)
    """
    check_choice("formula", formula, FORMULAS)
    check_choice("reduce", reduce, REDUCTIONS)
    embeddings = input_tree("embeddings", embeddings)
    if not isinstance(embeddings, jax.Array) or embeddings.ndim != 2:
        shape = getattr(embeddings, "shape", type(embeddings).__name__)
        raise ValueError(f"embeddings must be one (T, E) array, got {shape}")
    baseline = as_baseline(baseline, embeddings)
    alpha_scaled = formula == "alpha_scaled"
    attributions = path_attributions(
        fun, embeddings, baseline, steps, method, chunk_size, alpha_scaled
    )
    return token_scores(attributions, reduce=reduce, normalize=normalize, mask=mask)


def render_html(tokens: Sequence[str], scores: Any, *, max_opacity: float = 0.85) -> str:
    """Tokens as HTML spans shaded by score: red for positive, blue for negative.

    The shading is ``|s| / max|s|`` (a [0, 1]-normalised score is its own opacity,
    up to ``max_opacity``); each token is HTML-escaped and carries its score as a
    tooltip. Returns a ``<div>`` fragment safe to embed in a page.

    Args:
      tokens: the T token strings.
      scores: T finite numbers (e.g. from :func:`token_scores`).
      max_opacity: the opacity of the highest-scoring token, in (0, 1].

    Returns:
      The HTML fragment, a str.

    Example:
      >>> from gradjax.attribution import render_html
      >>> page = render_html(["这", "<b>"], [1.0, -0.5])
      >>> "rgba(255, 0, 0, 0.850)" in page, "rgba(0, 90, 255, 0.425)" in page, "&lt;b&gt;" in page
      (True, True, True)
    """
    if isinstance(tokens, str):
        raise TypeError("tokens must be a sequence of strings (one per score), got one str")
    tokens = list(tokens)
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"tokens must be strings, got {type(token).__name__} {token!r}")
    scores = np.asarray(jax.device_get(scores), dtype=np.float64)
    if scores.shape != (len(tokens),):
        raise ValueError(f"scores must have shape ({len(tokens)},) like tokens, got {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores must be finite, got {scores}")
    max_opacity = check_scalar("max_opacity", max_opacity, 0.0, strict=True, high=1.0)
    peak = np.max(np.abs(scores), initial=0.0)
    spans = []
    for token, score in zip(tokens, scores, strict=True):
        opacity = max_opacity * abs(score) / peak if peak > 0 else 0.0
        colour = "255, 0, 0" if score >= 0 else "0, 90, 255"
        spans.append(
            f'<span style="background-color: rgba({colour}, {opacity:.3f}); padding: 0 1px" '
            f'title="{score:.4f}">{html.escape(token)}</span>'
        )
    return (
        '<div class="gradjax-attribution" style="font-size: 1.15em; line-height: 1.8">'
        + "".join(spans)
        + "</div>"
    )
