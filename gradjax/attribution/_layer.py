"""Attributions to a hidden layer ``h = body(x)`` of ``head(body(x))``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradjax._checks import check_bool, check_callable

from ._args import as_baseline, check_chunk_size, check_scalar_output, input_tree
from ._chunks import chunked_sum
from ._integrated import gap_result, path_attributions
from ._quadrature import quadrature
from ._result import IntegratedGradientsResult, with_gap

PyTree = Any


def _layer_inputs(body, head, x, baseline):
    check_callable("body", body)
    check_callable("head", head)
    x = input_tree("x", x)
    baseline = as_baseline(baseline, x)
    for leaf in jax.tree.leaves(jax.eval_shape(body, x)):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"body must return floating arrays, got a leaf of dtype {leaf.dtype}")
    return x, baseline


def layer_integrated_gradients(
    body: Callable[[PyTree], PyTree],
    head: Callable[[PyTree], jax.Array],
    x: PyTree,
    baseline: PyTree = None,
    *,
    steps: int = 50,
    method: str = "gauss_legendre",
    chunk_size: int | None = None,
    return_gap: bool = False,
    targets: Any = None,
) -> PyTree | IntegratedGradientsResult:
    """Layer integrated gradients: IG of ``head`` on the straight path in layer space.

    .. math::
      \\mathrm{LIG}(x) = (h - \\bar h) \\odot \\int_0^1
      \\nabla \\mathrm{head}\\big(\\bar h + \\alpha (h - \\bar h)\\big)\\,d\\alpha,
      \\qquad h = \\mathrm{body}(x),\\ \\bar h = \\mathrm{body}(\\bar x),

    Captum's ``LayerIntegratedGradients``: complete,
    ``Σ LIG = head(h) − head(h̄)`` up to the quadrature error, and
    :func:`integrated_gradients` when ``body`` is the identity. The path's points
    ``h̄ + α(h − h̄)`` need not be activations the model can produce (compare
    :func:`layer_conductance`). The quadrature is that of ``integrated_gradients``.

    Args:
      body: ``body(x) -> h``, the model up to the layer (any pytree of floating arrays).
      head: ``head(h) -> scalar``, the rest of the model and the class to explain;
        with ``targets``, ``head(h) -> (C,)`` outputs.
      x: the input, an array or any pytree of floating arrays.
      baseline: the reference input ``x̄`` (x's pytree, leaves of x's shapes or scalars);
        defaults to zeros.
      steps: the number of gradient evaluations of ``head``.
      method: a fixed rule of :func:`quadrature`.
      chunk_size: if given, evaluate the steps this many at a time.
      return_gap: also return the completeness gap, a finiteness flag and ``steps``.
      targets: (K,) int indices into ``head``'s output vector, attributed in one call
        (one linearisation per node, as in :func:`integrated_gradients`).

    Returns:
      The attributions, the same pytree and shapes as ``body(x)`` (a leading targets
      axis of size K with ``targets``); with ``return_gap=True`` an
      :class:`IntegratedGradientsResult`.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax.attribution import layer_integrated_gradients
      >>> body = lambda x: (x, x**2)
      >>> head = lambda h: h[0] * h[1]
      >>> lig = layer_integrated_gradients(body, head, jnp.array(1.0), steps=4)
      >>> [round(float(a), 6) for a in lig]
      [0.5, 0.5]

    References:
      Sundararajan, Taly & Yan, ICML 2017 (arXiv:1703.01365); Captum's
      ``LayerIntegratedGradients`` (captum.ai).
    """
    check_bool("return_gap", return_gap)
    x, baseline = _layer_inputs(body, head, x, baseline)
    h, h_baseline = body(x), body(baseline)
    attributions = path_attributions(
        head, h, h_baseline, steps, method, chunk_size, False, name="head", targets=targets
    )
    if not return_gap:
        return attributions
    return gap_result(attributions, head, h, h_baseline, steps, targets)


def layer_conductance(
    body: Callable[[PyTree], PyTree],
    head: Callable[[PyTree], jax.Array],
    x: PyTree,
    baseline: PyTree = None,
    *,
    steps: int = 50,
    method: str = "gauss_legendre",
    chunk_size: int | None = None,
    return_gap: bool = False,
) -> PyTree | IntegratedGradientsResult:
    """Layer conductance: the layer's share of the path integral along the *input* path.

    .. math::
      \\mathrm{Cond}(x) = \\int_0^1
      \\nabla_h \\mathrm{head}\\big(\\mathrm{body}(\\gamma(\\alpha))\\big)
      \\odot \\partial_\\alpha \\mathrm{body}(\\gamma(\\alpha))\\,d\\alpha,
      \\qquad \\gamma(\\alpha) = \\bar x + \\alpha (x - \\bar x),

    (Dhamdhere, Sundararajan & Yan 2018), by the rule ``Σₖ wₖ ∇head(hₖ) ⊙ ḣₖ``, where
    ``(hₖ, ḣₖ) = jax.jvp(body, (γ(αₖ),), (x − x̄,))`` gives the α-derivative of the
    layer exactly at every node (forward mode, one pass per node). The sum over a
    layer is the chain rule's ``d head(body(γ))/dα``, so the attributions are complete,
    ``Σ = head(body(x)) − head(body(x̄))`` up to the quadrature error; the path visits
    only activations the model produces; with ``body`` the identity it is
    :func:`integrated_gradients`. (Captum's ``LayerConductance`` replaces ``ḣₖ Δα``
    by the difference of consecutive layer evaluations, a first-order rule whatever
    its ``method``.) The gradients of ``head`` are one reverse pass over the weighted
    sum, as in ``integrated_gradients``.

    Args:
      body: ``body(x) -> h``, the model up to the layer (any pytree of floating arrays).
      head: ``head(h) -> scalar``, the rest of the model and the class to explain.
      x: the input, an array or any pytree of floating arrays.
      baseline: the reference input ``x̄``; defaults to zeros.
      steps: the number of nodes (each one jvp of ``body`` and one gradient of ``head``).
      method: a fixed rule of :func:`quadrature`.
      chunk_size: if given, evaluate the steps this many at a time.
      return_gap: also return the completeness gap, a finiteness flag and ``steps``.

    Returns:
      The attributions, the same pytree and shapes as ``body(x)``; with
      ``return_gap=True`` an :class:`IntegratedGradientsResult`.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax.attribution import layer_conductance
      >>> body = lambda x: (x, x**2)
      >>> head = lambda h: h[0] * h[1]
      >>> cond = layer_conductance(body, head, jnp.array(1.0), steps=4)
      >>> [round(float(a), 6) for a in cond]
      [0.333333, 0.666667]

    References:
      Dhamdhere, Sundararajan & Yan, "How Important Is a Neuron?", ICLR 2019
      (arXiv:1805.12233).
    """
    check_bool("return_gap", return_gap)
    x, baseline = _layer_inputs(body, head, x, baseline)
    nodes, weights = quadrature(method, steps)
    chunk_size = check_chunk_size(chunk_size)
    h = body(x)
    check_scalar_output("head", head, h)
    delta = jax.tree.map(jnp.subtract, x, baseline)

    def chunk_sum(chunk):
        alphas, ws = chunk

        def layer(alpha):
            point = jax.tree.map(lambda b, d: b + alpha.astype(d.dtype) * d, baseline, delta)
            return jax.jvp(body, (point,), (delta,))

        hs, rates = jax.vmap(layer)(alphas)

        def weighted_total(u):  # ∇ᵤ Σₖ wₖ head(hₖ + ḣₖ ⊙ u) = Σₖ wₖ ḣₖ ⊙ ∇head(hₖ)
            values = jax.vmap(head)(jax.tree.map(lambda hk, rk, ui: hk + rk * ui, hs, rates, u))
            return jnp.dot(ws.astype(values.dtype), values)

        return jax.grad(weighted_total)(jax.tree.map(jnp.zeros_like, h))

    attributions = chunked_sum(chunk_sum, (jnp.asarray(nodes), jnp.asarray(weights)), chunk_size)
    if not return_gap:
        return attributions
    return with_gap(attributions, head(h), head(body(baseline)), steps)
