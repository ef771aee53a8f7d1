"""Integrated gradients: attribute ``f(x) - f(x̄)`` to the input's components.

On the straight path ``γ(α) = x̄ + α(x - x̄)`` from a baseline ``x̄`` to the input
``x``, the fundamental theorem of calculus gives

    f(x) - f(x̄) = Σᵢ (xᵢ - x̄ᵢ) ∫₀¹ ∂ᵢf(γ(α)) dα  =  Σᵢ IGᵢ(x),

so ``IG(x) = (x - x̄) ⊙ ∫₀¹ ∇f(γ(α)) dα`` splits the change of the output exactly
over the inputs (completeness). The integral is a quadrature
``Σₖ wₖ ∇f(γ(αₖ))``; every node's gradient is evaluated at once with ``jax.vmap``
(optionally in chunks, to bound memory), so a batch of inputs under
``jax.jit(jax.vmap(...))`` becomes one batched forward/backward pass over
inputs × steps.

Quadrature rules, with ``n = steps`` gradient evaluations:

=================  ==========================  ======================================
method             nodes αₖ (k = 0 … n-1)      weights wₖ
=================  ==========================  ======================================
``left``           k / n                       1 / n            (error O(1/n))
``right``          (k + 1) / n                 1 / n            (error O(1/n))
``midpoint``       (k + ½) / n                 1 / n            (error O(1/n²))
``trapezoid``      k / (n - 1)                 1 / (n - 1), halved at both ends
                                                                (error O(1/n²))
``gauss_legendre`` the n Legendre nodes         the Gauss weights (exact for
                   mapped to [0, 1]             polynomials of degree <= 2n - 1)
=================  ==========================  ======================================

Every rule's weights sum to 1, so a linear ``f`` gets its exact attributions
``w ⊙ (x - x̄)`` for any ``n``. (Captum's ``riemann_trapezoid`` puts weights 1/n,
halved at the ends, on the nodes k/(n-1): they sum to (n-1)/n, so its attributions
are scaled by that factor; ``trapezoid`` here is the textbook rule.)

References:
  Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017
  (arXiv:1703.01365). Su Jianlin, "Integrated gradients: a plain attribution method
  for neural networks" (kexue.fm/archives/7533).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._checks import check_int, floating_tree

PyTree = Any
METHODS = ("left", "right", "midpoint", "trapezoid", "gauss_legendre")
REDUCTIONS = ("sum", "l2", "max_abs")
FORMULAS = ("integrated_gradients", "alpha_scaled")

__all__ = [
    "IntegratedGradientsResult",
    "heatmap_overlay",
    "integrated_gradients",
    "quadrature",
    "render_html",
    "token_attributions",
    "token_scores",
]


class IntegratedGradientsResult(NamedTuple):
    """Attributions with their completeness check.

    Attributes:
      attributions: same pytree and shapes as ``x``.
      completeness_gap: ``Σ attributions - (f(x) - f(x̄))``, a scalar; it goes to 0
        as ``steps`` grows (it measures the quadrature error).
      is_finite: whether every attribution and both outputs are finite.
    """

    attributions: PyTree
    completeness_gap: jax.Array
    is_finite: jax.Array


# ----------------------------------------------------------------------------- checks


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_steps(steps: Any, method: str) -> int:
    _check_choice("method", method, METHODS)
    return check_int("steps", steps, 2 if method == "trapezoid" else 1)


def _as_baseline(baseline: PyTree, x: PyTree) -> PyTree:
    """Zeros by default; otherwise x's structure, each leaf of x's shape or a scalar."""
    if baseline is None:
        return jax.tree.map(jnp.zeros_like, x)
    x_def, b_def = jax.tree.structure(x), jax.tree.structure(baseline)
    if x_def != b_def:
        raise ValueError(f"baseline must have the pytree structure of x {x_def}, got {b_def}")

    def leaf(b, xi):
        b = jnp.asarray(b)
        if b.shape not in ((), xi.shape):
            raise ValueError(
                f"baseline must have the shape of x {xi.shape} (or be a scalar), got {b.shape}"
            )
        return jnp.broadcast_to(b, xi.shape).astype(xi.dtype)

    return jax.tree.map(leaf, baseline, x)


def _check_fn(fn: Any, x: PyTree) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    out = jax.eval_shape(fn, x)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"fn must return a scalar, got output of shape {shape}; select the class to "
            "explain, e.g. lambda x: model(x)[label]"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"fn must return a floating scalar, got dtype {out.dtype}")


# ----------------------------------------------------------------------------- quadrature


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``αₖ`` in [0, 1] and weights ``wₖ`` (summing to 1) of a rule with ``steps`` nodes.

    See the module docstring for each rule's nodes and weights.

    Args:
      method: one of ``"left"``, ``"right"``, ``"midpoint"``, ``"trapezoid"``,
        ``"gauss_legendre"``.
      steps: the number of nodes (>= 1; >= 2 for ``"trapezoid"``).

    Returns:
      ``(nodes, weights)``, two float64 NumPy arrays of shape ``(steps,)``.

    Example:
      >>> quadrature("trapezoid", 3)
      (array([0. , 0.5, 1. ]), array([0.25, 0.5 , 0.25]))
    """
    n = _check_steps(steps, method)
    k = np.arange(n, dtype=np.float64)
    if method == "gauss_legendre":
        t, w = np.polynomial.legendre.leggauss(n)
        return (t + 1.0) / 2.0, w / 2.0
    if method == "trapezoid":
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2.0
        return k / (n - 1), weights
    offset = {"left": 0.0, "right": 1.0, "midpoint": 0.5}[method]
    return (k + offset) / n, np.full(n, 1.0 / n)


