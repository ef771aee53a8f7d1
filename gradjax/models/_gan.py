"""GAN players: a DCGAN generator/critic sized by resolution, and an MLP pair for 2-D data."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_INIT = nn.initializers.normal(0.02)  # N(0, 0.02), as in the DCGAN/GAN-QP reference code


def _num_layers(resolution: int) -> int:
    """log2(resolution) − 3: the stride-2 stages between 4×4 and resolution/2."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return int(math.log2(resolution)) - 3


def _max_channels(resolution: int, max_channels: int | None) -> int:
    return min(8 * resolution, 2048) if max_channels is None else max_channels


def _image_norm() -> nn.Module:
    return nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1)


class DCGANGenerator(nn.Module):
    """z (B, z_dim) → images (B, resolution, resolution, channels) in [−1, 1].

    Dense to 4×4×max_channels, then ``log2(resolution) − 3`` stride-2 5×5 transposed
    convolutions halving the channels, each normalised and ReLU'd, then a final
    stride-2 transposed convolution to ``channels`` and tanh (the GAN-QP reference
    architecture). LayerNorm (over H, W, C) stands where the reference has BatchNorm,
    so the generator is a pure function of its parameters with no batch-statistics
    state, as ``gradjax.gan.single_loss`` expects.

    Example:
      >>> gen = DCGANGenerator(resolution=32)
      >>> params = gen.init(jax.random.key(0), jnp.zeros((1, 128)))
    """

    resolution: int = 32
    channels: int = 3
    max_channels: int | None = None

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        num_layers = _num_layers(self.resolution)
        width = _max_channels(self.resolution, self.max_channels)
        x = nn.Dense(4 * 4 * width, kernel_init=_INIT)(z)
        x = nn.relu(_image_norm()(x.reshape((*z.shape[:-1], 4, 4, width))))
        for i in range(num_layers):
            x = nn.ConvTranspose(
                width // 2 ** (i + 1), (5, 5), strides=(2, 2), padding="SAME", kernel_init=_INIT
            )(x)
            x = nn.relu(_image_norm()(x))
        x = nn.ConvTranspose(
            self.channels, (5, 5), strides=(2, 2), padding="SAME", kernel_init=_INIT
        )(x)
        return jnp.tanh(x)


class DCGANCritic(nn.Module):
    """Images (B, H, W, C) → scores (B,).

    ``log2(resolution) − 2`` stride-2 5×5 convolutions without bias, doubling the
    channels up to ``max_channels``, LeakyReLU(0.2), normalised after every layer but
    the first (LayerNorm where the reference has BatchNorm, so each sample's score
    depends on that sample only), then a bias-free Dense(1).

    Example:
      >>> critic = DCGANCritic(resolution=32)
      >>> params = critic.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    """

    resolution: int = 32
    max_channels: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        num_layers = _num_layers(self.resolution)
        width = _max_channels(self.resolution, self.max_channels)
        if x.shape[-3:-1] != (self.resolution, self.resolution):
            raise ValueError(
                f"x must be (B, {self.resolution}, {self.resolution}, C), got {x.shape}"
            )
        for i in range(num_layers + 1):
            x = nn.Conv(
                width // 2 ** (num_layers - i),
                (5, 5),
                strides=(2, 2),
                padding="SAME",
                use_bias=False,
                kernel_init=_INIT,
            )(x)
            if i > 0:
                x = _image_norm()(x)
            x = nn.leaky_relu(x, 0.2)
        x = x.reshape((*x.shape[:-3], -1))
        return nn.Dense(1, use_bias=False, kernel_init=_INIT)(x)[..., 0]


class MLPGenerator(nn.Module):
    """z (B, z_dim) → points (B, out_dim): ReLU hidden layers, then ``output_activation``.

    Use ``output_activation=jnp.tanh`` for data scaled to [−1, 1] (e.g. flattened images).

    Example:
      >>> gen = MLPGenerator()
      >>> params = gen.init(jax.random.key(0), jnp.zeros((1, 2)))
    """

    hidden: Sequence[int] = (128, 128, 128)
    out_dim: int = 2
    output_activation: Callable[[jax.Array], jax.Array] | None = None

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        x = z
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        x = nn.Dense(self.out_dim)(x)
        return x if self.output_activation is None else self.output_activation(x)


class MLPCritic(nn.Module):
    """Points (B, D) → scores (B,): LeakyReLU(0.2) hidden layers, linear output.

    Example:
      >>> critic = MLPCritic()
      >>> params = critic.init(jax.random.key(0), jnp.zeros((1, 2)))
    """

    hidden: Sequence[int] = (128, 128, 128)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
        return nn.Dense(1)(x)[..., 0]
