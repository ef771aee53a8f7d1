r"""DP-SGD's noise and its privacy accounting.

With the clipped mean ḡ = (1/B) Σᵢ cᵢgᵢ of :func:`per_example_clipped_grad` (each
example's contribution to the sum of norm at most γ), the Gaussian mechanism releases

.. math:: \tilde g = \frac1B\Big(\sum_i c_i g_i + \mathcal N(0, \sigma^2\gamma^2 I)\Big)
          = \bar g + \mathcal N\Big(0, \Big(\frac{\sigma\gamma}{B}\Big)^2 I\Big),

and T such steps on Poisson-sampled batches (rate q) are (ε, δ)-DP with the ε that
:func:`dp_epsilon` computes (Rényi-DP or PLD accounting by Google's ``dp-accounting``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradjax._checks import check_choice, check_int, check_key, check_scalar, inexact_tree
from gradjax.optim._clipping import _wide


class DPAggregateState(NamedTuple):
    """The key of the next step's noise (split once per update) and the update count."""

    key: jax.Array
    count: jax.Array


def dp_aggregate(
    noise_multiplier: float, *, key: jax.Array, max_norm: float, batch_size: int
) -> optax.GradientTransformation:
    r"""Adds DP-SGD's Gaussian noise to a clipped mean gradient.

    .. math:: \tilde g = \bar g + \frac{\sigma\gamma}{B}\,\xi, \qquad \xi \sim \mathcal N(0, I),

    that is N(0, (σγ)²) added to the *sum* of the clipped per-example gradients, then
    divided by B. The input must be the clipped **mean** ḡ over a batch of exactly
    ``batch_size`` examples, each clipped to norm ``max_norm``, which is what
    :func:`per_example_clipped_grad` returns (either form: the soft form's norms are
    below γ too); pass it the same γ. Chain an optimizer after it; the noise is drawn in
    float32 or wider and added in that precision, the update keeps the gradient's dtype.

    Args:
      noise_multiplier: σ ≥ 0 (0 adds no noise: not private).
      key: the PRNG key of the noise, kept in the state and split at every update, so a
        run is reproducible by key.
      max_norm: γ > 0, the clipping norm the gradients were clipped to.
      batch_size: B ≥ 1, the number of examples in the mean (with Poisson sampling,
        the *expected* batch size, as DP-SGD's analysis assumes).

    Returns:
      An ``optax.GradientTransformation`` with a :class:`DPAggregateState`.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from gradjax import optim
      >>> def fun(w, batch):
      ...     x, y = batch
      ...     return jnp.mean((x @ w - y) ** 2)
      >>> x = jax.random.normal(jax.random.key(0), (64, 3))
      >>> y = x @ jnp.array([1.0, -1.0, 0.5])
      >>> grad_fn = optim.per_example_clipped_grad(fun, 1.0)
      >>> tx = optax.chain(
      ...     optim.dp_aggregate(1.1, key=jax.random.key(1), max_norm=1.0, batch_size=64),
      ...     optax.adam(1e-2),
      ... )
      >>> w = jnp.zeros(3)
      >>> state = tx.init(w)
      >>> @jax.jit
      ... def step(w, state, batch):
      ...     (loss, info), grads = grad_fn(w, batch)
      ...     updates, state = tx.update(grads, state, w)
      ...     return optax.apply_updates(w, updates), state, loss
      >>> for _ in range(100):
      ...     w, state, loss = step(w, state, (x, y))
      >>> print(f"{fun(jnp.zeros(3), (x, y)):.2f} -> {loss:.2f}")
      1.73 -> 0.01

    References:
      Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang, "Deep learning with
      differential privacy", CCS 2016.
    """
    check_scalar("noise_multiplier", noise_multiplier, low=0.0)
    check_key("key", key)
    check_scalar("max_norm", max_norm, low=0.0, strict=True)
    batch_size = check_int("batch_size", batch_size, 1)

    def init_fn(params):
        del params
        return DPAggregateState(key=key, count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        inexact_tree("updates", updates)
        next_key, noise_key = jax.random.split(state.key)
        noise = optax.tree.random_like(noise_key, jax.tree.map(_wide, updates), jax.random.normal)
        stdev = noise_multiplier * max_norm / batch_size
        noisy = jax.tree.map(
            lambda g, z: (_wide(g) + jnp.asarray(stdev, z.dtype) * z).astype(g.dtype),
            updates,
            noise,
        )
        return noisy, DPAggregateState(next_key, optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def dp_epsilon(
    noise_multiplier: float,
    sampling_rate: float,
    num_steps: int,
    delta: float,
    *,
    accountant: str = "rdp",
) -> float:
    r"""ε of DP-SGD: ``num_steps`` Poisson-sampled Gaussian mechanisms, at a given δ.

    Each step samples every example with probability q (``sampling_rate``, B/N) and adds
    N(0, (σγ)²) to the clipped sum (:func:`dp_aggregate`); the composition of T steps is
    (ε, δ)-DP for the returned ε (add-or-remove-one neighbouring datasets).

    Args:
      noise_multiplier: σ > 0.
      sampling_rate: q in (0, 1].
      num_steps: T ≥ 1.
      delta: δ in (0, 1).
      accountant: ``"rdp"`` (Rényi DP, Mironov 2017; the TF-Privacy figures) or
        ``"pld"`` (privacy loss distributions, tighter).

    Returns:
      ε as a Python float.

    Raises:
      ImportError: without ``dp-accounting``: ``pip install gradjax[privacy]``.

    Example:
      >>> from gradjax import optim
      >>> eps = optim.dp_epsilon(1.1, 256 / 60_000, 60 * 60_000 // 256, 1e-5)
      >>> round(eps, 2)  # MNIST, batch 256, 60 epochs
      2.6

    References:
      Mironov, "Rényi differential privacy", CSF 2017. Google's ``dp-accounting``
      (github.com/google/differential-privacy, python/dp_accounting).
    """
    check_scalar("noise_multiplier", noise_multiplier, low=0.0, strict=True)
    check_scalar("sampling_rate", sampling_rate, low=0.0, strict=True, high=1.0)
    num_steps = check_int("num_steps", num_steps, 1)
    check_scalar("delta", delta, low=0.0, strict=True, high=1.0)
    if float(delta) >= 1.0:
        raise ValueError(f"delta must be < 1, got {float(delta)}")
    check_choice("accountant", accountant, ["rdp", "pld"])
    try:
        import dp_accounting
    except ImportError as error:
        raise ImportError(
            "dp_epsilon needs the dp-accounting package: pip install 'gradjax[privacy]'"
        ) from error
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            float(sampling_rate), dp_accounting.GaussianDpEvent(float(noise_multiplier))
        ),
        num_steps,
    )
    if accountant == "rdp":
        engine: Any = dp_accounting.rdp.RdpAccountant()
    else:
        engine = dp_accounting.pld.PLDAccountant()
    return float(engine.compose(event).get_epsilon(float(delta)))