# ----------------------------------------------------------------------------- core


def _path_gradient_sum(fn, baseline, delta, nodes, weights, chunk_size):
    """``Σₖ wₖ ∇f(x̄ + αₖ·δ)``, steps vmapped, optionally ``chunk_size`` at a time.

    The weighted sum is itself one gradient: with ``h(u) = Σₖ wₖ f(x̄ + αₖδ + u)``,
    ``∇h(0) = Σₖ wₖ ∇f(x̄ + αₖδ)``. Reverse mode then seeds each step's output with
    its weight and sums the steps' input cotangents in the broadcast of ``u``, so
    the per-step gradients are never stacked and reweighted separately.
    """

    def chunk_sum(alphas, ws):
        def weighted_total(u):
            def point(b, d, ui):
                a = alphas.astype(d.dtype).reshape((-1,) + (1,) * d.ndim)
                return b + a * d + ui

            values = jax.vmap(fn)(jax.tree.map(point, baseline, delta, u))
            return jnp.dot(ws.astype(values.dtype), values)

        return jax.grad(weighted_total)(jax.tree.map(jnp.zeros_like, delta))

    n = nodes.shape[0]
    if chunk_size is None or chunk_size >= n:
        return chunk_sum(jnp.asarray(nodes), jnp.asarray(weights))
    num_chunks, rest = divmod(n, chunk_size)
    full = num_chunks * chunk_size

    def body(total, chunk):
        return jax.tree.map(jnp.add, total, chunk_sum(*chunk)), None

    chunks = (
        jnp.asarray(nodes[:full]).reshape(num_chunks, chunk_size),
        jnp.asarray(weights[:full]).reshape(num_chunks, chunk_size),
    )
    total, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, delta), chunks)
    if rest:
        tail = chunk_sum(jnp.asarray(nodes[full:]), jnp.asarray(weights[full:]))
        total = jax.tree.map(jnp.add, total, tail)
    return total


def _path_attributions(fn, x, baseline, steps, method, chunk_size, alpha_scaled):
    """``δ ⊙ Σₖ wₖ ∇f(x̄ + αₖδ)`` with ``δ = x - x̄``, or with weights ``wₖαₖ`` if
    ``alpha_scaled``; checks the static options and ``fn`` first."""
    nodes, weights = quadrature(method, steps)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, 1)
    _check_fn(fn, x)
    if alpha_scaled:
        weights = weights * nodes
    delta = jax.tree.map(jnp.subtract, x, baseline)
    grad_sum = _path_gradient_sum(fn, baseline, delta, nodes, weights, chunk_size)
    return jax.tree.map(jnp.multiply, delta, grad_sum)


