"""Regularisers on real data: semi-supervised digits with VAT; Chinese sentiment with
FGM, a gradient penalty and input noise on the character embeddings.

Shared by the tour, the notebook and ``benchmarks/regularizers.py``. Splits are fixed;
``seed`` changes only the initialisation and the minibatch order.
Run ``python -m gradjax.examples.regularization`` for a one-seed comparison.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax import regularizers as reg
from gradjax.datasets import load_digits
from gradjax.models import MLP, CharCNN, fit

from ._classify import accuracy, cross_entropy
from .sentiment import TextData, sentiment_data, train_charcnn

# ----------------------------------------------------------------------------- noise ≈ penalty


def noise_versus_penalty(
    key: jax.Array, fun, x: jax.Array, stdevs, *, num_samples: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo E‖fun(x + σε) − fun(x)‖² and its second-order prediction σ²‖∂fun/∂x‖²_F.

    The two agree as σ → 0 (exactly for linear fun): input noise is a Jacobian penalty.
    """
    y = fun(x)

    @jax.jit
    def measured(stdev):
        return reg.noisy_loss(
            key, lambda z: jnp.sum((fun(z) - y) ** 2), x, stdev=stdev, num_samples=num_samples
        )

    penalty = reg.jacobian_penalty(None, fun, x)
    stdevs = np.asarray(stdevs, np.float32)
    return np.array([float(measured(s)) for s in stdevs]), stdevs**2 * float(penalty)


# ----------------------------------------------------------------------------- digits + VAT


class DigitsSplit(NamedTuple):
    """scikit-learn digits: 10 labelled examples per class, the rest unlabelled, a test split."""

    x_labelled: np.ndarray
    y_labelled: np.ndarray
    x_unlabelled: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_split(num_labelled_per_class: int = 10, num_test: int = 497) -> DigitsSplit:
    x, y = load_digits()
    order = np.random.RandomState(0).permutation(len(y))
    test, train = order[:num_test], order[num_test:]
    labelled = np.concatenate([train[y[train] == c][:num_labelled_per_class] for c in range(10)])
    unlabelled = np.setdiff1d(train, labelled)
    return DigitsSplit(x[labelled], y[labelled], x[unlabelled], x[test], y[test])


def train_digits(
    seed: int,
    split: DigitsSplit,
    *,
    vat: bool,
    steps: int = 1000,
    epsilon: float = 1.0,
    xi: float = 1e-2,
    vat_weight: float = 1.0,
    batch_size: int = 128,
    progress: bool = True,
    return_params: bool = False,
):
    """Test accuracy of an MLP(128, 10) trained on the labelled digits (+ VAT on the rest).

    With ``return_params`` it returns ``(accuracy, params)``.
    """
    model = MLP((128, 10))
    init_key, fit_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, split.x_labelled[:1])
    x_l, y_l = jnp.asarray(split.x_labelled), jnp.asarray(split.y_labelled)

    def logits_fn(params):
        return lambda x: model.apply(params, x)

    def loss_fn(params, batch, key):
        loss = cross_entropy(model.apply(params, x_l), y_l)
        if vat:
            (x_u,) = batch
            keys = jax.random.split(key, x_u.shape[0])
            per_example = jax.vmap(
                lambda k, x: reg.vat_loss(k, logits_fn(params), x, epsilon=epsilon, xi=xi)
            )
            loss = loss + vat_weight * jnp.mean(per_example(keys, x_u))
        return loss

    result = fit(
        fit_key,
        loss_fn,
        params,
        (split.x_unlabelled,),
        optimizer=optax.adam(1e-3),
        steps=steps,
        batch_size=batch_size,
        progress=progress,
    )
    acc = accuracy(model.apply(result.params, split.x_test), split.y_test)
    return (acc, result.params) if return_params else acc


# ----------------------------------------------------------------------------- sentiment

METHODS = ("baseline", "fgm", "fgm_per_sentence", "gradient_penalty", "noise")


def sentiment_model(data: TextData) -> CharCNN:
    return CharCNN(data.vocab_size, embed_dim=32, channels=64)


def sentiment_loss(
    model: CharCNN,
    method: str,
    *,
    epsilon: float = 0.5,
    penalty_weight: float = 0.5,
    stdev: float = 0.1,
):
    """``loss_fn(params, (ids, mask, labels), key)`` for one of :data:`METHODS`.

    The perturbations act on the minibatch's embeddings (B, L, E) with the padding
    mask, as in Su's Keras code: "fgm" trains on the loss at x + ε·g/‖g‖ with one
    norm over the whole minibatch; "fgm_per_sentence" normalises each sentence's
    perturbation separately (``vmap``), so the same ε is a much larger perturbation;
    "gradient_penalty" adds ``penalty_weight``·‖∇_emb l‖² (l the minibatch mean);
    "noise" trains on the loss at x + σε.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def loss_fn(params, batch, key):
        ids, mask, labels = batch
        emb = model.apply(params, ids, method=CharCNN.embed)

        def loss_at(e, m=mask, y=labels):
            return cross_entropy(model.apply(params, e, m, method=CharCNN.classify), y)

        if method == "fgm":
            return reg.adversarial_loss(loss_at, emb, epsilon=epsilon, mask=mask)
        if method == "fgm_per_sentence":

            def one(e, m, y):
                return reg.adversarial_loss(
                    lambda u: loss_at(u[None], m[None], y[None]), e, epsilon=epsilon, mask=m
                )

            return jnp.mean(jax.vmap(one)(emb, mask, labels))
        if method == "gradient_penalty":
            return loss_at(emb) + penalty_weight * reg.gradient_penalty(loss_at, emb)
        if method == "noise":
            return reg.noisy_loss(key, loss_at, emb, stdev=stdev, mask=mask)
        return loss_at(emb)

    return loss_fn


def train_sentiment(
    seed: int,
    data: TextData,
    method: str,
    *,
    steps: int = 600,
    batch_size: int = 64,
    progress: bool = True,
    **options,
) -> float:
    """Test accuracy of the CharCNN trained with ``method`` (see :func:`sentiment_loss`)."""
    init_key, fit_key = jax.random.split(jax.random.key(seed))
    model = sentiment_model(data)
    loss_fn = sentiment_loss(model, method, **options)
    _, acc = train_charcnn(
        init_key,
        fit_key,
        model,
        data,
        loss_fn,
        steps=steps,
        batch_size=batch_size,
        progress=progress,
    )
    return acc


if __name__ == "__main__":
    split = digits_split()
    for use_vat in (False, True):
        print(f"digits, 100 labels, VAT={use_vat}: {train_digits(0, split, vat=use_vat):.3f}")
    text = sentiment_data()
    for name in METHODS:
        print(f"sentiment, {name}: {train_sentiment(0, text, name):.3f}")
