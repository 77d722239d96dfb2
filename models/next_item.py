"""The sequential family as the trainer's `Learner` drives a classifier, and its artifact.

An example is one event of a user: the items they touched before it (``x``, oldest first) and the
event's item (``y``): predicting the next item is a classification over the catalogue, so the
stream's test-then-train, replay buffer, holdout and quality gate are the content families' own
(`recommender.content.learning`), with next-item accuracy as the metric. The label set is the
model's vocabulary, which grows as new items arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt

from models.sequential import SequentialModel


class NextItemClassifier:
    """A `SequentialModel` behind the classifier contract; `model` is what serving scores."""

    name = "sequential"
    artifact: ClassVar[str] = SequentialModel.artifact
    kind: ClassVar[str] = "single"

    def __init__(self, model: SequentialModel | None = None) -> None:
        self.model = model or SequentialModel()
        self.trained_examples = 0

    @property
    def labels(self) -> list[str]:
        return [str(i) for i in self.model.item_ids]

    @staticmethod
    def _windows(inputs: Sequence[Sequence[str]], targets: Sequence[str]) -> list[list[str]]:
        return [[*x, str(y)] for x, y in zip(inputs, targets, strict=True)]

    def fit(
        self,
        inputs: Sequence[Sequence[str]],
        targets: Sequence[str],
        epochs: int = 5,
        batch_size: int = 64,
    ) -> None:
        """Train from scratch on the examples, ``epochs`` passes."""
        self.model.fit(self._windows(inputs, targets), epochs)
        self.trained_examples = len(inputs)

    def update(self, inputs: Sequence[Sequence[str]], targets: Sequence[str]) -> float:
        """One step on a micro-batch; items never seen join the vocabulary."""
        self.trained_examples += len(inputs)
        return self.model.partial_fit(self._windows(inputs, targets), last_only=True)

    def predict_proba(
        self, inputs: Sequence[Sequence[str]], chunk: int = 256
    ) -> npt.NDArray[np.float32]:
        """[n, len(labels)]: a softmax over the catalogue from each user's items before."""
        out = np.zeros((len(inputs), len(self.model.item_ids)), dtype=np.float32)
        index = np.arange(1, len(self.model.item_ids) + 1)  # its own order: no floor column
        for start in range(0, len(inputs), chunk):
            part = inputs[start : start + chunk]
            states = self.model.encode([list(reversed(x)) for x in part])
            logits = self.model.aligned_batch(states, index)
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            out[start : start + len(part)] = probs / probs.sum(axis=1, keepdims=True)
        return out

    def save(self, path: Path) -> None:
        self.model.save(path)

    @classmethod
    def load(cls, path: Path) -> Self:
        return cls(SequentialModel.load(path))