def integrated_gradients(
    fn: Callable[[PyTree], jax.Array],
    x: PyTree,
    baseline: PyTree = None,
    *,
    steps: int = 50,
    method: str = "trapezoid",
    chunk_size: int | None = None,
    return_gap: bool = False,
) -> PyTree | IntegratedGradientsResult:
    """Integrated gradients of a scalar function: ``(x - x̄) ⊙ Σₖ wₖ ∇f(x̄ + αₖ(x - x̄))``.

    The signed attributions sum to ``f(x) - f(x̄)`` up to the quadrature error
    (exactly, for a linear ``f``; for a polynomial of degree <= 2·steps with
    ``"gauss_legendre"``). The gradients at the ``steps`` nodes are computed together
    with ``jax.vmap``; with ``chunk_size`` they are computed ``chunk_size`` at a time
    in a ``lax.scan`` (memory of one chunk; the same result up to float rounding).

    ``x`` is one example. For a batch, ``jax.vmap`` over it (inputs and steps then run
    as one batch); under ``jax.jit`` a batch sharded over a ``jax.sharding.Mesh``
    (``NamedSharding`` on its leading axis) is attributed where it lives.

    Args:
      fn: ``fn(x) -> scalar``, e.g. the logit or probability of one class:
        ``lambda x: model.apply(params, x)[label]`` (a vector output is rejected:
        choose the class in ``fn``).
      x: the input, an array or any pytree of floating arrays.
      baseline: the reference ``x̄``: the same pytree as ``x`` with leaves of the
        same shapes (or scalars). Defaults to zeros.
      steps: the number of gradient evaluations (>= 1; >= 2 for ``"trapezoid"``).
      method: the quadrature rule: ``"left"``, ``"right"``, ``"midpoint"``,
        ``"trapezoid"`` or ``"gauss_legendre"`` (see :func:`quadrature`).
      chunk_size: if given, evaluate the steps this many at a time.
      return_gap: also return the completeness gap and a finiteness flag (two more
        evaluations of ``fn``).

    Returns:
      The attributions, same pytree, shapes and dtypes as ``x``; with
      ``return_gap=True`` an :class:`IntegratedGradientsResult`.

    Example:
      >>> w = jnp.array([1.0, -2.0, 3.0])
      >>> integrated_gradients(lambda x: jnp.tanh(x @ w), jnp.ones(3), steps=32,
      ...                      method="gauss_legendre")
    """
    if not isinstance(return_gap, bool):
        raise TypeError(f"return_gap must be a bool, got {type(return_gap).__name__}")
    x = floating_tree("x", x)
    baseline = _as_baseline(baseline, x)
    attributions = _path_attributions(fn, x, baseline, steps, method, chunk_size, False)
    if not return_gap:
        return attributions
    f_x, f_baseline = fn(x), fn(baseline)
    total = sum(jnp.sum(a) for a in jax.tree.leaves(attributions))
    finite = jnp.isfinite(f_x) & jnp.isfinite(f_baseline)
    for a in jax.tree.leaves(attributions):
        finite = finite & jnp.all(jnp.isfinite(a))
    return IntegratedGradientsResult(attributions, total - (f_x - f_baseline), finite)


