"""The contract every streamrec model honours (in the spirit of implicit's RecommenderBase)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt

from models.data import InteractionMatrix

#: (item ids, scores), best first.
Ranked = tuple[npt.NDArray[np.str_], npt.NDArray[np.float32]]


class RecommenderModel(ABC):
    """Fit on an interaction matrix; recommend from any user's history, known or new."""

    name: str

    @abstractmethod
    def fit(self, data: InteractionMatrix) -> None:
        """Fit from scratch."""

    @abstractmethod
    def recommend(
        self,
        history: Mapping[str, float],
        k: int,
        exclude: Iterable[str] = (),
        recent: Sequence[str] = (),
    ) -> Ranked:
        """Top-k items for a user whose interactions are ``history`` (item -> weight);
        ``recent`` is their latest items, newest first, for models that use order."""

    @abstractmethod
    def similar_items(self, item_id: str, k: int) -> Ranked:
        """The k items most like ``item_id`` (the item itself excluded)."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the model as one `.npz` file (no pickles)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by `save`."""


def top_k(
    item_ids: npt.NDArray[np.str_],
    scores: npt.NDArray[np.float32],
    k: int,
    exclude_idx: Iterable[int] = (),
) -> Ranked:
    """Best k of a dense score vector, with the excluded positions masked out."""
    scores = scores.astype(np.float32, copy=True)
    excl = np.fromiter(exclude_idx, dtype=np.int64)
    if excl.size:
        scores[excl] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.asarray([], dtype=np.str_), np.asarray([], dtype=np.float32)
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return item_ids[order], scores[order]
