"""The contracts streamrec's models honour (in the spirit of implicit's RecommenderBase).

- `Artifact`: what the registry can store, any family: a name, one file, `save` and `load`.
- `RecommenderModel`: fit on an interaction matrix; recommend from a user's history. The batch
  baselines (popularity, item-kNN, EASE) and ALS honour it; the quality benchmark compares them
  through it.
- `FactorModel`: what the serving path calls. Serving never refits or re-reads a whole history
  per request: the worker folds each touched user into a vector when their events arrive (a
  partial fit), and a request scores that vector. `RecommenderModel.recommend(history)` cannot
  serve at that speed, which is why ALS needs more than the base contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from models.data import InteractionMatrix

#: (item ids, scores), best first.
Ranked = tuple[npt.NDArray[np.str_], npt.NDArray[np.float32]]


@runtime_checkable
class Artifact(Protocol):
    """Anything the model registry can store: one file named `artifact` in the version's
    directory, written without pickles (`.npz` with `allow_pickle=False`, or a torch
    `state_dict` read with `weights_only=True`)."""

    name: str
    artifact: ClassVar[str]

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


class RecommenderModel(ABC):
    """Fit on an interaction matrix; recommend from any user's history, known or new."""

    name: str
    artifact: ClassVar[str] = "model.npz"

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


class FactorModel(RecommenderModel):
    """A model served from per-user vectors kept current by the worker (see the module doc)."""

    item_ids: npt.NDArray[np.str_]

    @abstractmethod
    def user_vectors(self, histories: Sequence[Mapping[str, float]]) -> npt.NDArray[np.float32]:
        """One vector per history, against the fixed item factors (a partial fit)."""

    @abstractmethod
    def recommend_vector(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        exclude: Iterable[str] = (),
        allowed: Iterable[str] | None = None,
        recent: Sequence[str] = (),
        knn_weight: float | None = None,
        recent_decay: float | None = None,
        sequence: tuple[npt.NDArray[np.float32], float] | None = None,
    ) -> Ranked:
        """Top-k items for a user vector, skipping ``exclude``, among ``allowed`` if given;
        ``sequence`` (scores in `item_ids` order, weight) blends in the sequential family;
        ``recent`` (newest first) for models that blend in what the user did last."""

    @abstractmethod
    def item_vectors(self, item_ids: Iterable[str]) -> dict[str, npt.NDArray[np.float32]]:
        """Unit-length vectors of the items the model knows (for explanations)."""


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