# ----------------------------------------------------------------------------- tokens


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
    a sequence whose tokens all score the same maps to zeros.

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
      >>> token_scores(jnp.array([[1.0, -2.0], [0.5, 0.5]]), reduce="l2", normalize=True)
      Array([1., 0.], dtype=float32)
    """
    _check_choice("reduce", reduce, REDUCTIONS)
    attributions = jnp.asarray(attributions)
    if attributions.ndim < 2:
        raise ValueError(
            f"attributions must have shape (..., T, E), got shape {attributions.shape}"
        )
    if not jnp.issubdtype(attributions.dtype, jnp.floating):
        raise TypeError(f"attributions must be floating, got dtype {attributions.dtype}")
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
        safe = jnp.where(span > 0, span, 1.0)
        scores = jnp.where(span > 0, (scores - low) / safe, 0.0)
    return jnp.where(mask, scores, 0.0)


def token_attributions(
    fn: Callable[[jax.Array], jax.Array],
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
      fn: ``fn(embeddings) -> scalar``, e.g. ``lambda e: model.apply(params, e, mask,
        method=CharCNN.classify)[label]`` for one sequence.
      embeddings: ``(T, E)`` token embeddings of one sequence (vmap for a batch).
      baseline: ``(T, E)`` reference embeddings (or a scalar); defaults to zeros.
      steps, method, chunk_size: as in :func:`integrated_gradients`.
      formula: ``"integrated_gradients"`` or ``"alpha_scaled"``.
      reduce, normalize, mask: as in :func:`token_scores`.

    Returns:
      ``(T,)`` scores.

    Example:
      >>> emb = model.apply(params, ids, method=CharCNN.embed)
      >>> scores = token_attributions(
      ...     lambda e: model.apply(params, e, mask, method=CharCNN.classify)[label],
      ...     emb, reduce="l2", normalize=True, mask=mask)
    """
    _check_choice("formula", formula, FORMULAS)
    _check_choice("reduce", reduce, REDUCTIONS)
    embeddings = floating_tree("embeddings", embeddings)
    if not isinstance(embeddings, jax.Array) or embeddings.ndim != 2:
        shape = getattr(embeddings, "shape", type(embeddings).__name__)
        raise ValueError(f"embeddings must be one (T, E) array, got {shape}")
    baseline = _as_baseline(baseline, embeddings)
    alpha_scaled = formula == "alpha_scaled"
    attributions = _path_attributions(
        fn, embeddings, baseline, steps, method, chunk_size, alpha_scaled
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
      >>> render_html(["这", "家", "店"], [0.1, 0.2, 1.0])
    """
    tokens = list(tokens)
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"tokens must be strings, got {type(token).__name__} {token!r}")
    scores = np.asarray(jax.device_get(scores), dtype=np.float64)
    if scores.shape != (len(tokens),):
        raise ValueError(f"scores must have shape ({len(tokens)},) like tokens, got {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores must be finite, got {scores}")
    if not 0.0 < max_opacity <= 1.0:
        raise ValueError(f"max_opacity must be in (0, 1], got {max_opacity}")
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


# ----------------------------------------------------------------------------- images


def heatmap_overlay(image: Any, attributions: Any, *, ax: Any = None, alpha: float = 0.6) -> Any:
    """Draws an image in grey with its signed attributions on top (red +, blue -).

    The colour scale is symmetric, ``[-max|a|, max|a|]``; colour channels of an
    ``(H, W, C)`` image or attribution are summed. Needs matplotlib.

    Args:
      image: ``(H, W)`` or ``(H, W, C)`` array.
      attributions: ``(H, W)`` or ``(H, W, C)`` attributions of that image.
      ax: a matplotlib Axes (a new figure's if None).
      alpha: opacity of the attribution layer, in [0, 1].

    Returns:
      The Axes (its last image is the attribution layer, for a colour bar).

    Example:
      >>> ax = heatmap_overlay(x.reshape(8, 8), ig.reshape(8, 8))
    """
    import matplotlib.pyplot as plt

    image = np.asarray(jax.device_get(image), dtype=np.float64)
    attributions = np.asarray(jax.device_get(attributions), dtype=np.float64)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")
    if attributions.shape[:2] != image.shape[:2] or attributions.ndim not in (2, 3):
        raise ValueError(
            f"attributions must have shape {image.shape[:2]} (+ channels), got {attributions.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    heat = attributions.sum(axis=-1) if attributions.ndim == 3 else attributions
    limit = float(np.max(np.abs(heat))) or 1.0
    if ax is None:
        _, ax = plt.subplots()
    ax.imshow(grey, cmap="gray_r" if grey.min() >= 0 else "gray")
    ax.imshow(heat, cmap="bwr", vmin=-limit, vmax=limit, alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
