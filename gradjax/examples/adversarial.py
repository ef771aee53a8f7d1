"""Adversarial training on scikit-learn digits: standard, FGSM-, PGD- and TRADES-trained MLPs,
and their accuracy under L∞ PGD attacks with restarts.

Shared by the tour, ``colab/05_regularization.ipynb`` and ``benchmarks/regularizers.py``.
Inputs are the 8×8 digits scaled to [0, 1]; every attack keeps x + δ in [0, 1]. The split
is fixed (497 test images, 1300 training images); ``seed`` changes only the initialisation
and the minibatch order. Run ``python -m gradjax.examples.adversarial`` for one seed.

The attacks pass a whole batch as ``x`` with the batch-mean cross-entropy: with
``norm="linf"`` the step sign(∇) is elementwise, so each image gets exactly its own attack.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax import regularizers as reg
from gradjax.datasets import load_digits
from gradjax.models import MLP, fit

from ._classify import accuracy, cross_entropy

METHODS = ("standard", "fgsm", "pgd", "trades")
LABELS = {
    "standard": "standard",
    "fgsm": "FGSM-trained",
    "pgd": "PGD-trained (10 steps)",
    "trades": "TRADES (β=6)",
}
SHORT = {"standard": "standard", "fgsm": "FGSM", "pgd": "PGD", "trades": "TRADES"}
EPSILON = 0.1  # L∞ radius of training and of the headline attacks, on [0, 1] pixels
BOUNDS = (0.0, 1.0)
MODEL = MLP((256, 256, 10))


class Digits(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits(num_test: int = 497) -> Digits:
    """The fixed split of scikit-learn's digits, pixels in [0, 1], images flattened to 64."""
    x, y = load_digits()
    order = np.random.RandomState(0).permutation(len(y))
    test, train = order[:num_test], order[num_test:]
    return Digits(x[train], y[train], x[test], y[test])


def _xent_at(params, y):
    return lambda z: cross_entropy(MODEL.apply(params, z), y)


