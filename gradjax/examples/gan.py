"""Train a GAN with one loss: ``python -m gradjax.examples.gan --data ring|digits --loss qp|hinge``.

Each step is one jitted ``gradjax.gan.single_loss`` gradient and one optimiser update
of both players (Adam(2e-4, β1=0.5) per player via ``optax.partition``). Writes a PNG
of samples and one of the loss curves, and prints the quality figures: modes covered
and the high-quality fraction on the 8-Gaussian ring, the class histogram and mean
confidence of a classifier trained on real digits.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax import gan
from gradjax.datasets import load_digits, ring_modes, ring_of_gaussians
from gradjax.models import MLP, MLPCritic, MLPGenerator, fit

from ._classify import classifier_loss

LOSSES = {"qp": functools.partial(gan.qp_losses, distance="l2"), "hinge": gan.hinge_losses}


class GANResult(NamedTuple):
    """Trained ``{"generator", "discriminator"}`` parameters and per-step loss traces."""

    params: dict
    d_losses: np.ndarray
    g_losses: np.ndarray


def adam_per_player(
    g_learning_rate: float = 2e-4, d_learning_rate: float = 4e-4, b1: float = 0.5
) -> optax.GradientTransformation:
    """One Adam per player, on the "generator" and "discriminator" subtrees.

    The reference trains with Adam(2e-4, β1=0.5) and two critic steps per generator
    step; the single-loss step updates both players once, so the critic gets twice
    the generator's learning rate instead (Adam ignores ``g_weight``).
    """
    return optax.partition(
        {
            "generator": optax.adam(g_learning_rate, b1=b1),
            "discriminator": optax.adam(d_learning_rate, b1=b1),
        },
        {"generator": "generator", "discriminator": "discriminator"},
    )


def init_players(key, generator: nn.Module, critic: nn.Module, x_example, z_dim: int) -> dict:
    kg, kd = jax.random.split(key)
    return {
        "generator": generator.init(kg, jnp.zeros((1, z_dim))),
        "discriminator": critic.init(kd, jnp.asarray(x_example)[:1]),
    }


def train_gan(
    key: jax.Array,
    sample_real: Callable[[jax.Array, int], jax.Array],
    generator: nn.Module,
    critic: nn.Module,
    *,
    loss: str = "qp",
    steps: int = 5000,
    batch_size: int = 64,
    z_dim: int = 128,
    optimizer: optax.GradientTransformation | None = None,
    steps_per_call: int = 100,
    progress: bool = True,
) -> GANResult:
    """Trains ``generator`` against ``critic`` with the single-loss step.

    ``sample_real(key, n)`` draws n real samples; z ~ N(0, I). ``steps_per_call``
    steps run inside one jitted ``lax.scan`` between progress-bar updates.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    optimizer = adam_per_player() if optimizer is None else optimizer
    init_key, train_key = jax.random.split(key)
    params = init_players(init_key, generator, critic, sample_real(init_key, 1), z_dim)
    loss_fn = gan.single_loss(LOSSES[loss], generator.apply, critic.apply)
    grad_fn = jax.grad(loss_fn, has_aux=True)

    def step(carry, key):
        params, opt_state = carry
        k_real, k_z = jax.random.split(key)
        x_real = sample_real(k_real, batch_size)
        z = jax.random.normal(k_z, (batch_size, z_dim))
        grads, aux = grad_fn(params, x_real, z)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (aux["d_loss"], aux["g_loss"])

    @functools.partial(jax.jit, static_argnums=2)
    def run_chunk(carry, key, n):
        return jax.lax.scan(step, carry, jax.random.split(key, n))

    carry = (params, optimizer.init(params))
    chunks = [steps_per_call] * (steps // steps_per_call)
    if steps % steps_per_call:
        chunks.append(steps % steps_per_call)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"GAN ({loss})", leave=False)
    d_losses, g_losses = [], []
    for i, n in enumerate(chunks):
        carry, (d, g) = run_chunk(carry, jax.random.fold_in(train_key, i), n)
        d_losses.append(d)
        g_losses.append(g)
        if bar is not None:
            bar.update(n)
            bar.set_postfix(d_loss=f"{float(d[-1]):.3f}", g_loss=f"{float(g[-1]):.3f}")
    if bar is not None:
        bar.close()
    return GANResult(
        carry[0], np.concatenate(jax.device_get(d_losses)), np.concatenate(jax.device_get(g_losses))
    )


