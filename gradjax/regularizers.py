"""Regularisers that make a loss flat around the data: noise, gradient penalties, FGM, VAT.

All four come from one expansion. Averaging the loss over input noise ε with iid
components of variance σ² adds, to second order, a curvature term,

    E l(x + ε) ≈ l(x) + ½σ² Δl(x),

and for a target-free loss l(f(x + ε), f(x)), whose value and first derivative
vanish at ε = 0, that term is ½σ² Σᵢ λᵢ ‖∇ₓfᵢ‖² (λᵢ = 2 for the squared error,
1/fᵢ for the KL divergence): noise is a gradient penalty in disguise.

* :func:`noisy_loss` averages the loss over Gaussian noise (the expectation itself);
* :func:`gradient_penalty` and :func:`jacobian_penalty` add the penalty directly
  (the latter also as the one-gradient random-sign estimator);
* :func:`fgm_perturbation` / :func:`adversarial_loss` move x along the normalised
  loss gradient, which to first order adds ε‖∇ₓl‖ to the loss (FGM);
* :func:`vat_direction` / :func:`vat_loss` move x along the top eigenvector of the
  Hessian of KL(f(x) ‖ f(x + ·)), found by power iteration with finite-difference
  Hessian-vector products; it needs no label (virtual adversarial training).

``x`` is one example (an array, or a pytree of floating arrays); batch with
``jax.vmap`` and average. Passing a whole batch (for instance the embeddings of a
minibatch) as ``x`` is also valid and normalises the perturbation over the whole
batch, as Su's Keras code does over the embedding matrix. Norms of pytrees are global
L2 norms over all leaves.

Text models: perturb the embeddings, not the token ids, and pass ``mask`` (True at
real tokens, False at padding; its shape is a prefix of the embedding's shape, e.g.
(L,) for (L, E) embeddings) so padding is never perturbed and never counts in a norm:

    emb = model.apply(params, ids, method=CharCNN.embed)
    loss_at = lambda e: xent(model.apply(params, e, mask, method=CharCNN.classify), y)
    loss = adversarial_loss(loss_at, emb, epsilon=0.5, mask=mask)

BatchNorm in flax: the perturbed forward pass must not update the running statistics.
Run it with ``mutable=["batch_stats"]`` and drop the returned statistics, keeping only
those of the clean pass (``mutable=False`` would raise, because BatchNorm writes its
running averages in training mode)::

    def loss_at(e):  # perturbed pass: batch statistics used, running averages discarded
        logits, _ = model.apply(variables, e, train=True, mutable=["batch_stats"])
        return xent(logits, y)

References:
  Su Jianlin, "Generalisation: from random noise and gradient penalties to virtual
  adversarial training" (kexue.fm/archives/7466) and "Adversarial training: from
  FGM to gradient penalties" (kexue.fm/archives/7234). Bishop, "Training with noise
  is equivalent to Tikhonov regularization", Neural Computation 1995. Goodfellow,
  Shlens & Szegedy, ICLR 2015; Miyato, Dai & Goodfellow, ICLR 2017 (FGM on
  embeddings); Miyato, Maeda, Koyama & Ishii, TPAMI 2018 (VAT).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradjax._checks import floating_tree

PyTree = Any

__all__ = [
    "adversarial_loss",
    "fgm_perturbation",
    "gradient_penalty",
    "jacobian_penalty",
    "noisy_loss",
    "vat_direction",
    "vat_loss",
]


# ----------------------------------------------------------------------------- checks


def _as_inputs(x: PyTree) -> PyTree:
    return floating_tree("x", x, " (perturb embeddings, not token ids)")


def _check_callable(name: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


def _check_scalar_output(name: str, fn: Callable, x: PyTree) -> None:
    _check_callable(name, fn)
    out = jax.eval_shape(fn, x)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"{name} must return a scalar, got output of shape {shape}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return a floating scalar, got dtype {out.dtype}")


def _check_array_output(name: str, fn: Callable, x: PyTree) -> jax.ShapeDtypeStruct:
    _check_callable(name, fn)
    out = jax.eval_shape(fn, x)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{name} must return one array, got {type(out).__name__}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return floating values, got dtype {out.dtype}")
    return out


def _check_nonnegative(name: str, value: Any) -> None:
    """Rejects negative (or NaN) Python/NumPy numbers; traced values pass unchecked."""
    if isinstance(value, jax.core.Tracer):
        return
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
    if not float(value) >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _check_count(name: str, value: Any, minimum: int) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if count < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {count}")
    return count


def _as_mask(mask: PyTree | None, x: PyTree) -> PyTree | None:
    """Validates ``mask`` and broadcasts each leaf to its x leaf (trailing axes added)."""
    if mask is None:
        return None
    x_leaves, treedef = jax.tree.flatten(x)
    mask_leaves, mask_def = jax.tree.flatten(mask)
    if mask_def != treedef:
        raise ValueError(f"mask must have the structure of x ({treedef}), got {mask_def}")
    out = []
    for m, leaf in zip(mask_leaves, x_leaves, strict=True):
        m = jnp.asarray(m)
        if m.shape != leaf.shape[: m.ndim]:
            raise ValueError(
                f"mask's shape must be a prefix of x's shape {leaf.shape}, got {m.shape}"
            )
        out.append(m.reshape(m.shape + (1,) * (leaf.ndim - m.ndim)))
    return jax.tree.unflatten(treedef, out)


# ----------------------------------------------------------------------------- tree helpers


def _apply_mask(v: PyTree, mask: PyTree | None) -> PyTree:
    if mask is None:
        return v
    return jax.tree.map(lambda a, m: jnp.where(m, a, jnp.zeros_like(a)), v, mask)


def _sum_squares(v: PyTree) -> jax.Array:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(v))


def _normalize(v: PyTree) -> tuple[PyTree, jax.Array]:
    """``(v / ‖v‖, ‖v‖ > 0)``, exact for tiny vectors, zeros (not NaN) for v = 0.

    Dividing by the largest |vᵢ| first keeps ‖v‖² from underflowing, so no additive
    epsilon is needed; the double ``where`` keeps the gradient finite at v = 0.
    """
    scale = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(v)]))
    nonzero = scale > 0
    safe_scale = jnp.where(nonzero, scale, jnp.ones_like(scale))
    scaled = jax.tree.map(lambda a: a / safe_scale.astype(a.dtype), v)
    norm = jnp.sqrt(_sum_squares(scaled))  # >= 1 wherever v != 0
    safe_norm = jnp.where(nonzero, norm, jnp.ones_like(norm))
    unit = jax.tree.map(
        lambda a: jnp.where(nonzero, a / safe_norm.astype(a.dtype), jnp.zeros_like(a)), scaled
    )
    return unit, nonzero


def _axpy(alpha: Any, v: PyTree, x: PyTree) -> PyTree:
    """``x + alpha * v`` leafwise, in x's dtypes."""
    return jax.tree.map(lambda a, b: (b + alpha * a).astype(b.dtype), v, x)