def training_loss(method: str, *, epsilon: float = EPSILON, beta: float = 6.0):
    """``loss_fn(params, (x, y), key)`` for one of :data:`METHODS`.

    "fgsm" and "pgd" train on the loss at the attacked point only (Madry et al.): FGSM is
    one step of size ε from δ = 0, PGD 10 steps of 2.5ε/10 from a uniform start; "trades"
    adds β·KL(f(x) ‖ f(x + δ)) to the clean loss, δ found by PGD on that KL (10 steps).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def loss_fn(params, batch, key):
        x, y = batch
        loss_at = _xent_at(params, y)
        if method == "standard":
            return loss_at(x)
        if method == "trades":
            keys = jax.random.split(key, x.shape[0])
            kl = jax.vmap(
                lambda k, xi: reg.trades_loss(
                    k, lambda z: MODEL.apply(params, z), xi, epsilon=epsilon, bounds=BOUNDS
                )
            )(keys, x)
            return loss_at(x) + beta * jnp.mean(kl)
        one_step = {"num_steps": 1, "step_size": epsilon, "random_start": False}
        options = one_step if method == "fgsm" else {"num_steps": 10}
        delta = reg.pgd_perturbation(key, loss_at, x, epsilon=epsilon, bounds=BOUNDS, **options)
        return loss_at(x + delta)

    return loss_fn


def train(seed: int, data: Digits, method: str, *, steps: int = 2000, progress: bool = False):
    """MLP(256, 256, 10) parameters trained with ``method``; Adam(1e-3), batch 128."""
    init_key, fit_key = jax.random.split(jax.random.key(seed))
    params = MODEL.init(init_key, data.x_train[:1])
    result = fit(
        fit_key,
        training_loss(method),
        params,
        (data.x_train, data.y_train),
        optimizer=optax.adam(1e-3),
        steps=steps,
        batch_size=128,
        progress=progress,
    )
    return result.params


@functools.partial(jax.jit, static_argnames=("num_steps", "restarts", "random_start"))
def attack(params, x, y, key, *, epsilon, num_steps, restarts=1, random_start=True):
    """The worst of ``restarts`` L∞ PGD runs (step ε/4) per image, inside [0, 1].

    Each image keeps the first restart that fools the model (the last one if none does).
    """

    def one(carry, k):
        worst, fooled = carry
        delta = reg.pgd_perturbation(
            k, _xent_at(params, y), x, epsilon=epsilon, num_steps=num_steps,
            step_size=epsilon / 4, random_start=random_start, bounds=BOUNDS,
        )  # fmt: skip
        adv = x + delta
        wrong = jnp.argmax(MODEL.apply(params, adv), -1) != y
        worst = jnp.where(fooled[:, None], worst, adv)  # until fooled, the latest run
        return (worst, fooled | wrong), None

    start = (x, jnp.zeros(y.shape, bool))
    (worst, _), _ = jax.lax.scan(one, start, jax.random.split(key, restarts))
    return worst


@jax.jit
def fgsm(params, x, y, epsilon):
    """x + ε·sign(∇ₓ loss), clipped into [0, 1]: one PGD step of size ε from 0."""
    delta = reg.pgd_perturbation(
        jax.random.key(0), _xent_at(params, y), x, epsilon=epsilon, num_steps=1,
        step_size=epsilon, random_start=False, bounds=BOUNDS,
    )  # fmt: skip
    return x + delta


def evaluate(
    params, data: Digits, key: jax.Array, *, epsilon: float = EPSILON, long_steps: int = 100,
    restarts: int = 5,
) -> dict[str, float]:  # fmt: skip
    """Test accuracy: clean, under FGSM, PGD-20 (1 start) and PGD-``long_steps``×``restarts``."""
    x, y = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    k20, k_long = jax.random.split(key)

    def acc(z):
        return accuracy(MODEL.apply(params, z), y)

    return {
        "clean": acc(x),
        "fgsm": acc(fgsm(params, x, y, epsilon)),
        "pgd20": acc(attack(params, x, y, k20, epsilon=epsilon, num_steps=20)),
        "pgd_long": acc(
            attack(params, x, y, k_long, epsilon=epsilon, num_steps=long_steps, restarts=restarts)
        ),
    }


def accuracy_vs_epsilon(params, data: Digits, key: jax.Array, epsilons) -> np.ndarray:
    """PGD-20 test accuracy (one random start) at each ε."""
    x, y = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    return np.array(
        [
            accuracy(MODEL.apply(params, attack(params, x, y, key, epsilon=e, num_steps=20)), y)
            for e in epsilons
        ]
    )


# ----------------------------------------------------------------------------- plots


def plot_accuracy_vs_epsilon(ax, epsilons, curves: dict[str, np.ndarray]) -> None:
    """One line per method: mean PGD-20 accuracy vs ε, a band of ± one std over seeds."""
    for i, (method, accs) in enumerate(curves.items()):
        accs = 100 * np.atleast_2d(accs)
        mean, std = accs.mean(0), accs.std(0, ddof=1) if len(accs) > 1 else 0 * accs[0]
        ax.plot(epsilons, mean, "o-", color=f"C{i}", label=LABELS[method], markersize=3)
        ax.fill_between(epsilons, mean - std, mean + std, color=f"C{i}", alpha=0.2)
    ax.axvline(EPSILON, color="grey", ls=":", lw=1)
    ax.set(xlabel="L∞ radius ε (pixels in [0, 1])", ylabel="test accuracy under PGD-20 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)


def plot_examples(axes, rows: dict[str, tuple[np.ndarray, np.ndarray]], labels) -> None:
    """Rows of 8×8 digits titled by the prediction (red when wrong): ``{name: (x, pred)}``."""
    for row, (name, (xs, preds)) in zip(axes, rows.items(), strict=True):
        for ax, x, p, y in zip(row, xs, preds, labels, strict=True):
            ax.imshow(np.asarray(x).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(str(int(p)), fontsize=8, color="black" if p == y else "red", pad=2)
        row[0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")


def figure(epsilons, curves: dict, params_by_method: dict, data: Digits, key, *, size=(12, 4.8)):
    """Accuracy vs ε on the left, test digits and their PGD-20 versions on the right."""
    import matplotlib.pyplot as plt

    rows, labels = adversarial_examples(params_by_method, data, key)
    fig = plt.figure(figsize=size)
    grid = fig.add_gridspec(len(rows), 10, width_ratios=[7, 1.2] + [1] * 8, wspace=0.1)
    plot_accuracy_vs_epsilon(fig.add_subplot(grid[:, 0]), epsilons, curves)
    axes = [[fig.add_subplot(grid[r, 2 + c]) for c in range(8)] for r in range(len(rows))]
    plot_examples(axes, rows, labels)
    return fig


def adversarial_examples(params_by_method: dict, data: Digits, key, *, num: int = 8):
    """Test digits and their PGD-20 versions against each model, with the predictions.

    Returns ``(rows, labels)``: rows ``{name: (images, predicted labels)}``, true labels.
    """
    x, y = jnp.asarray(data.x_test[:num]), jnp.asarray(data.y_test[:num])
    rows = {"original": (x, jnp.argmax(MODEL.apply(params_by_method["standard"], x), -1))}
    for method, params in params_by_method.items():
        adv = attack(params, x, y, key, epsilon=EPSILON, num_steps=20)
        rows[f"vs {SHORT[method]}"] = (adv, jnp.argmax(MODEL.apply(params, adv), -1))
    return rows, np.asarray(y)


if __name__ == "__main__":
    split = digits()
    for name in METHODS:
        params = train(0, split, name, progress=True)
        print(name, evaluate(params, split, jax.random.key(1)))
