"""Projected gradient descent (PGD) on the input, L∞ or L2, and the TRADES robustness term."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import (
    _dtype_of,
    as_mask,
    check_bool,
    check_choice,
    check_int,
    check_key,
    check_scalar,
    check_scalar_fun,
    concrete_any,
    floating_inputs,
    is_concrete,
    is_real_dtype,
    nan_outside,
)

from ._tree import _apply_mask, _axpy, _normalize
from ._vat import check_logits_fun

PyTree = Any
NORMS = ("linf", "l2")
TRADES_START_SCALE = 1e-3  # δ₀ = 0.001·N(0, I), as in the TRADES reference code


# ----------------------------------------------------------------------------- checks


def _check_bounds(bounds: Any, x: PyTree) -> tuple[jax.Array, jax.Array] | None:
    """``(lower, upper)`` broadcastable to every leaf of x, as arrays.

    Python and NumPy numbers and concrete arrays are checked now, also inside a caller's
    ``jit`` (they are converted at compile time, so they stay concrete): no NaN,
    lower <= upper, and a concrete x inside them. Traced bounds cannot raise: where they
    cross, lower becomes NaN, so δ is NaN there.
    """
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (lower, upper) or None, got {bounds!r}")
    out = []
    for name, b in zip(("lower", "upper"), bounds, strict=True):
        dtype = _dtype_of(b)
        if dtype is None or not is_real_dtype(dtype):
            got = f"dtype {dtype}" if dtype is not None else type(b).__name__
            raise TypeError(
                f"bounds' {name} must be a real number or array (int or float), got {got}"
            )
        with jax.ensure_compile_time_eval():  # a Python float stays concrete under jit
            b = jnp.asarray(b)
        for leaf in jax.tree.leaves(x):
            try:
                fits = jnp.broadcast_shapes(b.shape, leaf.shape) == leaf.shape
            except ValueError:
                fits = False
            if not fits:
                raise ValueError(
                    f"bounds' {name} must broadcast to x's shape {leaf.shape}, got {b.shape}"
                )
        if concrete_any(b, jnp.isnan):
            raise ValueError(f"bounds' {name} must not be NaN, got {b}")
        out.append(b)
    lower, upper = out
    if not (is_concrete(lower) and is_concrete(upper)):
        # Traced, unchecked: crossed bounds make δ NaN instead of a finite clip to one side.
        return jnp.where(lower <= upper, lower, jnp.nan), upper
    with jax.ensure_compile_time_eval():
        crossed = bool(jnp.any(lower > upper))
    if crossed:
        raise ValueError(f"bounds must have lower <= upper, got lower={lower}, upper={upper}")
    for leaf in jax.tree.leaves(x):
        if concrete_any(leaf, lambda a: (a < lower) | (a > upper)):
            raise ValueError(
                "x must lie within bounds (lower <= x <= upper) before it is perturbed"
            )
    return lower, upper


def _check_pgd(
    epsilon: Any, num_steps: Any, step_size: Any, norm: Any, bounds: Any, mask: Any, x: PyTree
):
    """Checks the options shared by PGD and TRADES; returns them validated.

    A traced negative epsilon or step_size becomes NaN (so δ is NaN, never a finite
    step of the wrong sign); concrete ones are errors.
    """
    epsilon = nan_outside(check_scalar("epsilon", epsilon, low=0.0), 0.0)
    num_steps = check_int("num_steps", num_steps, 1)
    if step_size is None:
        step_size = 2.5 * epsilon / num_steps
    else:
        step_size = nan_outside(check_scalar("step_size", step_size, low=0.0), 0.0)
    check_choice("norm", norm, NORMS)
    return epsilon, num_steps, step_size, _check_bounds(bounds, x), as_mask("mask", mask, x)


# ----------------------------------------------------------------------------- the attack


def _project(delta, x, epsilon, norm, bounds, mask):
    """Into ``lower − x ≤ δ ≤ upper − x``, then onto the ε-ball of ``norm``, padding zeroed.

    The ball comes last, so ‖δ‖ ≤ ε whatever x is (a traced x outside the bounds
    included). When x is inside the box, the ball step keeps x + δ in it (it shrinks δ
    towards 0, and the box is convex), and for L∞ the two clips are the exact projection
    onto ball ∩ box.
    """
    if bounds is not None:
        lower, upper = bounds
        delta = jax.tree.map(
            lambda d, a: jnp.clip(d, lower - a, upper - a).astype(d.dtype), delta, x
        )
    if norm == "linf":
        delta = jax.tree.map(lambda d: jnp.clip(d, -epsilon, epsilon).astype(d.dtype), delta)
    else:
        # The norm of bf16/f16 leaves in float32, float64 kept (optax.tree.cast takes one dtype).
        wide = jax.tree.map(lambda d: d.astype(jnp.promote_types(d.dtype, jnp.float32)), delta)
        length = optax.tree.norm(wide)
        factor = jnp.minimum(1, epsilon / jnp.where(length == 0, 1, length))  # NaN stays NaN
        delta = optax.tree.cast_like(optax.tree.scale(factor, delta), delta)
    return _apply_mask(delta, mask)


def _uniform_start(key, x, epsilon, norm, mask):
    """A uniform draw from the ε-ball: U(−ε, ε) per entry (L∞), or uniform in volume (L2)."""
    if norm == "linf":
        uniform = functools.partial(jax.random.uniform, minval=-1, maxval=1)
        return optax.tree.scale(epsilon, optax.tree.random_like(key, x, uniform))
    direction_key, radius_key = jax.random.split(key)
    direction, _ = _normalize(_apply_mask(optax.tree.random_like(direction_key, x), mask))
    ones = _apply_mask(optax.tree.ones_like(x, jnp.float32), mask)
    dim = optax.tree.sum(ones)  # the unmasked entries
    radius = epsilon * jax.random.uniform(radius_key) ** (1 / jnp.maximum(dim, 1))
    return optax.tree.cast_like(optax.tree.scale(radius, direction), direction)


def _pgd(fun, x, delta, epsilon, step_size, num_steps, norm, bounds, mask):
    """``num_steps`` steps of δ ← Π(δ + α·sign g) (L∞) or Π(δ + α·g/‖g‖) (L2) from δ."""
    x = jax.lax.stop_gradient(x)

    def step(_, delta):
        grad = _apply_mask(jax.grad(fun)(_axpy(1, delta, x)), mask)
        if norm == "linf":
            direction = jax.tree.map(jnp.sign, grad)
        else:
            direction, _ = _normalize(grad)
        return _project(_axpy(step_size, direction, delta), x, epsilon, norm, bounds, mask)

    delta = _project(jax.lax.stop_gradient(delta), x, epsilon, norm, bounds, mask)
    delta = jax.lax.fori_loop(0, num_steps, step, delta)
    return jax.tree.map(jax.lax.stop_gradient, delta)


def pgd_perturbation(
    key: jax.Array,
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float,
    num_steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    bounds: tuple[Any, Any] | None = None,
    mask: PyTree | None = None,
) -> PyTree:
    """Projected gradient ascent on ``fun`` inside the ε-ball around x (PGD), gradient stopped.

    From δ₀ (uniform in the ball with ``random_start``, else 0) it repeats, ``num_steps``
    times, with g = ∇ₓ fun(x + δ) and α = ``step_size``,

        L∞: δ ← Π(δ + α·sign(g)),      L2: δ ← Π(δ + α·g/‖g‖₂),

    where Π clips δ into ``lower − x ≤ δ ≤ upper − x``, so x + δ stays a valid input, and
    then into the ball (‖δ‖∞ ≤ ε, or rescales to ‖δ‖₂ ≤ ε), so ‖δ‖ ≤ ε whatever x is. One
    step from δ₀ = 0 with α = ε is FGSM, ε·sign(g) (L∞), or :func:`fgm_perturbation`,
    ε·g/‖g‖ (L2). The last iterate is returned (Madry et al.). A NaN gradient gives a NaN
    δ, never zero.

    The result is a constant for differentiation (``stop_gradient``): adversarial
    training is ``loss(params, x + δ)`` differentiated as usual; under ``jit`` the
    attack costs the same inside the differentiated loss as outside it. With
    ``norm="linf"``, passing a whole batch as x with a loss summed or averaged over it
    gives each example its own attack (the sign is elementwise); with ``"l2"`` the norm
    is then over the batch.

    Args:
      key: PRNG key for the random start (unused when ``random_start`` is False).
      fun: ``x -> scalar``, the loss to increase (close over parameters and labels).
      x: one example (or a whole batch): floating array or pytree of them.
      epsilon: the radius ε >= 0 of the ball, finite. A traced negative ε (which cannot
        raise) gives a NaN δ, as a NaN ε does: never a finite step of the wrong sign.
      num_steps: gradient steps, >= 1 (``lax.fori_loop``).
      step_size: α >= 0 (traced negative: NaN δ); default 2.5·ε/num_steps, so the walk
        can cross the ball.
      norm: ``"linf"`` or ``"l2"`` (global L2 over all leaves and entries).
      random_start: start uniformly in the ball (L∞: U(−ε, ε) per entry; L2: uniform in
        volume) instead of at 0.
      bounds: optional ``(lower, upper)``, scalars or arrays broadcastable to x, the valid
        input range (e.g. ``(0, 1)`` for images). Concrete bounds (Python floats included,
        also under ``jit``) must not be NaN and must have lower <= upper, and a concrete x
        (passed eagerly or closed over) must already lie inside them; traced bounds with
        lower > upper give a NaN δ. A traced x outside
        them still gets ‖δ‖ ≤ ε; x + δ is then moved towards the box but may stay outside.
      mask: optional bool array (or pytree like x), True where x may be perturbed (False at
        padding); masked entries of δ are zero and excluded from norms.

    Returns:
      δ, structured like x (same shapes and dtypes), ‖δ‖ ≤ ε and, for x inside the
      bounds, lower ≤ x + δ ≤ upper.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> w = jnp.array([1.0, -2.0, 0.5])
      >>> delta = regularizers.pgd_perturbation(
      ...     jax.random.key(0), lambda x: w @ x, jnp.zeros(3), epsilon=0.1, num_steps=5)
      >>> delta  # the L∞ optimum of a linear loss, ε·sign(w)
      Array([ 0.1, -0.1,  0.1], dtype=float32)

    References:
      Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards deep learning models resistant
      to adversarial attacks", ICLR 2018. Goodfellow, Shlens & Szegedy, "Explaining and
      harnessing adversarial examples", ICLR 2015 (FGSM).
    """
    x = floating_inputs("x", x, " (perturb embeddings, not token ids)")
    check_scalar_fun("fun", fun, x)
    epsilon, num_steps, step_size, bounds, mask = _check_pgd(
        epsilon, num_steps, step_size, norm, bounds, mask, x
    )
    if check_bool("random_start", random_start):
        check_key("key", key)
        start = _apply_mask(_uniform_start(key, x, epsilon, norm, mask), mask)
    else:
        start = optax.tree.zeros_like(x)
    return _pgd(fun, x, start, epsilon, step_size, num_steps, norm, bounds, mask)


def trades_loss(
    key: jax.Array,
    fun: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    epsilon: float,
    num_steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    bounds: tuple[Any, Any] | None = None,
    mask: PyTree | None = None,
) -> jax.Array:
    """TRADES' robustness term max_{‖δ‖≤ε} KL(softmax(logits(x)) ‖ softmax(logits(x + δ))).

    With p = stop_grad(softmax(fun(x))), δ is :func:`pgd_perturbation` on
    KL(p ‖ softmax(fun(x + ·))) from δ₀ = 0.001·N(0, I) (the KL and its gradient
    vanish at δ = 0, hence the small random start, as in the reference code), and the
    result is KL(p ‖ softmax(fun(x + δ))), differentiable through the perturbed
    branch only. Train on ``cross_entropy(logits(x), y) + β · trades_loss(...)``
    (β = 6 in Zhang et al.). No label is used.

    Args:
      key: PRNG key for the start δ₀.
      fun: ``x -> logits`` of shape (..., classes); the KL is summed over leading axes.
      x: one example (or a whole batch): floating array or pytree of them.
      epsilon: the radius ε >= 0 of the ball, finite (traced negative: NaN).
      num_steps: PGD steps on the KL, >= 1.
      step_size: α >= 0; default 2.5·ε/num_steps.
      norm: ``"linf"`` or ``"l2"``.
      bounds: optional ``(lower, upper)`` valid input range, as in :func:`pgd_perturbation`.
      mask: optional bool array (or pytree like x), True where x may be perturbed.

    Returns:
      A non-negative scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax import regularizers
      >>> w = jnp.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]])
      >>> loss = regularizers.trades_loss(
      ...     jax.random.key(0), lambda x: w @ x, jnp.array([0.2, 0.4]), epsilon=0.1)
      >>> bool(loss > 0)
      True

    References:
      Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, "Theoretically principled trade-off
      between robustness and accuracy", ICML 2019.
    """
    x = floating_inputs("x", x, " (perturb embeddings, not token ids)")
    check_logits_fun(fun, x)
    epsilon, num_steps, step_size, bounds, mask = _check_pgd(
        epsilon, num_steps, step_size, norm, bounds, mask, x
    )
    check_key("key", key)
    # Held as log-probabilities, so that KL(p ‖ p) is exactly 0 (log p − log q cancels).
    log_p = jax.lax.stop_gradient(jax.nn.log_softmax(fun(x), axis=-1))

    def kl_at(z):
        log_q = jax.nn.log_softmax(fun(z), axis=-1)
        return jnp.sum(optax.losses.kl_divergence_with_log_targets(log_q, log_p, axis=-1))

    start = optax.tree.scale(TRADES_START_SCALE, optax.tree.random_like(key, x))
    start = _apply_mask(start, mask)
    delta = _pgd(kl_at, x, start, epsilon, step_size, num_steps, norm, bounds, mask)
    return kl_at(_axpy(1, delta, x))
