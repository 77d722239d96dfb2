"""The text model: an item's categories from its title and text, several per item.

A CNN over the characters of the text (filters 2 to 5 characters wide, max-pooled: titles are
short, and character n-grams carry most of what a title says about a genre) beside a wide layer
over hashed words, word pairs and character 2- to 4-grams. Measured on MovieLens titles alone, a
TF-IDF logistic regression on those n-grams beat a word-level CNN (0.564 against 0.534 P@1,
`shared/notes/content-data.md`); the wide half gives the network what the regression sees, the
CNN what it adds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from models.classifier import ContentClassifier, GrowingHead, WideBag
from models.features import bag, char_ids, normalise


class _TextNet(nn.Module):
    def __init__(self, chars: int, labels: int, config: dict[str, Any]) -> None:
        super().__init__()
        dim, filters = int(config["char_dim"]), int(config["filters"])
        self.embedding = nn.Embedding(chars, dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, w) for w in config["widths"])
        self.dropout = nn.Dropout(float(config["dropout"]))
        self.head = GrowingHead(filters * len(self.convs), labels)
        self.wide = WideBag(int(config["buckets"]), labels)

    def forward(
        self, chars: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embedding(chars).transpose(1, 2)  # [n, dim, length]
        pooled = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
        features = torch.cat(pooled, dim=1)
        logits = self.head(self.dropout(features)) + self.wide(ids, offsets)
        return logits, features


class TextClassifier(ContentClassifier):
    """Multi-label categories of an item from `item_text(title, text)`."""

    name = "text"
    kind: ClassVar[str] = "multi"
    defaults: ClassVar[dict[str, Any]] = {
        "char_dim": 32,
        "filters": 64,
        "widths": [2, 3, 4, 5],
        "max_chars": 160,
        "dropout": 0.5,
        "buckets": 1 << 18,
        "char_ngrams": [2, 3, 4],
        "lr": 2e-3,
        "wide_lr": 1e-2,
    }

    def __init__(self, seed: int = 0, **config: Any) -> None:
        super().__init__(seed, **config)
        self.alphabet: list[str] = []

    def prepare(self, inputs: Sequence[Any]) -> None:
        counts = Counter(ch for text in inputs for ch in normalise(str(text)))
        self.alphabet = ["<pad>", "<unk>", *sorted(ch for ch, c in counts.items() if c >= 2)]

    def build(self) -> nn.Module:
        return _TextNet(len(self.alphabet), len(self.labels), self.config)

    def encode(self, inputs: Sequence[Any]) -> tuple[torch.Tensor, ...]:
        texts = [str(t) for t in inputs]
        index = {ch: i for i, ch in enumerate(self.alphabet)}
        ids, offsets = bag(texts, int(self.config["buckets"]), 2, tuple(self.config["char_ngrams"]))
        return (
            torch.from_numpy(char_ids(texts, index, int(self.config["max_chars"]))),
            torch.from_numpy(ids),
            torch.from_numpy(offsets),
        )

    def extras(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet}

    def restore(self, extras: dict[str, Any]) -> None:
        self.alphabet = list(extras["alphabet"])