def generate(key, generator: nn.Module, params: dict, n: int, z_dim: int) -> jax.Array:
    return generator.apply(params["generator"], jax.random.normal(key, (n, z_dim)))


# --- the 8-Gaussian ring --------------------------------------------------------------------

RING = {"num_modes": 8, "radius": 2.0, "std": 0.02}


def sample_ring(key, n):
    return ring_of_gaussians(key, n, **RING)


def ring_players() -> tuple[nn.Module, nn.Module]:
    return MLPGenerator(hidden=(128, 128, 128), out_dim=2), MLPCritic(hidden=(128, 128, 128))


class RingQuality(NamedTuple):
    modes_covered: int  # modes with >= min_count samples within 3 std
    high_quality: float  # fraction of samples within 3 std of some mode
    counts: np.ndarray  # (num_modes,) samples within 3 std of each mode


def ring_quality(samples, *, min_count: int = 20, num_std: float = 3.0) -> RingQuality:
    """Mode coverage and high-quality fraction of 2-D samples on the ring (e.g. 2,500).

    A sample is high quality within ``num_std`` standard deviations of a mode; a mode
    is covered by at least ``min_count`` such samples.
    """
    samples = np.asarray(samples, np.float64)
    modes = np.asarray(ring_modes(RING["num_modes"], RING["radius"]), np.float64)
    dist = np.linalg.norm(samples[:, None, :] - modes[None], axis=-1)
    near = dist <= num_std * RING["std"]
    counts = near.sum(axis=0)
    return RingQuality(int((counts >= min_count).sum()), float(near.any(axis=1).mean()), counts)


def ring_optimizer() -> optax.GradientTransformation:
    """Adam(β1=0.5) at 5e-4 (G) and 1e-3 (D): 2.5× the image-scale reference rate.

    Measured over 4 seeds at 5,000 steps (batch 256): 8/8 modes every time and 63-94%
    high-quality samples; at the reference 2e-4/4e-4, 7-8 modes and 41-87%.
    """
    return adam_per_player(5e-4, 1e-3)


def train_ring(key, *, loss="qp", steps=5000, batch_size=256, z_dim=2, progress=True, **kw):
    """GAN-QP (or hinge) on the 8-Gaussian ring with the MLP pair and ``ring_optimizer``."""
    kw.setdefault("optimizer", ring_optimizer())
    generator, critic = ring_players()
    result = train_gan(
        key,
        sample_ring,
        generator,
        critic,
        loss=loss,
        steps=steps,
        batch_size=batch_size,
        z_dim=z_dim,
        progress=progress,
        **kw,
    )
    return result, generator


# --- scikit-learn digits ----------------------------------------------------------------------


def digits_images() -> tuple[jax.Array, jax.Array]:
    """The 1,797 digits as flat (N, 64) vectors in [−1, 1] (8×8 row-major), and labels."""
    x, y = load_digits()
    return jnp.asarray(2 * x - 1), jnp.asarray(y)


def digits_players() -> tuple[nn.Module, nn.Module]:
    return (
        MLPGenerator(hidden=(256, 256), out_dim=64, output_activation=jnp.tanh),
        MLPCritic(hidden=(256, 256)),
    )


def train_digits(key, *, loss="qp", steps=3000, batch_size=64, z_dim=32, progress=True, **kw):
    images, _ = digits_images()

    def sample_digits(k, n):
        return images[jax.random.randint(k, (n,), 0, images.shape[0])]

    generator, critic = digits_players()
    result = train_gan(
        key,
        sample_digits,
        generator,
        critic,
        loss=loss,
        steps=steps,
        batch_size=batch_size,
        z_dim=z_dim,
        progress=progress,
        **kw,
    )
    return result, generator


