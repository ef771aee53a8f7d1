"""A multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Dense layers of the given widths, ``activation`` between them (none after the last).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradjax.models import MLP
      >>> model = MLP((64, 10))
      >>> params = model.init(jax.random.key(0), jnp.ones((1, 64)))
      >>> model.apply(params, jnp.ones((3, 64))).shape
      (3, 10)
    """

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x
