"""GAN losses (GAN-QP, hinge) and one-loss GAN training with ``stop_gradient``.

Every loss here maps critic scores (and, for GAN-QP, the paired samples) to a pair
``(d_loss, g_loss)``; both players minimise their own entry, and the critic scores
real samples high. ``single_loss`` folds such a pair into one scalar whose single
gradient is exactly (∇_D d_loss, g_weight·∇_G g_loss), so one backward pass and one
optimiser step train both players.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradjax._checks import (
    check_callable,
    check_choice,
    check_finite_tree,
    check_scalar,
    nan_outside,
    real_array,
)

__all__ = ["hinge_losses", "qp_losses", "single_loss"]

_DISTANCES = ("l1", "l2")


def _loss_dtype(*arrays: jax.Array) -> Any:
    """The losses' dtype: the inputs' common dtype, float32 for lower precision or ints."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _check_scores(t_real: Any, t_fake: Any) -> tuple[jax.Array, jax.Array]:
    """Two real critic score arrays of shape (B,) or (B, 1), returned flattened to (B,)."""
    t_real, t_fake = real_array("t_real", t_real), real_array("t_fake", t_fake)
    for name, t in (("t_real", t_real), ("t_fake", t_fake)):
        if not (t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1)):
            raise ValueError(f"{name} must have shape (B,) or (B, 1), got {t.shape}")
    if t_real.shape != t_fake.shape:
        raise ValueError(
            f"t_real and t_fake must have the same shape, got {t_real.shape} and {t_fake.shape}"
        )
    if t_real.shape[0] == 0:
        raise ValueError(f"t_real must hold at least one score, got shape {t_real.shape}")
    check_finite_tree("t_real", t_real)
    check_finite_tree("t_fake", t_fake)
    return jnp.ravel(t_real), jnp.ravel(t_fake)


def qp_losses(
    t_real: jax.Array,
    t_fake: jax.Array,
    x_real: jax.Array,
    x_fake: jax.Array,
    *,
    lam: float = 10.0,
    distance: str = "l1",
) -> tuple[jax.Array, jax.Array]:
    """GAN-QP losses for a unary critic ``T`` on paired real and generated samples.

    With Δᵢ = T(x_realᵢ) − T(x_fakeᵢ) and dᵢ = d(x_realᵢ, x_fakeᵢ) a per-pair distance
    averaged over every non-batch axis (``"l1"``: mean|x_r − x_f|, ``"l2"``:
    sqrt(mean (x_r − x_f)²)),

        d_loss = mean(−Δ + Δ² / (2λd)),        g_loss = mean(Δ).

    The critic maximises the quadratic-potential divergence: for two point masses
    its optimum is Δ* = λd with d_loss = −λd/2, and in general
    Δ*/(λd) = (p(x_r)q(x_f) − p(x_f)q(x_r)) / (p(x_r)q(x_f) + p(x_f)q(x_r)) ∈ [−1, 1],
    an adaptive Lipschitz constraint that needs no weight clipping, spectral norm or
    gradient penalty. The quadratic term is deliberately absent from ``g_loss``: its
    denominator would make the generator minimise a pixel distance. The distance is
    a mean, not a sum, so λ does not depend on the resolution; it is floored at the
    dtype's machine epsilon so that an identical pair gives a finite loss (and a
    finite gradient for ``"l2"``) whose optimum Δ* = 0 is the right limit.

    Args:
      t_real: critic scores of the real samples, shape (B,) or (B, 1).
      t_fake: critic scores of the generated samples, same shape as ``t_real``.
      x_real: real samples, shape (B, ...); pair i is (x_real[i], x_fake[i]).
      x_fake: generated samples, same shape as ``x_real``.
      lam: λ > 0, finite, the scale of the quadratic potential (10 in the paper; the
        method is insensitive to it since it only rescales the critic). A Python, NumPy
        or JAX scalar; a traced one cannot raise, so a traced λ <= 0 gives NaN losses.
      distance: ``"l1"`` or ``"l2"``.

    Returns:
      ``(d_loss, g_loss)``, two scalars of one dtype: the inputs' common dtype, or
      float32 when that is narrower (bf16/float16 inputs, integer images), so both
      losses are formed and returned in float32 or wider. A NaN or Inf in concrete
      inputs is a ``ValueError``; in traced ones it gives NaN losses.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import gan
      >>> x_real, x_fake = jnp.array([[1.0, 3.0]]), jnp.zeros((1, 2))  # L1 distance d = 2
      >>> gan.qp_losses(jnp.array([3.0]), jnp.array([1.0]), x_real, x_fake)  # Δ = 2
      (Array(-1.9, dtype=float32), Array(2., dtype=float32))

    References:
      Su, "GAN-QP: A Novel GAN Framework without Gradient Vanishing and Lipschitz
      Constraint", arXiv:1811.07296 (2018); https://kexue.fm/archives/6163.
    """
    t_real, t_fake = _check_scores(t_real, t_fake)
    batch = t_real.shape[0]
    x_real, x_fake = real_array("x_real", x_real), real_array("x_fake", x_fake)
    real_shape, fake_shape = x_real.shape, x_fake.shape
    if real_shape != fake_shape:
        raise ValueError(
            f"x_real and x_fake must have the same shape, got {real_shape} and {fake_shape}"
        )
    if len(real_shape) == 0 or real_shape[0] != batch:
        raise ValueError(
            f"x_real must have the scores' batch size {batch} on its leading axis, "
            f"got shape {real_shape}"
        )
    if x_real.size == 0:
        raise ValueError(f"x_real must have at least one entry per pair, got shape {real_shape}")
    check_finite_tree("x_real", x_real)
    check_finite_tree("x_fake", x_fake)
    check_choice("distance", distance, _DISTANCES)
    lam = nan_outside(check_scalar("lam", lam, low=0.0, strict=True), 0.0, strict=True)

    dtype = _loss_dtype(t_real, t_fake, x_real, x_fake)
    delta = t_real.astype(dtype) - t_fake.astype(dtype)
    diff = jnp.reshape(x_real.astype(dtype) - x_fake.astype(dtype), (batch, -1))
    floor = jnp.finfo(dtype).eps
    if distance == "l1":
        dist = jnp.maximum(jnp.mean(jnp.abs(diff), axis=1), floor)
    else:
        dist = jnp.sqrt(jnp.maximum(jnp.mean(jnp.square(diff), axis=1), floor**2))
    d_loss = jnp.mean(-delta + jnp.square(delta) / (2 * jnp.asarray(lam, dtype) * dist))
    g_loss = jnp.mean(delta)
    return d_loss, g_loss


