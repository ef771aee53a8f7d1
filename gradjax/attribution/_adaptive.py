"""Adaptive integrated gradients: globally adaptive (7, 15) Gauss–Kronrod bisection.

The state is a fixed buffer of panels (the budget fixes its size, so the loop is
jit-able): each panel holds its interval, the Kronrod estimate of its share of
``∫∇f`` and the error estimate of the Gauss rule on it. Each step bisects the panel
with the largest error estimate and evaluates the two halves' 30 nodes in one batch,
until the completeness gap meets the tolerance or the budget is spent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import check_int

from ._args import check_chunk_size, check_scalar_output
from ._quadrature import gauss_kronrod_15
from ._result import IntegratedGradientsResult, tree_total, with_gap

PyTree = Any
NODES_PER_PANEL = 15


class _Panels(NamedTuple):
    lo: jax.Array  # (P,) left ends
    hi: jax.Array  # (P,) right ends
    kronrod: PyTree  # leaves (P, *x.shape): (hi - lo) Σⱼ Kⱼ ∇f(γ(αⱼ)), zero if unused
    error: jax.Array  # (P,) Σᵢ |δᵢ (K - G)ᵢ| of the panel, -inf if unused
    count: jax.Array  # number of panels in use
    gap: jax.Array  # the completeness gap of the current estimate


def adaptive_integrated_gradients(
    fun, x, baseline, steps, tol, chunk_size
) -> IntegratedGradientsResult:
    """See :func:`gradjax.attribution.integrated_gradients` with ``method="adaptive"``."""
    budget = check_int("steps", steps, NODES_PER_PANEL)
    chunk_size = check_chunk_size(chunk_size)
    check_scalar_output("fun", fun, x)
    max_panels = 1 + (budget - NODES_PER_PANEL) // (2 * NODES_PER_PANEL)
    delta = jax.tree.map(jnp.subtract, x, baseline)
    f_x, f_baseline = fun(x), fun(baseline)
    target = f_x - f_baseline
    dtype = target.dtype
    threshold = tol * jnp.maximum(jnp.abs(target), jnp.finfo(dtype).tiny)
    nodes, kronrod_w, gauss_w = (jnp.asarray(a, dtype) for a in gauss_kronrod_15())

    def gradient(alpha):
        return jax.grad(fun)(
            jax.tree.map(lambda b, d: b + alpha.astype(d.dtype) * d, baseline, delta)
        )

    def panel_sums(lo, hi):
        """Kronrod sums and Gauss error estimates of the panels ``[lo, hi]`` (arrays (p,))."""
        width = hi - lo
        alphas = (lo[:, None] + width[:, None] * nodes).reshape(-1)
        if chunk_size is None:
            grads = jax.vmap(gradient)(alphas)
        else:
            grads = jax.lax.map(gradient, alphas, batch_size=chunk_size)
        grads = jax.tree.map(lambda g: g.reshape(lo.shape[0], NODES_PER_PANEL, *g.shape[1:]), grads)

        def weigh(w):
            return jax.tree.map(
                lambda g: jnp.einsum("pn,pn...->p...", width[:, None] * w.astype(g.dtype), g),
                grads,
            )

        kronrod, gauss = weigh(kronrod_w), weigh(gauss_w)
        diff = jax.tree.map(lambda k, g, d: jnp.abs(d * (k - g)), kronrod, gauss, delta)
        error = sum(jnp.sum(e.reshape(lo.shape[0], -1), axis=1) for e in jax.tree.leaves(diff))
        return kronrod, error

    def gap(kronrod):
        total = jax.tree.map(lambda k: jnp.sum(k, axis=0), kronrod)
        return tree_total(optax.tree.mul(delta, total)) - target

    first, first_error = panel_sums(jnp.zeros(1, dtype), jnp.ones(1, dtype))
    pad = max_panels - 1
    kronrod = jax.tree.map(lambda k: jnp.pad(k, [(0, pad)] + [(0, 0)] * (k.ndim - 1)), first)
    panels = _Panels(
        lo=jnp.zeros(max_panels, dtype),
        hi=jnp.zeros(max_panels, dtype).at[0].set(1.0),
        kronrod=kronrod,
        error=jnp.full(max_panels, -jnp.inf, first_error.dtype).at[0].set(first_error[0]),
        count=jnp.ones((), jnp.int32),
        gap=gap(kronrod),
    )

    def unfinished(p: _Panels) -> jax.Array:
        return (p.count < max_panels) & jnp.isfinite(p.gap) & (jnp.abs(p.gap) > threshold)

    def bisect(p: _Panels) -> _Panels:
        i, j = jnp.argmax(p.error), p.count
        lo, hi = p.lo[i], p.hi[i]
        mid = 0.5 * (lo + hi)
        halves, errors = panel_sums(jnp.stack([lo, mid]), jnp.stack([mid, hi]))
        kronrod = jax.tree.map(lambda k, h: k.at[i].set(h[0]).at[j].set(h[1]), p.kronrod, halves)
        return _Panels(
            lo=p.lo.at[j].set(mid),
            hi=p.hi.at[i].set(mid).at[j].set(hi),
            kronrod=kronrod,
            error=p.error.at[i].set(errors[0]).at[j].set(errors[1]),
            count=j + 1,
            gap=gap(kronrod),
        )

    panels = jax.lax.while_loop(unfinished, bisect, panels)
    total = jax.tree.map(lambda k: jnp.sum(k, axis=0), panels.kronrod)
    attributions = optax.tree.mul(delta, total)
    evaluations = NODES_PER_PANEL + 2 * NODES_PER_PANEL * (panels.count - 1)
    return with_gap(attributions, f_x, f_baseline, evaluations, jnp.abs(panels.gap) <= threshold)