def _normal_like(key: jax.Array, x: PyTree) -> PyTree:
    leaves, treedef = jax.tree.flatten(x)
    keys = jax.random.split(key, len(leaves))
    noise = [
        jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)


# ----------------------------------------------------------------------------- noise


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
      >>> loss = noisy_loss(key, lambda x: xent(model(params, x), y), x, sigma=0.1)
    """
    x = _as_inputs(x)
    _check_scalar_output("loss_fn", loss_fn, x)
    _check_nonnegative("sigma", sigma)
    num_samples = _check_count("num_samples", num_samples, 1)
    mask = _as_mask(mask, x)

    def one(k):
        return loss_fn(_axpy(sigma, _apply_mask(_normal_like(k, x), mask), x))

    return jnp.mean(jax.vmap(one)(jax.random.split(key, num_samples)))


# ----------------------------------------------------------------------------- penalties


def gradient_penalty(fn: Callable[[PyTree], jax.Array], x: PyTree) -> jax.Array:
    """Squared norm of the input gradient, ‖∇ₓ fn(x)‖².

    Added to a loss (with weight ½ε) it is what FGM with the unnormalised step
    ε∇ₓl amounts to to first order; differentiate it w.r.t. parameters as usual
    (double backprop).

    Args:
      fn: ``x -> scalar`` (close over parameters and labels).
      x: one example: a floating array or pytree of them.

    Returns:
      A scalar, the global squared L2 norm of the gradient.

    Example:
      >>> loss = base + 0.5 * gradient_penalty(lambda e: base_loss(params, e), emb)
    """
    x = _as_inputs(x)
    _check_scalar_output("fn", fn, x)
    return _sum_squares(jax.grad(fn)(x))


def jacobian_penalty(
    fn: Callable[[PyTree], jax.Array], x: PyTree, key: jax.Array | None = None
) -> jax.Array:
    """Squared Frobenius norm of the Jacobian, Σᵢ ‖∇ₓ fnᵢ(x)‖², or its random-sign estimate.

    Without ``key`` the full Jacobian is formed (reverse mode when fn has fewer
    outputs than inputs, forward mode otherwise). With ``key`` one vector-Jacobian
    product gives the unbiased estimator ‖Σᵢ ηᵢ ∇ₓfᵢ‖², ηᵢ iid uniform on {−1, +1}:
    E[ηᵢηⱼ] = δᵢⱼ, so its mean is exactly the sum (Su, 7466).

    Args:
      fn: ``x -> array`` of any shape (all entries count as outputs fᵢ).
      x: one example: a floating array or pytree of them.
      key: optional PRNG key selecting the random-sign estimator.

    Returns:
      A scalar.

    Example:
      >>> penalty = jacobian_penalty(lambda x: model.apply(params, x), x)
    """
    x = _as_inputs(x)
    out = _check_array_output("fn", fn, x)
    if key is None:
        num_in = sum(leaf.size for leaf in jax.tree.leaves(x))
        jac = (jax.jacrev if out.size <= num_in else jax.jacfwd)(fn)(x)
        return _sum_squares(jac)
    signs = jax.random.rademacher(key, out.shape, out.dtype)
    return _signed_jacobian_penalty(fn, x, signs)


def _signed_jacobian_penalty(fn: Callable, x: PyTree, signs: jax.Array) -> jax.Array:
    """‖Σᵢ ηᵢ ∇ₓfᵢ(x)‖² for given signs η (one vector-Jacobian product)."""
    _, vjp = jax.vjp(fn, x)
    (grad,) = vjp(signs)
    return _sum_squares(grad)


# ----------------------------------------------------------------------------- FGM


def fgm_perturbation(
    loss_fn: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float,
    mask: PyTree | None = None,
) -> PyTree:
    """The fast-gradient-method perturbation ε·g/‖g‖, g = ∇ₓ loss_fn(x), gradient stopped.

    The norm is the exact global L2 norm (no epsilon added): a zero gradient gives a
    zero perturbation, and nothing is NaN under ``grad``/``jit``. The result is a
    constant for differentiation (``stop_gradient``), so ∇_θ loss(x + Δx) ≈
    ∇_θ [loss + ε‖∇ₓloss‖] to first order in ε.

    Args:
      loss_fn: ``x -> scalar`` (close over parameters and labels).
      x: one example (or a whole batch: one norm over it): floating array or pytree.
      epsilon: the perturbation's norm, >= 0.
      mask: optional bool array (or pytree like x), True where x may be perturbed
        (False at padding); masked entries are zero and excluded from the norm.

    Returns:
      The perturbation, same structure, shapes and dtypes as x, of norm ε (or zero).

    Example:
      >>> delta = fgm_perturbation(lambda e: loss(params, e, y), emb, epsilon=0.5)
    """
    x = _as_inputs(x)
    _check_scalar_output("loss_fn", loss_fn, x)
    _check_nonnegative("epsilon", epsilon)
    mask = _as_mask(mask, x)
    return _fgm(loss_fn, x, epsilon, mask)


def _fgm(loss_fn: Callable, x: PyTree, epsilon: Any, mask: PyTree | None) -> PyTree:
    grad = _apply_mask(jax.grad(loss_fn)(x), mask)
    unit, _ = _normalize(jax.lax.stop_gradient(grad))
    return jax.tree.map(lambda u, a: (epsilon * u).astype(a.dtype), unit, x)


def adversarial_loss(
    loss_fn: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float,
    mask: PyTree | None = None,
) -> jax.Array:
    """The loss at the FGM point, loss_fn(x + ε·g/‖g‖), the perturbation held constant.

    For a loss linear in x this is exactly loss_fn(x) + ε‖∇ₓloss_fn‖ (first-order
    Taylor bound of the worst case in the ε-ball). Train on it alone or add it to
    the clean loss.

    Args:
      loss_fn: ``x -> scalar`` (close over parameters and labels).
      x: one example (or a whole batch): floating array or pytree.
      epsilon: the perturbation's norm, >= 0.
      mask: optional bool array (or pytree like x) as in :func:`fgm_perturbation`.

    Returns:
      A scalar.

    Example:
      >>> loss = adversarial_loss(lambda e: xent(classify(params, e, m), y), emb,
      ...                         epsilon=0.5, mask=m)
    """
    x = _as_inputs(x)
    _check_scalar_output("loss_fn", loss_fn, x)
    _check_nonnegative("epsilon", epsilon)
    mask = _as_mask(mask, x)
    return loss_fn(_axpy(1, _fgm(loss_fn, x, epsilon, mask), x))


# ----------------------------------------------------------------------------- VAT


def _kl_from_logits(target_probs: jax.Array, logits: jax.Array) -> jax.Array:
    """Σ KL(p ‖ softmax(logits)) over the leading axes; classes on the last axis.

    Terms with pᵢ = 0 contribute 0 (and a zero gradient).
    """
    log_q = jax.nn.log_softmax(logits, axis=-1)
    positive = target_probs > 0
    log_p = jnp.log(jnp.where(positive, target_probs, 1))
    return jnp.sum(jnp.where(positive, target_probs * (log_p - log_q), 0))


def _check_vat(logits_fn: Callable, x: PyTree, xi: Any, num_power_iters: Any) -> int:
    out = _check_array_output("logits_fn", logits_fn, x)
    if out.ndim < 1:
        raise ValueError(f"logits_fn must return logits of shape (..., classes), got {out.shape}")
    _check_nonnegative("xi", xi)
    return _check_count("num_power_iters", num_power_iters, 0)


def _power_iteration(key, logits_fn, x, target_probs, xi, num_power_iters, mask):
    def kl_at(v):
        return _kl_from_logits(target_probs, logits_fn(_axpy(xi, v, x)))

    def step(_, u):
        # ∇ᵥ KL at v = ξu is ξ·Hu + O(ξ²): a finite-difference Hessian-vector product.
        hu, nonzero = _normalize(_apply_mask(jax.grad(kl_at)(u), mask))
        return jax.tree.map(lambda new, old: jnp.where(nonzero, new, old), hu, u)

    u, _ = _normalize(_apply_mask(_normal_like(key, x), mask))
    # Unrolled when short (the usual one or two iterations compile faster that way).
    u = jax.lax.fori_loop(0, num_power_iters, step, u, unroll=num_power_iters <= 4)
    return jax.tree.map(jax.lax.stop_gradient, u)


def vat_direction(
    key: jax.Array,
    logits_fn: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    xi: float = 10.0,
    num_power_iters: int = 1,
    mask: PyTree | None = None,
) -> PyTree:
    """Unit direction of steepest increase of KL(f(x) ‖ f(x + d)): VAT's power iteration.

    With p = softmax(logits(x)) held fixed, KL(p ‖ softmax(logits(x + d))) ≈ ½dᵀHd.
    Starting from u ~ N(0, I), each iteration sets u ← Hu/‖Hu‖ with
    Hu ≈ ∇ᵤ KL(p ‖ softmax(logits(x + ξu)))/ξ, so many iterations converge to the
    top eigenvector of H (up to sign); zero iterations return the random direction.
    Normalisations are exact (no additive epsilon, underflow-safe); if an iteration
    yields Hu = 0 the previous direction is kept. Gradient stopped.

    Args:
      key: PRNG key for the starting direction.
      logits_fn: ``x -> logits`` of shape (..., classes); KL is summed over leading axes.
      x: one example (or a whole batch): floating array or pytree.
      xi: finite-difference step ξ >= 0 (10 is Su's value for a whole embedding matrix;
        per example on raw inputs, something small such as 1e-2 is closer to H).
      num_power_iters: power iterations, >= 0.
      mask: optional bool array (or pytree like x), True where x may be perturbed.

    Returns:
      A unit vector (global L2 norm 1, zero where masked), structured like x.

    Example:
      >>> d = vat_direction(key, lambda x: model.apply(params, x), x, xi=1e-2)
    """
    x = _as_inputs(x)
    num_power_iters = _check_vat(logits_fn, x, xi, num_power_iters)
    mask = _as_mask(mask, x)
    target = jax.lax.stop_gradient(jax.nn.softmax(logits_fn(x), axis=-1))
    return _power_iteration(key, logits_fn, x, target, xi, num_power_iters, mask)


def vat_loss(
    key: jax.Array,
    logits_fn: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float = 1.0,
    xi: float = 10.0,
    num_power_iters: int = 1,
    mask: PyTree | None = None,
) -> jax.Array:
    """Virtual adversarial loss KL(stop_grad softmax(logits(x)) ‖ softmax(logits(x + ε·d))).

    d is :func:`vat_direction`. No label is used, so it applies to unlabelled data.
    The clean prediction is a constant, so gradients flow only through the
    perturbed branch (Su's "knock-off" VAT; the difference is second order).

    Args:
      key: PRNG key for the power iteration's starting direction.
      logits_fn: ``x -> logits`` of shape (..., classes); KL is summed over leading axes.
      x: one example (or a whole batch): floating array or pytree.
      epsilon: perturbation norm, >= 0.
      xi: finite-difference step of the power iteration, >= 0.
      num_power_iters: power iterations, >= 0 (0: a random direction of norm ε).
      mask: optional bool array (or pytree like x), True where x may be perturbed.

    Returns:
      A non-negative scalar.

    Example:
      >>> loss = jnp.mean(jax.vmap(lambda k, x: vat_loss(k, f, x, epsilon=1.0))(keys, xs))
    """
    x = _as_inputs(x)
    num_power_iters = _check_vat(logits_fn, x, xi, num_power_iters)
    _check_nonnegative("epsilon", epsilon)
    mask = _as_mask(mask, x)
    target = jax.lax.stop_gradient(jax.nn.softmax(logits_fn(x), axis=-1))
    d = _power_iteration(key, logits_fn, x, target, xi, num_power_iters, mask)
    return _kl_from_logits(target, logits_fn(_axpy(epsilon, d, x)))