def hinge_losses(
    t_real: jax.Array,
    t_fake: jax.Array,
    x_real: jax.Array | None = None,
    x_fake: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Hinge GAN losses, real samples scored high.

        d_loss = mean(relu(1 − T(x_real))) + mean(relu(1 + T(x_fake))),
        g_loss = −mean(T(x_fake)).

    The samples are accepted and unused, so every loss in this module has the same
    signature and plugs into ``single_loss`` alike.

    Args:
      t_real: critic scores of the real samples, shape (B,) or (B, 1).
      t_fake: critic scores of the generated samples, same shape as ``t_real``.
      x_real: unused.
      x_fake: unused.

    Returns:
      ``(d_loss, g_loss)``, two scalars of one dtype, float32 or wider as in
      ``qp_losses``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import gan
      >>> gan.hinge_losses(jnp.array([2.0, 0.5]), jnp.array([-3.0, 0.0]))
      (Array(0.75, dtype=float32), Array(1.5, dtype=float32))

    References:
      Lim & Ye, "Geometric GAN", arXiv:1705.02894 (2017);
      https://kexue.fm/archives/6387 (with the opposite sign convention).
    """
    del x_real, x_fake
    t_real, t_fake = _check_scores(t_real, t_fake)
    dtype = _loss_dtype(t_real, t_fake)
    t_real, t_fake = t_real.astype(dtype), t_fake.astype(dtype)
    d_loss = jnp.mean(jax.nn.relu(1 - t_real)) + jnp.mean(jax.nn.relu(1 + t_fake))
    g_loss = -jnp.mean(t_fake)
    return d_loss, g_loss


def single_loss(
    losses: Callable[..., tuple[jax.Array, jax.Array]],
    generator: Callable[[Any, jax.Array], jax.Array],
    discriminator: Callable[[Any, jax.Array], jax.Array],
    *,
    g_weight: float = 1.0,
) -> Callable[[dict, jax.Array, jax.Array], tuple[jax.Array, dict]]:
    """One scalar loss whose gradient trains both GAN players at once.

    With x_f = G(z), a bar for ``stop_gradient`` and L_D, L_G the two entries of
    ``losses``,

        loss = L_D(D, x̄_f) + g_weight·(L_G(D̄, x_f) − stop_gradient(L_G(D̄, x_f))).

    The bracket is exactly 0 in value, so ``loss == d_loss``; its gradient is
    g_weight·∇_G L_G and nothing for D, while the first term gives ∇_D L_D and
    nothing for G. One ``jax.grad`` therefore returns exactly
    (∇_D d_loss, g_weight·∇_G g_loss), the gradients of a *simultaneous* update
    (both taken at the same point, not alternating). XLA shares the two forward
    passes of the critic on x_f, so one step costs about one critic pass less than a
    D step followed by a G step, and one jitted call and optimiser update less.

    ``g_weight`` scales the generator's gradient, so under SGD (and momentum) it is
    the G:D learning-rate ratio. Adam, RMSprop and other scale-invariant optimisers
    cancel it (up to their epsilon): give each player its own optimiser instead,
    with ``optax.partition`` on the two subtrees (see the example).

    Args:
      losses: ``losses(t_real, t_fake, x_real, x_fake) -> (d_loss, g_loss)``, e.g.
        ``qp_losses`` or ``hinge_losses`` (bind options with ``functools.partial``).
      generator: ``generator(params["generator"], z) -> x_fake``, shaped as ``x_real``.
      discriminator: ``discriminator(params["discriminator"], x) -> scores`` (B,) or
        (B, 1).
      g_weight: a finite number >= 0 (Python, NumPy or JAX scalar) multiplying the
        generator's gradient; 0 freezes G. A traced negative one gives a NaN loss and gradients.

    Returns:
      ``loss_fn(params, x_real, z) -> (loss, aux)`` with
      ``params = {"generator": ..., "discriminator": ...}``, ``loss`` equal to
      d_loss and ``aux = {"d_loss": ..., "g_loss": ...}``. Use it with
      ``jax.grad(loss_fn, has_aux=True)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import optax
      >>> from gradjax import gan
      >>> generator = lambda pg, z: pg["scale"] * z  # x_fake = s·z
      >>> critic = lambda pd, x: x @ pd["w"]  # T(x) = w·x
      >>> loss_fn = gan.single_loss(gan.hinge_losses, generator, critic)
      >>> params = {"generator": {"scale": jnp.array([2.0])},
      ...           "discriminator": {"w": jnp.array([0.5, -0.5])}}
      >>> x_real, z = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])
      >>> grads, aux = jax.grad(loss_fn, has_aux=True)(params, x_real, z)
      >>> aux  # T(x_real) = 0.5, T(x_fake) = -1
      {'d_loss': Array(0.5, dtype=float32), 'g_loss': Array(1., dtype=float32)}
      >>> grads["discriminator"]["w"]  # ∇_w relu(1 − w·x_real) = −x_real
      Array([-1.,  0.], dtype=float32)
      >>> grads["generator"]["scale"]  # ∇_s (−w·s z) = −w·z
      Array([0.5], dtype=float32)
      >>> optimizer = optax.partition(  # one Adam per player: Adam would cancel g_weight
      ...     {"generator": optax.adam(2e-4, b1=0.5), "discriminator": optax.adam(2e-4, b1=0.5)},
      ...     {"generator": "generator", "discriminator": "discriminator"})
      >>> updates, opt_state = optimizer.update(grads, optimizer.init(params), params)

    References:
      Su, "巧断梯度：单个loss实现GAN模型" (2019), https://kexue.fm/archives/6387.
    """
    for name, fn in (
        ("losses", losses),
        ("generator", generator),
        ("discriminator", discriminator),
    ):
        check_callable(name, fn)
    g_weight = nan_outside(check_scalar("g_weight", g_weight, low=0.0), 0.0)

    def loss_fn(params: dict, x_real: jax.Array, z: jax.Array) -> tuple[jax.Array, dict]:
        if not isinstance(params, dict) or set(params) != {"generator", "discriminator"}:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                f"params must be a dict with keys 'generator', 'discriminator', got {got}"
            )
        pg, pd = params["generator"], params["discriminator"]
        check_finite_tree("x_real", x_real)
        x_fake = generator(pg, z)
        if jnp.shape(x_fake) != jnp.shape(x_real):
            raise ValueError(
                f"generator(params, z) must return samples shaped like x_real "
                f"{jnp.shape(x_real)}, got {jnp.shape(x_fake)}"
            )
        if not jnp.issubdtype(jnp.result_type(x_fake), jnp.floating):
            raise TypeError(  # an int sample has no gradient: G would never learn
                f"generator(params, z) must return floating samples, got dtype "
                f"{jnp.result_type(x_fake)}"
            )
        x_fake_ng = jax.lax.stop_gradient(x_fake)
        t_real = discriminator(pd, x_real)
        pair = losses(t_real, discriminator(pd, x_fake_ng), x_real, x_fake_ng)
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise TypeError(
                f"losses must return a pair (d_loss, g_loss), got {type(pair).__name__}"
            )
        d_loss = pair[0]

        pd_ng = jax.lax.stop_gradient(pd)
        t_fake_for_g = discriminator(pd_ng, x_fake)
        _, g_loss = losses(jax.lax.stop_gradient(t_real), t_fake_for_g, x_real, x_fake)
        loss = d_loss + g_weight * (g_loss - jax.lax.stop_gradient(g_loss))
        aux = {"d_loss": d_loss, "g_loss": jax.lax.stop_gradient(g_loss)}
        return loss, aux

    return loss_fn
