"""Image attributions drawn over their image (matplotlib is imported on first use)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from gradjax._checks import check_bool, check_scalar


def heatmap_overlay(
    image: Any,
    attributions: Any,
    *,
    ax: Any = None,
    alpha: float = 0.6,
    colorbar: bool = False,
) -> Any:
    """Draws an image in grey with its signed attributions on top (red +, blue -).

    The colour scale is symmetric, ``[-max|a|, max|a|]``; colour channels of an
    ``(H, W, C)`` image or attribution are summed. Needs matplotlib.

    Args:
      image: ``(H, W)`` or ``(H, W, C)`` array.
      attributions: ``(H, W)`` or ``(H, W, C)`` attributions of that image.
      ax: a matplotlib Axes (a new figure's if None).
      alpha: opacity of the attribution layer, in [0, 1].
      colorbar: draw the attribution layer's colour scale next to the Axes.

    Returns:
      The Axes (its last image is the attribution layer, for a colour bar).

    Example:
      >>> import matplotlib
      >>> matplotlib.use("Agg")
      >>> import numpy as np
      >>> from gradjax.attribution import heatmap_overlay
      >>> ax = heatmap_overlay(np.eye(8), np.linspace(-1.0, 2.0, 64).reshape(8, 8), colorbar=True)
      >>> ax.images[-1].get_clim()
      (-2.0, 2.0)
    """
    import matplotlib.pyplot as plt

    image = np.asarray(jax.device_get(image), dtype=np.float64)
    attributions = np.asarray(jax.device_get(attributions), dtype=np.float64)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")
    if attributions.shape[:2] != image.shape[:2] or attributions.ndim not in (2, 3):
        raise ValueError(
            f"attributions must have shape {image.shape[:2]} (+ channels), got {attributions.shape}"
        )
    for name, value in (("image", image), ("attributions", attributions)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite, got NaN or Inf entries")
    check_bool("colorbar", colorbar)
    alpha = check_scalar("alpha", alpha, 0.0, high=1.0)
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    heat = attributions.sum(axis=-1) if attributions.ndim == 3 else attributions
    limit = float(np.max(np.abs(heat))) or 1.0
    if ax is None:
        _, ax = plt.subplots()
    ax.imshow(grey, cmap="gray_r" if grey.min() >= 0 else "gray")
    layer = ax.imshow(heat, cmap="bwr", vmin=-limit, vmax=limit, alpha=alpha)
    if colorbar:
        ax.figure.colorbar(layer, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
