"""How an EM fit ended: the ``status`` code of its result (:class:`gradjax.Status`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradjax._status import Status


def status_code(converged: jax.Array, finite: jax.Array) -> jax.Array:
    """NONFINITE where ``finite`` is false, else SUCCESS where ``converged``, else MAX_STEPS
    (int32, any shape)."""
    return jnp.where(
        finite,
        jnp.where(converged, int(Status.SUCCESS), int(Status.MAX_STEPS)),
        int(Status.NONFINITE),
    ).astype(jnp.int32)
