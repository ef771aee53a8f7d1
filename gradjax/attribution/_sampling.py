"""Sampled gradient attributions: SmoothGrad and expected gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradjax._checks import (
    check_bool,
    check_finite_tree,
    check_int,
    check_key,
    check_scalar,
    floating_tree,
)

from ._args import check_chunk_size, check_scalar_output, input_tree
from ._chunks import chunked_sum
from ._targets import check_targets, map_over_targets, pullbacks, split_chunk, summed_pullbacks

PyTree = Any


def smooth_grad(
    key: jax.Array,
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    stdev: float,
    num_samples: int = 25,
    squared: bool = False,
    chunk_size: int | None = None,
    targets: Any = None,
) -> PyTree:
    """SmoothGrad: the gradient averaged over Gaussian perturbations of the input.

    .. math::
      \\mathrm{SG}(x) = \\frac1n \\sum_{k=1}^n \\nabla f(x + \\varepsilon_k),
      \\qquad \\varepsilon_k \\sim \\mathcal N(0, \\sigma^2 I),

    and with ``squared=True`` (SmoothGrad-Squared) ``(1/n) Σₖ (∇f(x + εₖ))²``
    elementwise. ``σ`` is ``stdev`` and ``n`` is ``num_samples``. The noise is drawn
    first, for leaf ``l`` of ``x`` (in ``jax.tree.leaves`` order) as
    ``stdev * jax.random.normal(jax.random.split(key, num_leaves)[l], (n, *shape), dtype)``,
    and the samples' gradients are then evaluated together with ``jax.vmap``, or
    ``chunk_size`` at a time: ``chunk_size`` never changes the result for a given key
    (up to float rounding). The plain mean is one reverse pass over the summed
    outputs; the squared mean needs the per-sample gradients. For a linear ``f`` the
    plain mean is the weight vector exactly, whatever the noise. The paper's default
    ``stdev`` is 0.15·(max − min) of the input.

    Args:
      key: a PRNG key (``jax.random.key(seed)``).
      fun: ``fun(x) -> scalar``, e.g. ``lambda x: model.apply(params, x)[label]``;
        with ``targets``, ``fun(x) -> (C,)`` outputs.
      x: the input, an array or any pytree of floating arrays.
      stdev: the noise standard deviation σ >= 0, a scalar.
      num_samples: the number of noisy samples n >= 1.
      squared: average the squared gradients (SmoothGrad-Squared).
      chunk_size: if given, evaluate the samples this many at a time (with
        ``targets``: this many (sample, target) pairs).
      targets: (K,) int indices into ``fun``'s output vector, each attributed with
        the same noise: one linearisation per sample, ``jax.vmap``-ed over the K
        one-hot cotangents.

    Returns:
      The averaged gradient, the same pytree, shapes and dtypes as ``x`` (a leading
      targets axis of size K with ``targets``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax.attribution import smooth_grad
      >>> w = jnp.array([1.0, -2.0, 3.0])
      >>> smooth_grad(jax.random.key(0), lambda x: x @ w, jnp.ones(3), stdev=0.5)
      Array([ 1., -2.,  3.], dtype=float32)

    References:
      Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by
      adding noise", 2017 (arXiv:1706.03825).
    """
    key = check_key("key", key)
    x = input_tree("x", x)
    stdev = check_scalar("stdev", stdev, 0.0)
    n = check_int("num_samples", num_samples, 1)
    check_bool("squared", squared)
    chunk_size = check_chunk_size(chunk_size)
    if targets is None:
        check_scalar_output("fun", fun, x)
    else:
        targets = check_targets("fun", fun, targets, x)
    leaves, treedef = jax.tree.flatten(x)
    keys = jax.random.split(key, len(leaves))
    noise = treedef.unflatten(
        [
            jnp.asarray(stdev, leaf.dtype) * jax.random.normal(k, (n, *leaf.shape), leaf.dtype)
            for k, leaf in zip(keys, leaves, strict=True)
        ]
    )
    zeros = jax.tree.map(jnp.zeros_like, x)

    def summed(eps, u):  # ∇ᵤ Σₖ f(x + εₖ + u) = Σₖ ∇f(x + εₖ): one reverse pass
        return jnp.sum(jax.vmap(fun)(jax.tree.map(lambda e, xi, ui: xi + e + ui, eps, x, u)), 0)

    if squared:
        rows_per_chunk = chunk_size
        if targets is not None:
            rows_per_chunk, targets_per_chunk = split_chunk(chunk_size, targets.indices.shape[0])

        def chunk_sum(eps, indices=None):  # Σₖ (∇f(x + εₖ))², per target with indices
            points = jax.tree.map(jnp.add, x, eps)
            if indices is None:
                grads = jax.vmap(jax.grad(fun))(points)
            else:
                cotangents = jax.nn.one_hot(indices, targets.num_outputs, dtype=targets.dtype)
                grads = jax.vmap(lambda p: pullbacks(fun, p, cotangents))(points)
            return jax.tree.map(lambda g: jnp.sum(jnp.square(g), axis=0), grads)

        if targets is None:
            total = chunked_sum(chunk_sum, noise, rows_per_chunk)
        else:
            total = map_over_targets(
                lambda idx: chunked_sum(lambda e: chunk_sum(e, idx), noise, rows_per_chunk),
                targets.indices,
                targets_per_chunk,
            )
    elif targets is None:
        total = chunked_sum(
            lambda eps: jax.grad(lambda u: summed(eps, u))(zeros), noise, chunk_size
        )
    else:
        total = summed_pullbacks(summed, zeros, noise, targets, chunk_size)
    return jax.tree.map(lambda t: t / n, total)


def _as_baselines(baselines: PyTree, x: PyTree) -> tuple[PyTree, int]:
    """x's structure with every leaf of shape ``(B, *x_leaf.shape)``, one B for all."""
    if baselines is None:
        raise ValueError("baselines must be given: a pytree like x stacked on a leading axis")
    x_def, b_def = jax.tree.structure(x), jax.tree.structure(baselines)
    if x_def != b_def:
        raise ValueError(f"baselines must have the pytree structure of x {x_def}, got {b_def}")
    baselines = floating_tree("baselines", baselines)
    sizes = set()
    for b, xi in zip(jax.tree.leaves(baselines), jax.tree.leaves(x), strict=True):
        if b.ndim != xi.ndim + 1 or b.shape[1:] != xi.shape or b.shape[0] < 1:
            raise ValueError(
                f"baselines must have shape (B, *{xi.shape}) (baselines stacked on a leading "
                f"axis), got {b.shape}"
            )
        sizes.add(b.shape[0])
    if len(sizes) != 1:
        raise ValueError(f"baselines must share one leading size B, got sizes {sorted(sizes)}")
    check_finite_tree("baselines", baselines)
    baselines = jax.tree.map(lambda b, xi: b.astype(xi.dtype), baselines, x)
    return baselines, sizes.pop()


def expected_gradients(
    key: jax.Array,
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    baselines: PyTree,
    *,
    num_samples: int = 64,
    chunk_size: int | None = None,
    targets: Any = None,
) -> PyTree:
    """Expected gradients: integrated gradients averaged over baselines and path points.

    .. math::
      \\mathrm{EG}(x) = \\frac1n \\sum_{k=1}^n (x - b_k) \\odot
      \\nabla f\\big(b_k + \\alpha_k (x - b_k)\\big),
      \\qquad b_k \\sim \\text{baselines},\\ \\alpha_k \\sim U(0, 1),

    an unbiased estimate of the integrated gradients averaged over the baselines
    (``E[Σᵢ EGᵢ] = f(x) − E_b f(b)``). One ``(b, α)`` draw per sample, drawn first:
    with ``k_b, k_α = jax.random.split(key)``, the baseline rows
    ``jax.random.randint(k_b, (n,), 0, B)`` and ``α = jax.random.uniform(k_α, (n,),
    dtype)``; then the samples are evaluated together with ``jax.vmap`` (one reverse
    pass), or ``chunk_size`` at a time with the same result. This is Captum's
    ``GradientShap`` with ``stdevs=0``. For a linear ``f`` it is ``w ⊙ (x − b̂)``, with
    ``b̂`` the mean of the drawn baselines.

    Args:
      key: a PRNG key (``jax.random.key(seed)``).
      fun: ``fun(x) -> scalar``; with ``targets``, ``fun(x) -> (C,)`` outputs.
      x: the input, an array or any pytree of floating arrays.
      baselines: ``B`` reference inputs stacked on a leading axis: x's pytree with
        leaves of shape ``(B, *leaf.shape)``, e.g. a sample of the training data.
      num_samples: the number of ``(b, α)`` draws n >= 1.
      chunk_size: if given, evaluate the samples this many at a time (with
        ``targets``: this many (sample, target) pairs).
      targets: (K,) int indices into ``fun``'s output vector, each attributed with
        the same draws: one linearisation per draw, ``jax.vmap``-ed over the K
        one-hot cotangents.

    Returns:
      The attributions, the same pytree, shapes and dtypes as ``x`` (a leading
      targets axis of size K with ``targets``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax.attribution import expected_gradients
      >>> w = jnp.array([1.0, -2.0])
      >>> baselines = jnp.array([[0.0, 0.0], [1.0, 1.0]])
      >>> eg = expected_gradients(jax.random.key(0), lambda x: x @ w, jnp.ones(2), baselines,
      ...                         num_samples=4)
      >>> eg.shape
      (2,)

    References:
      Erion, Janizek, Sturmfels, Lundberg & Lee, "Improving performance of deep
      learning models with axiomatic attribution priors and expected gradients",
      Nature Machine Intelligence 3, 2021 (arXiv:1906.10670). Lundberg & Lee, "A
      unified approach to interpreting model predictions", NeurIPS 2017 (GradientSHAP).
    """
    key = check_key("key", key)
    x = input_tree("x", x)
    baselines, size = _as_baselines(baselines, x)
    n = check_int("num_samples", num_samples, 1)
    chunk_size = check_chunk_size(chunk_size)
    if targets is None:
        check_scalar_output("fun", fun, x)
    else:
        targets = check_targets("fun", fun, targets, x)
    k_rows, k_alpha = jax.random.split(key)
    dtype = jnp.result_type(*jax.tree.leaves(x))
    rows = jax.random.randint(k_rows, (n,), 0, size)
    alphas = jax.random.uniform(k_alpha, (n,), dtype)
    zeros = jax.tree.map(jnp.zeros_like, x)

    def summed(draws, u):  # ∇ᵤ Σₖ f(bₖ + αₖdₖ + dₖ ⊙ u) = Σₖ dₖ ⊙ ∇f(bₖ + αₖdₖ)
        r, a = draws
        b = jax.tree.map(lambda bl: bl[r], baselines)
        d = jax.tree.map(lambda xi, bi: xi - bi, x, b)

        def point(bi, di, ui):
            ak = a.astype(di.dtype).reshape((-1,) + (1,) * (di.ndim - 1))
            return bi + ak * di + di * ui

        return jnp.sum(jax.vmap(fun)(jax.tree.map(point, b, d, u)), 0)

    if targets is None:
        total = chunked_sum(
            lambda draws: jax.grad(lambda u: summed(draws, u))(zeros), (rows, alphas), chunk_size
        )
    else:
        total = summed_pullbacks(summed, zeros, (rows, alphas), targets, chunk_size)
    return jax.tree.map(lambda t: t / n, total)
