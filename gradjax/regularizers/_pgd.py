"""Projected gradient descent (PGD) on the input, L∞ or L2, and the TRADES robustness term."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax._checks import (
    check_bool,
    check_choice,
    check_int,
    check_key,
    check_scalar,
    check_scalar_fun,
    is_concrete,
)

from ._checks import _as_inputs, _as_mask, _check_array_output
from ._tree import _apply_mask, _axpy, _normalize

PyTree = Any
NORMS = ("linf", "l2")
TRADES_START_SCALE = 1e-3  # δ₀ = 0.001·N(0, I), as in the TRADES reference code


# ----------------------------------------------------------------------------- checks


def _check_bounds(bounds: Any, x: PyTree) -> tuple[jax.Array, jax.Array] | None:
    """``(lo, hi)`` broadcastable to every leaf of x; concrete values: lo ≤ x ≤ hi, no NaN."""
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (lo, hi) or None, got {bounds!r}")
    lo, hi = (jnp.asarray(b) for b in bounds)
    for name, b in (("lo", lo), ("hi", hi)):
        if not (jnp.issubdtype(b.dtype, jnp.floating) or jnp.issubdtype(b.dtype, jnp.integer)):
            raise TypeError(f"bounds' {name} must be real numbers, got dtype {b.dtype}")
        for leaf in jax.tree.leaves(x):
            try:
                fits = jnp.broadcast_shapes(b.shape, leaf.shape) == leaf.shape
            except ValueError:
                fits = False
            if not fits:
                raise ValueError(
                    f"bounds' {name} must broadcast to x's shape {leaf.shape}, got {b.shape}"
                )
        if is_concrete(b) and np.isnan(np.asarray(b)).any():
            raise ValueError(f"bounds' {name} must not be NaN, got {b}")
    if is_concrete(lo) and is_concrete(hi) and np.any(np.asarray(lo) > np.asarray(hi)):
        raise ValueError(f"bounds must have lo <= hi, got lo={lo}, hi={hi}")
    for leaf in jax.tree.leaves(x):
        if is_concrete(leaf) and is_concrete(lo) and is_concrete(hi):
            a, low, high = (np.asarray(v, np.float64) for v in (leaf, lo, hi))
            if not np.all((a >= low) & (a <= high)):
                raise ValueError("x must lie within bounds (lo <= x <= hi) before it is perturbed")
    return lo, hi


def _check_pgd(
    epsilon: Any, num_steps: Any, step_size: Any, norm: Any, bounds: Any, mask: Any, x: PyTree
):
    """Checks the options shared by PGD and TRADES; returns them validated."""
    check_scalar("epsilon", epsilon, low=0.0)
    num_steps = check_int("num_steps", num_steps, 1)
    if step_size is None:
        step_size = 2.5 * epsilon / num_steps
    else:
        check_scalar("step_size", step_size, low=0.0)
    check_choice("norm", norm, NORMS)
    return num_steps, step_size, _check_bounds(bounds, x), _as_mask(mask, x)


# ----------------------------------------------------------------------------- the attack


def _project(delta, x, epsilon, norm, bounds, mask):
    """Onto the ε-ball of ``norm``, then into ``lo − x ≤ δ ≤ hi − x``, padding zeroed.

    Both steps only shrink |δᵢ| (0 is inside the box when x is), so the result stays in
    the ball; for L∞ it is the exact projection onto the ball ∩ the box.
    """
    if norm == "linf":
        delta = jax.tree.map(lambda d: jnp.clip(d, -epsilon, epsilon).astype(d.dtype), delta)
    else:
        wide = jax.tree.map(lambda d: d.astype(jnp.promote_types(d.dtype, jnp.float32)), delta)
        length = optax.tree.norm(wide)
        factor = jnp.minimum(1, epsilon / jnp.where(length == 0, 1, length))  # NaN stays NaN
        delta = jax.tree.map(lambda d: (factor * d).astype(d.dtype), delta)
    if bounds is not None:
        lo, hi = bounds
        delta = jax.tree.map(lambda d, a: jnp.clip(d, lo - a, hi - a).astype(d.dtype), delta, x)
    return _apply_mask(delta, mask)


def _uniform_start(key, x, epsilon, norm, mask):
    """A uniform draw from the ε-ball: U(−ε, ε) per entry (L∞), or uniform in volume (L2)."""
    if norm == "linf":
        uniform = functools.partial(jax.random.uniform, minval=-1, maxval=1)
        return jax.tree.map(lambda u: epsilon * u, optax.tree.random_like(key, x, uniform))
    direction_key, radius_key = jax.random.split(key)
    direction, _ = _normalize(_apply_mask(optax.tree.random_like(direction_key, x), mask))
    ones = _apply_mask(jax.tree.map(jnp.ones_like, x), mask)
    dim = sum(jnp.sum(a.astype(jnp.float32)) for a in jax.tree.leaves(ones))  # unmasked entries
    radius = epsilon * jax.random.uniform(radius_key) ** (1 / jnp.maximum(dim, 1))
    return jax.tree.map(lambda d: (radius * d).astype(d.dtype), direction)


def _pgd(loss_fn, x, delta, epsilon, step_size, num_steps, norm, bounds, mask):
    """``num_steps`` steps of δ ← Π(δ + α·sign g) (L∞) or Π(δ + α·g/‖g‖) (L2) from δ."""
    x = jax.lax.stop_gradient(x)

    def step(_, delta):
        grad = _apply_mask(jax.grad(loss_fn)(_axpy(1, delta, x)), mask)
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
    loss_fn: Callable[[PyTree], jax.Array],
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
    """Projected gradient ascent on ``loss_fn`` inside the ε-ball around x (PGD), gradient stopped.

    From δ₀ (uniform in the ball with ``random_start``, else 0) it repeats, ``num_steps``
    times, with g = ∇ₓ loss_fn(x + δ) and α = ``step_size``,

        L∞: δ ← Π(δ + α·sign(g)),      L2: δ ← Π(δ + α·g/‖g‖₂),

    where Π clips δ into the ball (‖δ‖∞ ≤ ε, or rescales to ‖δ‖₂ ≤ ε) and then into
    ``lo − x ≤ δ ≤ hi − x``, so x + δ stays a valid input. One step from δ₀ = 0 with
    α = ε is FGSM, ε·sign(g) (L∞), or :func:`fgm_perturbation`, ε·g/‖g‖ (L2). The last
    iterate is returned (Madry et al.). A NaN gradient gives a NaN δ, never zero.

    The result is a constant for differentiation (``stop_gradient``): adversarial
    training is ``loss(params, x + δ)`` differentiated as usual; under ``jit`` the
    attack costs the same inside the differentiated loss as outside it. With
    ``norm="linf"``, passing a whole batch as x with a loss summed or averaged over it
    gives each example its own attack (the sign is elementwise); with ``"l2"`` the norm
    is then over the batch.

    Args:
      key: PRNG key for the random start (unused when ``random_start`` is False).
      loss_fn: ``x -> scalar`` to increase (close over parameters and labels; any loss).
      x: one example (or a whole batch): floating array or pytree of them.
      epsilon: the radius ε >= 0 of the ball, finite.
      num_steps: gradient steps, >= 1 (``lax.fori_loop``).
      step_size: α >= 0; default 2.5·ε/num_steps, so the walk can cross the ball.
      norm: ``"linf"`` or ``"l2"`` (global L2 over all leaves and entries).
      random_start: start uniformly in the ball (L∞: U(−ε, ε) per entry; L2: uniform in
        volume) instead of at 0.
      bounds: optional ``(lo, hi)``, scalars or arrays broadcastable to x, the valid input
        range (e.g. ``(0, 1)`` for images); concrete x must already lie inside it.
      mask: optional bool array (or pytree like x), True where x may be perturbed (False at
        padding); masked entries of δ are zero and excluded from norms.

    Returns:
      δ, structured like x (same shapes and dtypes), ‖δ‖ ≤ ε and lo ≤ x + δ ≤ hi.

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
    x = _as_inputs(x)
    check_scalar_fun("loss_fn", loss_fn, x)
    num_steps, step_size, bounds, mask = _check_pgd(
        epsilon, num_steps, step_size, norm, bounds, mask, x
    )
    if check_bool("random_start", random_start):
        check_key("key", key)
        start = _apply_mask(_uniform_start(key, x, epsilon, norm, mask), mask)
    else:
        start = jax.tree.map(jnp.zeros_like, x)
    return _pgd(loss_fn, x, start, epsilon, step_size, num_steps, norm, bounds, mask)


