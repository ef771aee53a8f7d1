"""Attribution of many targets and of generated tokens: gradjax vs Captum, equal weights.

``ig_targets``: integrated gradients over every class, gradjax in one call (one
linearisation per step, ``vmap`` over the classes' cotangents) vs Captum's loop over
targets. ``llm_attribution``: each generated token of a causal LM attributed to the
prompt, gradjax ``sequence_attributions`` vs Captum's ``LLMGradientAttribution`` with
``LayerIntegratedGradients`` on the embedding layer, on a torch twin of the same model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._harness import Table, ms, ratio, time_fn
from gradjax.attribution import integrated_gradients, sequence_attributions
from gradjax.models import MLP, CausalLM, TransformerClassifier

TORCH_THREADS = 2  # the same two cores XLA:CPU uses


def _torch():
    import torch

    torch.set_num_threads(TORCH_THREADS)
    return torch


def _t(torch, array):
    return torch.from_numpy(np.array(array, dtype=np.float32))


# ----------------------------------------------------------------------------- torch twins


def torch_transformer(torch, params, *, num_heads, causal, head_name="head"):
    """The flax ``_Trunk`` + Dense head of gradjax.models in PyTorch, identical weights.

    ``forward(embeddings, mask)`` takes token embeddings (B, T, d); ``token_embedding`` is
    the ``nn.Embedding`` that ``embed(tokens)`` uses (Captum's layer to attribute).
    """
    nn = torch.nn
    p = params["params"]
    trunk = p["trunk"]

    def linear(dense, shape_in, shape_out):
        layer = nn.Linear(int(np.prod(shape_in)), int(np.prod(shape_out)))
        with torch.no_grad():
            layer.weight.copy_(
                _t(torch, np.asarray(dense["kernel"]).reshape(layer.in_features, -1)).T
            )
            layer.bias.copy_(_t(torch, np.asarray(dense["bias"]).reshape(-1)))
        return layer

    def layer_norm(ln, d):
        layer = nn.LayerNorm(d, eps=1e-6)
        with torch.no_grad():
            layer.weight.copy_(_t(torch, ln["scale"]))
            layer.bias.copy_(_t(torch, ln["bias"]))
        return layer

    d_model = trunk["token_embedding"]["embedding"].shape[1]
    head_dim = d_model // num_heads

    class Block(nn.Module):
        def __init__(self, b):
            super().__init__()
            a = b["attention"]
            self.ln_attention = layer_norm(b["ln_attention"], d_model)
            self.q = linear(a["query"], d_model, d_model)
            self.k = linear(a["key"], d_model, d_model)
            self.v = linear(a["value"], d_model, d_model)
            self.out = linear(a["out"], d_model, d_model)
            self.ln_mlp = layer_norm(b["ln_mlp"], d_model)
            self.mlp_in = linear(b["mlp_in"], d_model, b["mlp_in"]["bias"].shape[0])
            self.mlp_out = linear(b["mlp_out"], b["mlp_in"]["bias"].shape[0], d_model)

        def forward(self, x, mask):  # mask (B or 1, T, T) bool
            bsz, length, _ = x.shape
            h = self.ln_attention(x)
            q, k, v = (
                f(h).view(bsz, length, num_heads, head_dim) for f in (self.q, self.k, self.v)
            )
            logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / head_dim**0.5
            m = mask[:, None]
            logits = torch.where(m, logits, torch.finfo(logits.dtype).min)
            w = torch.where(m, torch.softmax(logits, -1), 0.0)
            o = torch.einsum("bhqk,bkhd->bqhd", w, v).reshape(bsz, length, d_model)
            x = x + self.out(o)
            return x + self.mlp_out(
                nn.functional.gelu(self.mlp_in(self.ln_mlp(x)), approximate="tanh")
            )

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            emb = trunk["token_embedding"]["embedding"]
            self.token_embedding = nn.Embedding(*emb.shape)
            pos = trunk["position_embedding"]["embedding"]
            self.position_embedding = nn.Embedding(*pos.shape)
            with torch.no_grad():
                self.token_embedding.weight.copy_(_t(torch, emb))
                self.position_embedding.weight.copy_(_t(torch, pos))
            names = sorted((k for k in trunk if k.startswith("blocks_")), key=lambda s: int(s[7:]))
            self.blocks = nn.ModuleList([Block(trunk[k]) for k in names])
            self.ln_final = layer_norm(trunk["ln_final"], d_model)
            head = p[head_name]
            self.head = linear(head, d_model, head["bias"].shape[0])

        def encode(self, e, mask):
            length = e.shape[1]
            x = e + self.position_embedding(torch.arange(length))[None]
            for block in self.blocks:
                x = block(x, mask)
            return self.ln_final(x)

        def classify(self, e, token_mask):  # (B, T, d), (B, T) bool -> (B, C)
            h = self.encode(e, token_mask[:, None, :].expand(-1, e.shape[1], -1))
            w = token_mask[..., None].to(h.dtype)
            return self.head((h * w).sum(1) / w.sum(1).clamp(min=1.0))

        def forward(self, tokens):  # causal LM, HF style: .logits (B, T, vocab)
            e = self.token_embedding(tokens)
            length = tokens.shape[1]
            mask = torch.tril(torch.ones(length, length, dtype=torch.bool))[None]
            return types.SimpleNamespace(logits=self.head(self.encode(e, mask)))

    twin = Twin()
    twin.causal = causal
    return twin


class IdTokenizer:
    """The least a Captum LLM attribution needs of a tokenizer: text is space-separated ids."""

    def encode(self, text, return_tensors=None, add_special_tokens=True):
        import torch

        ids = [int(w) for w in text.split()]
        return torch.tensor([ids]) if return_tensors == "pt" else ids

    def decode(self, ids):
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        return " ".join(str(int(i)) for i in np.atleast_1d(ids))

    def convert_ids_to_tokens(self, ids):
        return [str(int(i)) for i in ids]

    def __call__(self, text, return_offsets_mapping=False, add_special_tokens=True, **_):
        words, offsets, start = text.split(), [], 0
        for w in words:
            start = text.index(w, start)
            offsets.append((start, start + len(w)))
            start += len(w)
        return {"input_ids": [int(w) for w in words], "offset_mapping": offsets}


# ----------------------------------------------------------------------------- memory


def _peak_rss_growth(call) -> int:
    """Bytes: the largest resident-set growth over the process's size before ``call()``,
    sampled every 0.5 ms from /proc (both sides measured alike, in a fresh process)."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    before, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(5e-4)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        call()
    finally:
        done.set()
        thread.join()
    return max(peak[0], rss()) - before


def _memory_in_subprocess(quick: bool) -> dict:
    """Peak RSS growth of one warm call of each side, each in its own fresh process
    (glibc told to unmap large frees, so the resident size follows live buffers)."""
    out = {}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    for side in ("gradjax", "captum"):
        code = (
            "import json, benchmarks.attribution_llm as b; "
            f"print('MEMORY', json.dumps(b._llm_memory({quick!r}, {side!r})))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        line = [x for x in done.stdout.splitlines() if x.startswith("MEMORY ")][-1]
        out[side] = json.loads(line[len("MEMORY ") :])
    return out


# ----------------------------------------------------------------------------- ig_targets


def _digits_mlp(quick):
    from gradjax.datasets import load_digits

    x, _ = load_digits()
    num_inputs = 8 if quick else 64
    widths = (64, 64, 10) if quick else (64, 256, 256, 10)
    x = jnp.asarray(x[:num_inputs] / 16.0, jnp.float32)
    model = MLP(widths[1:])
    params = model.init(jax.random.key(0), x[:1])
    return model, params, x, widths


def _torch_mlp(torch, params, widths):
    layers = []
    for i in range(len(widths) - 1):
        linear = torch.nn.Linear(widths[i], widths[i + 1])
        dense = params["params"][f"Dense_{i}"]
        with torch.no_grad():
            linear.weight.copy_(_t(torch, dense["kernel"]).T)
            linear.bias.copy_(_t(torch, dense["bias"]))
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def _classifier(quick):
    vocab, length, num_inputs = 200, (12 if quick else 64), (2 if quick else 8)
    d_model, layers = (32, 1) if quick else (128, 2)
    model = TransformerClassifier(
        vocab, d_model=d_model, num_layers=layers, num_heads=4, max_len=length, num_classes=10
    )
    tokens = jax.random.randint(jax.random.key(5), (num_inputs, length), 1, vocab)
    tokens = tokens.at[:, length - length // 4 :].set(0)  # padded tails
    params = model.init(jax.random.key(0), tokens[:1])
    e = model.apply(params, tokens, method=TransformerClassifier.embed)
    return model, params, tokens, e


def ig_targets(quick: bool) -> Table:
    torch = _torch()
    from captum.attr import IntegratedGradients

    steps = 8 if quick else 64
    classes = jnp.arange(10)
    rows, data = [], {}

    def run(label, ours, captum_loop, note):
        jitted = jax.jit(ours)
        timing = time_fn(jitted, repeats=5)
        t_captum = time_fn(captum_loop, repeats=3)
        got = np.asarray(timing.result)
        want = np.stack([a.detach().numpy() for a in t_captum.result], axis=1)
        diff = float(np.max(np.abs(got - want)))
        scale = float(np.max(np.abs(want)))
        rows.append(
            [
                label,
                "gradjax, one call (`targets=`)",
                ms(timing.median),
                timing.first,
                f"{diff:.1e}",
                ratio(t_captum.median, timing.median),
            ]
        )
        rows.append(
            [
                label,
                "Captum `IntegratedGradients`, a loop over 10 targets",
                ms(t_captum.median),
                0.0,
                "0",
                "1.00x",
            ]
        )
        data[label] = {
            "gradjax_s": timing.median,
            "captum_s": t_captum.median,
            "max_abs_diff": diff,
            "max_abs_attribution": scale,
            "note": note,
        }

    # A digits MLP: every input, all 10 classes.
    model, params, x, widths = _digits_mlp(quick)
    twin = _torch_mlp(torch, params, widths)
    ig = IntegratedGradients(twin)
    x_t = _t(torch, x)

    def ours_mlp():
        return jax.vmap(
            lambda xi: integrated_gradients(
                lambda z: model.apply(params, z),
                xi,
                steps=steps,
                method="gauss_legendre",
                targets=classes,
            )
        )(x)

    def captum_mlp():
        return [
            ig.attribute(x_t, target=t, n_steps=steps, method="gausslegendre") for t in range(10)
        ]

    run(
        f"digits MLP {'-'.join(map(str, widths))}, {x.shape[0]} inputs",
        lambda: ours_mlp(),
        captum_mlp,
        "target >= 5x",
    )

    # The transformer classifier on its token embeddings, 10 classes.
    model, params, tokens, e = _classifier(quick)
    mask = tokens != 0
    twin = torch_transformer(torch, params, num_heads=4, causal=False)
    e_t, mask_t = _t(torch, e), torch.from_numpy(np.array(mask))
    ig_t = IntegratedGradients(lambda emb, m: twin.classify(emb, m))

    def ours_transformer():
        return jax.vmap(
            lambda ei, mi: integrated_gradients(
                lambda z: model.apply(params, embeddings=z[None], mask=mi[None])[0],
                ei,
                steps=steps,
                method="gauss_legendre",
                targets=classes,
            )
        )(e, mask)

    def captum_transformer():
        return [
            ig_t.attribute(
                e_t,
                target=t,
                n_steps=steps,
                method="gausslegendre",
                additional_forward_args=(mask_t,),
            )
            for t in range(10)
        ]

    with torch.no_grad():
        twin_logits = twin.classify(e_t, mask_t).numpy()
    twin_diff = float(np.max(np.abs(twin_logits - np.asarray(model.apply(params, tokens)))))
    run(
        f"transformer classifier, {tokens.shape[0]} sequences of {tokens.shape[1]} tokens",
        ours_transformer,
        captum_transformer,
        f"twin logits max |Δ| {twin_diff:.1e}",
    )
    data["transformer_twin_logit_diff"] = twin_diff
    return Table(
        "ig_targets",
        f"integrated gradients over all 10 classes, {steps} Gauss–Legendre steps",
        [
            "model",
            "implementation",
            "ms / call",
            "first call s",
            "max |Δ| vs Captum",
            "speed-up vs Captum",
        ],
        rows,
        notes=[
            "gradjax: `jax.jit(jax.vmap(lambda x: integrated_gradients(fun, x, "
            "targets=arange(10))))`:"
            " each step's forward pass is linearised once and pulled back along the 10 classes'"
            " one-hot cotangents (`jax.vmap` over one `jax.vjp`). Captum: one `attribute` call"
            " per target, its usual path (one forward + backward per step and target).",
            f"float32, identical weights, zero baseline; torch.set_num_threads({TORCH_THREADS}),"
            " XLA:CPU on the same cores. Target: >= 5x on the MLP.",
            f"Transformer twin's logits agree to {twin_diff:.1e}.",
        ],
        data=data,
    )


# ----------------------------------------------------------------------------- llm_attribution


def _llm_sizes(quick):
    if quick:
        return dict(vocab=40, d_model=32, layers=1, heads=4, prompt=8, new=4, steps=4)
    return dict(vocab=96, d_model=128, layers=2, heads=4, prompt=64, new=16, steps=32)


def _llm_setup(quick):
    s = _llm_sizes(quick)
    length = s["prompt"] + s["new"]
    model = CausalLM(
        s["vocab"],
        d_model=s["d_model"],
        num_layers=s["layers"],
        num_heads=s["heads"],
        max_len=length,
    )
    prompt = jax.random.randint(jax.random.key(7), (s["prompt"],), 1, s["vocab"])
    params = model.init(jax.random.key(0), prompt)
    logits_at = jax.jit(lambda t: model.apply(params, t))
    tokens = prompt
    for _ in range(s["new"]):  # greedy continuation
        tokens = jnp.concatenate([tokens, jnp.argmax(logits_at(tokens)[-1])[None]])
    e = model.apply(params, tokens, method=CausalLM.embed)
    pad = model.apply(params, jnp.zeros_like(tokens), method=CausalLM.embed)
    # Captum's TextTokenInput replaces the prompt's tokens by id 0 and keeps the generated
    # ones: the same baseline in embedding space.
    baseline = e.at[: s["prompt"]].set(pad[: s["prompt"]])
    fun = lambda emb: model.apply(params, embeddings=emb)  # noqa: E731
    ours = jax.jit(
        lambda emb, b: sequence_attributions(
            fun, emb, tokens[s["prompt"] :], baseline=b, steps=s["steps"]
        )
    )
    return s, model, params, tokens, e, baseline, fun, ours


def _captum_llm(torch, s, params, tokens):
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    twin = torch_transformer(torch, params, num_heads=s["heads"], causal=True)
    tokenizer = IdTokenizer()
    llm = LLMGradientAttribution(LayerIntegratedGradients(twin, twin.token_embedding), tokenizer)
    ids = np.asarray(tokens)
    inp = TextTokenInput(" ".join(map(str, ids[: s["prompt"]])), tokenizer)
    target = torch.from_numpy(ids[s["prompt"] :]).long()

    def attribute():
        return llm.attribute(inp, target=target, n_steps=s["steps"]).token_attr

    return twin, attribute


def _llm_memory(quick: bool, side: str) -> dict:
    """One side's peak RSS growth over one warm call (run in a fresh process)."""
    s, _, params, tokens, e, baseline, _, ours = _llm_setup(quick)
    if side == "gradjax":
        call = lambda: jax.block_until_ready(ours(e, baseline))  # noqa: E731
    else:
        _, attribute = _captum_llm(_torch(), s, params, tokens)
        call = attribute
    call()
    return {"peak_rss_growth_bytes": _peak_rss_growth(call)}


def llm_attribution(quick: bool) -> Table:
    torch = _torch()
    s, _, params, tokens, e, baseline, fun, ours = _llm_setup(quick)
    twin, attribute = _captum_llm(torch, s, params, tokens)
    with torch.no_grad():
        twin_logits = twin(torch.from_numpy(np.asarray(tokens))[None].long()).logits[0].numpy()
    twin_diff = float(np.max(np.abs(twin_logits - np.asarray(fun(e)))))

    timing = time_fn(lambda: ours(e, baseline), repeats=5)
    t_captum = time_fn(attribute, repeats=3)
    got = np.asarray(timing.result.attributions)
    want = t_captum.result.detach().numpy()
    p = s["prompt"]
    diff = float(np.max(np.abs(got[:, :p] - want)))

    # The floor: steps × generated forward+backward passes of the full sequence, at the
    # rate of a batch of `steps` of them (one log-prob gradient each) on this machine.
    def one_pass(emb):
        return jax.grad(lambda z: jax.nn.log_softmax(fun(z)[-2])[tokens[-1]])(emb)

    batch = jnp.broadcast_to(e, (s["steps"], *e.shape))
    passes = jax.jit(jax.vmap(one_pass))
    t_pass = time_fn(lambda: passes(batch), repeats=5).median / s["steps"]
    floor = t_pass * s["steps"] * s["new"]
    memory = _memory_in_subprocess(quick)
    mib = {k: v["peak_rss_growth_bytes"] / 2**20 for k, v in memory.items()}
    temp = (
        jax.jit(
            lambda emb, b: sequence_attributions(fun, emb, tokens[p:], baseline=b, steps=s["steps"])
        )
        .lower(e, baseline)
        .compile()
    )
    temp_mib = temp.memory_analysis().temp_size_in_bytes / 2**20

    rows = [
        [
            "gradjax `sequence_attributions`",
            ms(timing.median),
            timing.first,
            f"{diff:.1e}",
            f"{mib['gradjax']:.1f} (XLA temp {temp_mib:.1f})",
            ratio(t_captum.median, timing.median),
            ratio(floor, timing.median),
        ],
        [
            "Captum `LLMGradientAttribution` + `LayerIntegratedGradients`",
            ms(t_captum.median),
            0.0,
            "0",
            f"{mib['captum']:.1f}",
            "1.00x",
            ratio(floor, t_captum.median),
        ],
        [
            f"floor: {s['steps']} × {s['new']} forward+backward passes",
            ms(floor),
            0.0,
            "-",
            "-",
            ratio(t_captum.median, floor),
            "1.00x",
        ],
    ]
    return Table(
        "llm_attribution",
        f"each of {s['new']} generated tokens attributed to a {p}-token prompt, "
        f"{s['steps']} IG steps, a {s['layers']}-layer d={s['d_model']} causal LM",
        [
            "implementation",
            "ms / call",
            "first call s",
            "max |Δ| vs Captum",
            "peak MiB",
            "speed-up vs Captum",
            "floor / time",
        ],
        rows,
        notes=[
            f"The same CausalLM in flax and torch (twin logits agree to {twin_diff:.1e}, "
            f"within 1e-5: {'yes' if twin_diff <= 1e-5 else 'NO'}; matrices within 1e-4: "
            f"{'yes' if diff <= 1e-4 else 'NO'}); "
            "greedy continuation; baseline: token id 0 on the prompt (Captum's TextTokenInput "
            "default), the generated tokens kept. Captum's matrix is (generated, prompt); "
            "gradjax's prompt columns are compared. Target: >= 3x, matrices within 1e-4.",
            "gradjax interpolates the whole sequence once per step (a causal model's "
            "prediction of token j reads only its prefix) and pulls that one linearisation "
            f"back along the {s['new']} log-probabilities (`jax.vmap` over one `jax.vjp`); "
            "Captum re-runs LayerIG on each prefix.",
            "peak MiB: resident-set growth during one warm call, each side in a fresh "
            "process with glibc unmapping large frees (`MALLOC_MMAP_THRESHOLD_=65536`), "
            "sampled every 0.5 ms; XLA temp is the compiled program's scratch size.",
            f"floor: {s['steps']} × {s['new']} forward+backward passes of the full sequence at "
            f"this machine's rate ({ms(t_pass):.3g} ms a pass, timed as a vmapped batch of "
            f"{s['steps']}). float32; torch.set_num_threads({TORCH_THREADS}).",
        ],
        data={
            "gradjax_s": timing.median,
            "captum_s": t_captum.median,
            "floor_s": floor,
            "pass_s": t_pass,
            "max_abs_diff": diff,
            "twin_logit_diff": twin_diff,
            "peak_rss_growth_mib": mib,
            "xla_temp_mib": temp_mib,
            "max_abs_attribution": float(np.max(np.abs(want))),
        },
    )


BENCHMARKS = {"ig_targets": ig_targets, "llm_attribution": llm_attribution}
