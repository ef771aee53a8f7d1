"""Tour: K-Means as hard EM on digits and a photograph, and soft K-Means between the two."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from gradjax import em
from gradjax.datasets import load_digits, load_sample_image, make_blobs


def _timed(fn):
    """Runs ``fn`` twice (compile, then warm) and returns (result, warm seconds)."""
    jax.block_until_ready(fn())
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    return result, time.perf_counter() - start


def _digits(report, sec) -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    x, y = load_digits()
    ours, t_ours = _timed(lambda: em.kmeans(jax.random.key(0), x, 10, n_init=10))
    start = time.perf_counter()
    ref = KMeans(10, n_init=10, random_state=0).fit(np.asarray(x, np.float64))
    t_ref = time.perf_counter() - start
    ari_ours = adjusted_rand_score(y, np.asarray(ours.labels))
    ari_ref = adjusted_rand_score(y, ref.labels_)
    sec.table(
        ["implementation", "inertia", "ARI vs digit labels", "iterations", "wall time (warm)"],
        [
            ["gradjax `em.kmeans(n_init=10)`", float(ours.inertia), ari_ours,
             int(ours.num_iters), f"{t_ours * 1e3:.0f} ms"],
            ["scikit-learn `KMeans(n_init=10)`", float(ref.inertia_), ari_ref, int(ref.n_iter_),
             f"{t_ref * 1e3:.0f} ms"],
        ],
    )  # fmt: skip
    majority = [np.bincount(y[np.asarray(ours.labels) == j], minlength=10) for j in range(10)]
    order = np.argsort([np.argmax(m) for m in majority])
    fig, axes = plt.subplots(1, 10, figsize=(11, 1.6))
    for ax, j in zip(axes, order, strict=True):
        ax.imshow(np.asarray(ours.centroids[j]).reshape(8, 8), cmap="gray_r")
        ax.set_title(f"{np.argmax(majority[j])} ({majority[j].max() / majority[j].sum():.0%})")
        ax.axis("off")
    sec.figure(
        fig,
        "kmeans_digits_centroids",
        "The 10 centroids on digits (8×8 images): each titled with the majority digit among "
        "its points and that digit's share.",
    )
    report.add_summary(
        "K-Means, digits (k=10, n_init=10)",
        f"inertia {float(ours.inertia):.1f} (ARI {ari_ours:.2f}) in {t_ours * 1e3:.0f} ms",
        f"scikit-learn KMeans: inertia {ref.inertia_:.1f} in {t_ref * 1e3:.0f} ms",
    )


def _quantise(report, sec) -> None:
    image = load_sample_image("china.jpg")
    pixels = jnp.asarray(image.reshape(-1, 3), jnp.float32) / 255.0
    sample = pixels[np.random.default_rng(0).choice(len(pixels), 20_000, replace=False)]
    rows, quantised = [], {}
    for k in (16,):
        result, seconds = _timed(lambda k=k: em.kmeans(jax.random.key(0), sample, k, num_iters=50))
        labels, dist = em.assign(pixels, result.centroids)
        quantised[k] = np.asarray(result.centroids)[np.asarray(labels)].reshape(image.shape)
        psnr = -10 * np.log10(float(jnp.mean(dist)) / 3)
        rows.append([k, int(result.num_iters), bool(result.converged), f"{psnr:.1f} dB",
                     f"{seconds * 1e3:.0f} ms"])  # fmt: skip
    sec.table(
        ["colours k", "iterations", "converged", "PSNR (all pixels)", "fit time (warm)"], rows
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].imshow(image)
    axes[0].set_title("original")
    for ax, k in zip(axes[1:], quantised, strict=True):
        ax.imshow(np.clip(quantised[k], 0, 1))
        ax.set_title(f"{k} colours")
    for ax in axes:
        ax.axis("off")
    sec.figure(
        fig,
        "kmeans_colour_quantisation",
        f"Colour quantisation of scikit-learn's china.jpg: K-Means on 20,000 random pixels "
        f"(RGB), then every one of the {len(pixels):,} pixels replaced by its nearest centroid "
        "(`em.assign`).",
    )
    report.add_summary(
        "K-Means colour quantisation (china.jpg)",
        f"16 colours: {rows[0][3]} PSNR in {rows[0][4]}",
        "PSNR over all 273k pixels, each given its nearest centroid",
    )


def _excess(trace):
    """``trace - trace[-1]``, floored for a log scale."""
    return np.maximum(trace - trace[-1], 1e-6 * abs(trace[0]))


def _soft_vs_hard(report, sec) -> None:
    x, _ = make_blobs(600, 4, 2, cluster_std=1.2, seed=3)
    init = x[np.random.default_rng(0).choice(len(x), 4, replace=False)]
    hard = em.kmeans(jax.random.key(0), x, 4, init=init, num_iters=30, tol=0.0)
    fig, (ax_points, ax_trace) = plt.subplots(1, 2, figsize=(11, 4))
    ax_points.scatter(x[:, 0], x[:, 1], s=3, c="lightgray")
    rows = []
    for stiffness, marker in ((0.02, "v"), (0.2, "s"), (2.0, "o"), (1e4, "x")):
        soft = em.soft_kmeans(
            jax.random.key(0), x, 4, stiffness=stiffness, init=init, num_iters=30, tol=0.0
        )
        trace = np.asarray(soft.inertia_trace)
        gap = float(jnp.max(jnp.abs(soft.centroids - hard.centroids)))
        rows.append([stiffness, f"{trace[0]:.1f} → {trace[-1]:.1f}",
                     bool(np.all(np.diff(trace) <= 1e-4 * abs(trace[0]))), float(soft.inertia),
                     f"{gap:.2e}"])  # fmt: skip
        c = np.asarray(soft.centroids)
        ax_points.scatter(c[:, 0], c[:, 1], marker=marker, s=60, label=f"M = {stiffness:g}")
        ax_trace.plot(np.arange(1, 31), _excess(trace), label=f"soft, M = {stiffness:g} (L_M)")
    lloyd = _excess(np.asarray(hard.inertia_trace))
    ax_trace.plot(np.arange(1, 31), lloyd, "k--", label="Lloyd (inertia)")
    ax_points.legend(fontsize=8)
    ax_points.set_title("final centroids")
    ax_trace.set(xlabel="iteration", ylabel="objective - final objective", yscale="log",
                 title="objective per step (floored at 1e-6 of the start: float32)")  # fmt: skip
    ax_trace.legend(fontsize=8)
    sec.table(
        ["stiffness M", "L_M first → last", "L_M never increases", "hard inertia",
         "max |c - c_Lloyd|"],
        rows,
    )  # fmt: skip
    sec.figure(
        fig,
        "soft_kmeans_stiffness",
        "Soft K-Means on 600 points of 4 blobs from the same start: a small stiffness M "
        "pulls the centroids together (every point is shared), a large one is Lloyd's "
        "algorithm; each run's smoothed objective L_M decreases monotonically.",
    )
    report.add_summary(
        "soft K-Means (EM on the smoothed objective)",
        f"L_M monotone for every M; M = 1e4 matches Lloyd to {rows[-1][4]}",
        "Lloyd's algorithm (em.kmeans) from the same start",
    )


def run(report) -> None:
    sec = report.section("K-Means: hard EM as a lax.scan, soft K-Means between EM and Lloyd")
    sec.text(
        "K-Means minimises the inertia Σᵢ wᵢ minⱼ ‖xᵢ - cⱼ‖². Lloyd's algorithm is EM on it: "
        "the E-step assigns every point to its nearest centroid, which fixes the surrogate "
        "L' = Σᵢⱼ Cᵢⱼ wᵢ ‖xᵢ - cⱼ‖², an upper bound touching the inertia at the current "
        "centroids, and the M-step minimises L' in closed form (each centroid becomes the "
        "mean of its points), so the inertia never increases. `gradjax.em.kmeans` runs the "
        "iterations as one `lax.scan`, its restarts in parallel under `vmap`, and the "
        "distances one row block at a time (never an n×k matrix)."
    )
    _digits(report, sec)
    _quantise(report, sec)
    sec.text(
        "Soft K-Means replaces the min by a soft-min of stiffness M, "
        "L_M = -1/M Σᵢ log Σⱼ exp(-M ‖xᵢ - cⱼ‖²). Its surrogate uses the responsibilities "
        "Cᵢⱼ = softmax(-M dᵢⱼ) and has the same gradient as L_M at the current centroids; "
        "its minimiser is the responsibility-weighted mean (`gradjax.em.soft_kmeans`). As "
        "M → ∞ the responsibilities become one-hot and the step is Lloyd's."
    )
    _soft_vs_hard(report, sec)
