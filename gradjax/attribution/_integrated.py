"""Integrated gradients with a fixed quadrature rule or adaptive Gauss–Kronrod refinement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradjax._checks import check_bool, check_scalar

from ._adaptive import adaptive_integrated_gradients
from ._args import as_baseline, check_chunk_size, check_scalar_output, input_tree
from ._chunks import chunked_sum
from ._quadrature import ADAPTIVE, METHODS, quadrature
from ._result import IntegratedGradientsResult, with_gap
from ._targets import check_targets, summed_pullbacks

PyTree = Any
DEFAULT_TOL = 1e-4


def _point(baseline, delta, alphas, u):
    """``x̄ + αₖδ + u`` for every node ``αₖ``: leaves with a leading nodes axis."""

    def leaf(b, d, ui):
        a = alphas.astype(d.dtype).reshape((-1,) + (1,) * d.ndim)
        return b + a * d + ui

    return jax.tree.map(leaf, baseline, delta, u)


def path_gradient_sum(fun, baseline, delta, nodes, weights, chunk_size, targets=None):
    """``Σₖ wₖ ∇f(x̄ + αₖ·δ)``, steps vmapped, optionally ``chunk_size`` at a time.

    The weighted sum is itself one gradient: with ``h(u) = Σₖ wₖ f(x̄ + αₖδ + u)``,
    ``∇h(0) = Σₖ wₖ ∇f(x̄ + αₖδ)``. Reverse mode then seeds each step's output with
    its weight and sums the steps' input cotangents in the broadcast of ``u``, so
    the per-step gradients are never stacked and reweighted separately. With
    ``targets`` (a :class:`Targets`), ``h`` is a vector and its one linearisation is
    pulled back along each target's one-hot cotangent (a leading targets axis).
    """
    data = (jnp.asarray(nodes), jnp.asarray(weights))
    zeros = jax.tree.map(jnp.zeros_like, delta)

    def weighted_total(chunk, u):
        alphas, ws = chunk
        values = jax.vmap(fun)(_point(baseline, delta, alphas, u))
        return jnp.tensordot(ws.astype(values.dtype), values, 1)

    if targets is not None:
        return summed_pullbacks(weighted_total, zeros, data, targets, chunk_size)
    return chunked_sum(
        lambda chunk: jax.grad(lambda u: weighted_total(chunk, u))(zeros), data, chunk_size
    )


def path_attributions(
    fun, x, baseline, steps, method, chunk_size, alpha_scaled, name="fun", targets=None
):
    """``δ ⊙ Σₖ wₖ ∇f(x̄ + αₖδ)`` with ``δ = x - x̄``, or with weights ``wₖαₖ`` if
    ``alpha_scaled``; checks the static options and ``fun`` first. With ``targets``
    (the raw option), ``fun`` returns a vector and the result has a targets axis."""
    nodes, weights = quadrature(method, steps)
    chunk_size = check_chunk_size(chunk_size)
    if targets is None:
        check_scalar_output(name, fun, x)
    else:
        targets = check_targets(name, fun, targets, x)
    if alpha_scaled:
        weights = weights * nodes
    delta = jax.tree.map(jnp.subtract, x, baseline)
    grad_sum = path_gradient_sum(fun, baseline, delta, nodes, weights, chunk_size, targets)
    return jax.tree.map(jnp.multiply, delta, grad_sum)


def gap_result(attributions, fun, x, baseline, evaluations, targets):
    """The result with its completeness gap, per target when ``targets`` is given."""
    f_x, f_baseline = fun(x), fun(baseline)
    if targets is not None:
        indices = jnp.asarray(targets)
        f_x, f_baseline = f_x[indices], f_baseline[indices]
    return with_gap(attributions, f_x, f_baseline, evaluations)


def integrated_gradients(
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    baseline: PyTree = None,
    *,
    steps: int = 50,
    method: str = "trapezoid",
    chunk_size: int | None = None,
    tol: float | None = None,
    return_gap: bool = False,
    targets: Any = None,
) -> PyTree | IntegratedGradientsResult:
    """Integrated gradients of a scalar function: ``(x - x̄) ⊙ ∫₀¹ ∇f(x̄ + α(x - x̄)) dα``.

    On the straight path ``γ(α) = x̄ + α(x - x̄)`` the fundamental theorem of calculus
    gives ``f(x) - f(x̄) = Σᵢ (xᵢ - x̄ᵢ) ∫₀¹ ∂ᵢf(γ(α)) dα``, so the attributions split
    the change of the output over the inputs (completeness). The integral is a
    quadrature ``Σₖ wₖ ∇f(γ(αₖ))`` (see :func:`quadrature` for the fixed rules;
    every rule's weights sum to 1, so a linear ``f`` is exact for any ``steps``).
    The gradients at the nodes are computed together with ``jax.vmap``; with
    ``chunk_size`` they are computed ``chunk_size`` at a time in a ``lax.scan``
    (memory of one chunk; the same result up to float rounding).

    ``method="adaptive"`` refines a composite (7, 15) Gauss–Kronrod rule, bisecting
    the panel with the largest error estimate ``Σᵢ |δᵢ (K15 - G7)ᵢ|`` (30 new
    gradient evaluations each time, in one batch), until the completeness gap is at
    most ``tol · max(|f(x) - f(x̄)|, tiny)`` or the next bisection would exceed
    ``steps`` evaluations. It stops refining as soon as the tolerance is met (a
    ``lax.while_loop``: under ``jax.vmap`` the batch runs until its last input is done,
    each input keeping the result of its own stopping point; ``jax.lax.map`` over the
    inputs lets each one stop on its own). The gap checks the *sum* of
    the attributions, so errors of opposite sign in two features can cancel; the
    panel selection uses the per-feature estimate, which cannot.

    ``x`` is one example. For a batch, ``jax.vmap`` over it (inputs and steps then run
    as one batch); under ``jax.jit`` a batch sharded over a ``jax.sharding.Mesh``
    (``NamedSharding`` on its leading axis) is attributed where it lives.

    Args:
      fun: ``fun(x) -> scalar``, e.g. the logit or probability of one class:
        ``lambda x: model.apply(params, x)[label]`` (a vector output is rejected:
        choose the class in ``fun``); with ``targets``, ``fun(x) -> (C,)`` outputs.
      x: the input, an array or any pytree of floating arrays.
      baseline: the reference ``x̄``: the same pytree as ``x`` with leaves of the
        same shapes (or scalars). Defaults to zeros.
      steps: the number of gradient evaluations (>= 1; >= 2 for ``"trapezoid"``);
        for ``"adaptive"`` the budget (>= 15), of which ``15 + 30j`` are used.
      method: ``"left"``, ``"right"``, ``"midpoint"``, ``"trapezoid"``,
        ``"gauss_legendre"`` or ``"adaptive"``.
      chunk_size: if given, evaluate the steps (for ``"adaptive"``: each
        refinement's 15 or 30 nodes) this many at a time.
      tol: the relative completeness tolerance of ``"adaptive"`` (default 1e-4);
        only for that method.
      return_gap: also return the completeness gap, a finiteness flag and the
        evaluations used and a :class:`gradjax.Status` (two more evaluations of
        ``fun``, which ``"adaptive"`` makes anyway).
      targets: (K,) int indices into ``fun``'s output vector: attribute each of these
        outputs in one call. Each node is linearised once (one ``jax.vjp``, all steps
        batched) and its transpose is ``jax.vmap``-ed over the K one-hot cotangents,
        instead of K full passes; ``chunk_size`` then bounds the (step, target) pairs
        evaluated together. Not with ``"adaptive"``.

    Returns:
      The attributions, same pytree, shapes and dtypes as ``x`` (with a leading
      targets axis of size K when ``targets`` is given); with ``return_gap=True`` an
      :class:`IntegratedGradientsResult` (gaps of shape (K,) with ``targets``).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax.attribution import integrated_gradients
      >>> w = jnp.array([1.0, -2.0, 3.0])
      >>> integrated_gradients(lambda x: x @ w, jnp.ones(3), steps=4)
      Array([ 1., -2.,  3.], dtype=float32)
      >>> import jax
      >>> sharp = lambda x: jax.nn.sigmoid(40 * (x @ w - 1))  # a step at α = 1/2
      >>> result = integrated_gradients(sharp, jnp.ones(3), method="adaptive", steps=300,
      ...                               return_gap=True)
      >>> [round(float(a), 3) for a in result.attributions], int(result.evaluations)
      ([0.5, -1.0, 1.5], 45)
      >>> bool(abs(result.completeness_gap) <= 1e-4), bool(result.converged)  # f(x) - f(0) = 1
      (True, True)
      >>> W = jnp.array([[1.0, 0.0, 2.0], [0.0, 3.0, -1.0]])  # two outputs, both at once
      >>> integrated_gradients(lambda x: W @ x, jnp.ones(3), targets=jnp.array([1, 0]), steps=4)
      Array([[ 0.,  3., -1.],
             [ 1.,  0.,  2.]], dtype=float32)

    References:
      Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017
      (arXiv:1703.01365). Piessens, de Doncker-Kapenga, Überhuber & Kahaner,
      "QUADPACK", Springer 1983 (the (7, 15) Gauss–Kronrod pair, globally adaptive
      bisection).
    """
    check_bool("return_gap", return_gap)
    if method == ADAPTIVE:
        if targets is not None:
            raise ValueError("targets applies to the fixed rules, not method='adaptive'")
        tol = DEFAULT_TOL if tol is None else check_scalar("tol", tol, 0.0, strict=True)
        x = input_tree("x", x)
        baseline = as_baseline(baseline, x)
        result = adaptive_integrated_gradients(fun, x, baseline, steps, tol, chunk_size)
        return result if return_gap else result.attributions
    if tol is not None:
        raise ValueError(f"tol applies to method='adaptive' only, got tol with method={method!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {[*METHODS, ADAPTIVE]}, got {method!r}")
    x = input_tree("x", x)
    baseline = as_baseline(baseline, x)
    attributions = path_attributions(
        fun, x, baseline, steps, method, chunk_size, False, targets=targets
    )
    if not return_gap:
        return attributions
    return gap_result(attributions, fun, x, baseline, steps, targets)