def digits_classifier(key, *, steps=1500, progress=False) -> Callable[[jax.Array], jax.Array]:
    """An MLP trained on real digits in [−1, 1]; returns images → class probabilities."""
    images, labels = digits_images()
    x = images
    model = MLP((128, 10))
    params = model.init(key, x[:1])

    trained = fit(
        key,
        classifier_loss(model),
        params,
        (x, labels),
        optimizer=optax.adam(1e-3),
        steps=steps,
        batch_size=64,
        progress=progress,
    ).params
    return jax.jit(lambda imgs: jax.nn.softmax(model.apply(trained, imgs.reshape(len(imgs), -1))))


class DigitsQuality(NamedTuple):
    class_counts: np.ndarray  # (10,) argmax classes of the generated samples
    mean_confidence: float  # mean max-probability of the classifier
    real_confidence: float  # the same on real digits, for comparison


def digits_quality(samples, classifier) -> DigitsQuality:
    probs = np.asarray(classifier(samples))
    real = np.asarray(classifier(digits_images()[0]))
    return DigitsQuality(
        np.bincount(probs.argmax(1), minlength=10),
        float(probs.max(1).mean()),
        float(real.max(1).mean()),
    )


# --- plots --------------------------------------------------------------------------------


def plot_ring(ax, samples, title=""):
    modes = np.asarray(ring_modes(RING["num_modes"], RING["radius"]))
    samples = np.asarray(samples)
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.3)
    ax.scatter(modes[:, 0], modes[:, 1], s=30, c="red", marker="x")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_title(title)


def plot_digit_grid(ax, samples, rows=8, cols=8, title=""):
    imgs = np.asarray(samples)[: rows * cols].reshape(rows * cols, 8, 8)
    imgs = np.pad(imgs, ((0, 0), (1, 1), (1, 1)), constant_values=-1)  # a blank frame
    grid = imgs.reshape(rows, cols, 10, 10).transpose(0, 2, 1, 3).reshape(rows * 10, cols * 10)
    ax.imshow((grid + 1) / 2, cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title)


def plot_losses(ax, result: GANResult, title=""):
    ax.plot(result.d_losses, label="d_loss", lw=0.6)
    ax.plot(result.g_losses, label="g_loss", lw=0.6)
    ax.set_xlabel("step")
    ax.legend()
    ax.set_title(title)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradjax.examples.gan")
    parser.add_argument("--data", choices=("ring", "digits"), default="ring")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="qp")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gan-out", help="folder for the PNGs")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key, sample_key = jax.random.split(jax.random.key(args.seed))
    fig, ax = plt.subplots(figsize=(5, 5))
    if args.data == "ring":
        result, generator = train_ring(key, loss=args.loss, steps=args.steps)
        samples = generate(sample_key, generator, result.params, 2500, 2)
        quality = ring_quality(samples)
        summary = (
            f"modes covered {quality.modes_covered}/8, "
            f"high-quality samples {quality.high_quality:.1%}"
        )
        plot_ring(ax, samples, f"{args.loss}: {summary}")
    else:
        result, generator = train_digits(key, loss=args.loss, steps=args.steps)
        samples = generate(sample_key, generator, result.params, 1000, 32)
        quality = digits_quality(samples, digits_classifier(jax.random.key(1)))
        summary = (
            f"classes {quality.class_counts.tolist()}, mean confidence "
            f"{quality.mean_confidence:.3f} (real digits {quality.real_confidence:.3f})"
        )
        plot_digit_grid(ax, samples, title=f"{args.loss}, {args.steps} steps")
    fig.savefig(out / f"{args.data}_{args.loss}_samples.png", dpi=110, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(6, 3))
    plot_losses(ax, result, f"{args.data}, {args.loss}")
    fig.savefig(out / f"{args.data}_{args.loss}_losses.png", dpi=110, bbox_inches="tight")
    print(summary)
    print(f"wrote {out}/{args.data}_{args.loss}_samples.png and _losses.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
