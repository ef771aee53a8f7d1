"""Objectives with a known defect, shared by the Newton tests and the bad-input table."""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_jvp
def wrong_sign_square(p):
    """‖p‖² whose derivative is given the wrong sign (-2p): every step goes uphill."""
    return jnp.sum(p**2)


@wrong_sign_square.defjvp
def _wrong_sign_square_jvp(primals, tangents):
    (p,), (t,) = primals, tangents
    return wrong_sign_square(p), jnp.sum(-2 * p * t)