def trades_loss(
    key: jax.Array,
    logits_fn: Callable[[PyTree], jax.Array],
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

    With p = stop_grad(softmax(logits_fn(x))), δ is :func:`pgd_perturbation` on
    KL(p ‖ softmax(logits_fn(x + ·))) from δ₀ = 0.001·N(0, I) (the KL and its gradient
    vanish at δ = 0, hence the small random start, as in the reference code), and the
    result is KL(p ‖ softmax(logits_fn(x + δ))), differentiable through the perturbed
    branch only. Train on ``cross_entropy(logits(x), y) + β · trades_loss(...)``
    (β = 6 in Zhang et al.). No label is used.

    Args:
      key: PRNG key for the start δ₀.
      logits_fn: ``x -> logits`` of shape (..., classes); the KL is summed over leading axes.
      x: one example (or a whole batch): floating array or pytree of them.
      epsilon: the radius ε >= 0 of the ball, finite.
      num_steps: PGD steps on the KL, >= 1.
      step_size: α >= 0; default 2.5·ε/num_steps.
      norm: ``"linf"`` or ``"l2"``.
      bounds: optional ``(lo, hi)`` valid input range, as in :func:`pgd_perturbation`.
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
    x = _as_inputs(x)
    out = _check_array_output("logits_fn", logits_fn, x)
    if out.ndim < 1:
        raise ValueError(f"logits_fn must return logits of shape (..., classes), got {out.shape}")
    num_steps, step_size, bounds, mask = _check_pgd(
        epsilon, num_steps, step_size, norm, bounds, mask, x
    )
    check_key("key", key)
    # Held as log-probabilities, so that KL(p ‖ p) is exactly 0 (log p − log q cancels).
    log_p = jax.lax.stop_gradient(jax.nn.log_softmax(logits_fn(x), axis=-1))

    def kl_at(z):
        return jnp.sum(jnp.exp(log_p) * (log_p - jax.nn.log_softmax(logits_fn(z), axis=-1)))

    start = jax.tree.map(lambda n: TRADES_START_SCALE * n, optax.tree.random_like(key, x))
    start = _apply_mask(start, mask)
    delta = _pgd(kl_at, x, start, epsilon, step_size, num_steps, norm, bounds, mask)
    return kl_at(_axpy(1, delta, x))
