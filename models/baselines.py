"""Batch baselines behind the same contract as ALS: popularity, item-kNN (cosine) and EASE.

EASE (Steck, 2019) is a closed-form item-item model: B = I - P / diag(P) with
P = (X^T X + lambda I)^-1, zero diagonal. Strong on MovieLens-sized catalogues; its cost is one
dense item x item inverse, so it is a baseline here, not a streaming model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix

from models.base import Ranked, RecommenderModel, top_k
from models.data import InteractionMatrix
from models.neighbours import item_neighbours, load_arrays, save_arrays


class _ItemScorer(RecommenderModel):
    """Shared plumbing: an item index, scoring a history, `.npz` persistence of one matrix."""

    def __init__(self) -> None:
        self.item_ids: npt.NDArray[np.str_] = np.asarray([], dtype=np.str_)
        self._index: dict[str, int] = {}
        self._weights: np.ndarray = np.zeros((0,), dtype=np.float32)

    def _set(self, item_ids: npt.NDArray[np.str_], weights: np.ndarray) -> None:
        self.item_ids = item_ids
        self._index = {str(i): n for n, i in enumerate(item_ids)}
        self._weights = weights.astype(np.float32)

    def _history_vector(self, history: Mapping[str, float]) -> np.ndarray:
        x = np.zeros(len(self.item_ids), dtype=np.float32)
        for item, w in history.items():
            i = self._index.get(item)
            if i is not None:
                x[i] = w
        return x

    def _scores(self, history: Mapping[str, float]) -> np.ndarray:
        scores: np.ndarray = self._history_vector(history) @ self._weights
        return scores

    def recommend(
        self,
        history: Mapping[str, float],
        k: int,
        exclude: Iterable[str] = (),
        recent: Sequence[str] = (),
    ) -> Ranked:
        excl = {self._index[i] for i in (*history, *exclude) if i in self._index}
        return top_k(self.item_ids, self._scores(history).astype(np.float32), k, excl)

    def similar_items(self, item_id: str, k: int) -> Ranked:
        i = self._index.get(item_id)
        if i is None or self._weights.ndim != 2:
            return np.asarray([], dtype=np.str_), np.asarray([], dtype=np.float32)
        return top_k(self.item_ids, self._weights[i].astype(np.float32), k, [i])

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(fh, item_ids=self.item_ids, weights=self._weights)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls()
        with np.load(path, allow_pickle=False) as npz:
            model._set(npz["item_ids"], npz["weights"])
        return model


class PopularityModel(_ItemScorer):
    """Most interacted-with items, the same for everyone."""

    name = "popularity"

    def fit(self, data: InteractionMatrix) -> None:
        counts = np.asarray((data.matrix > 0).sum(axis=0)).ravel()
        self._set(data.item_ids, counts.astype(np.float32))

    def _scores(self, history: Mapping[str, float]) -> np.ndarray:
        return self._weights


class ItemKNNModel(_ItemScorer):
    """Item-item cosine similarity on binary interactions, top `neighbours` kept per item
    (sparse: see `models.neighbours`)."""

    name = "item_knn"

    def __init__(self, neighbours: int = 100) -> None:
        super().__init__()
        self.neighbours = neighbours
        self._sim = csr_matrix((0, 0), dtype=np.float32)

    def fit(self, data: InteractionMatrix) -> None:
        self._sim = item_neighbours(data, self.neighbours)
        self._set(data.item_ids, np.zeros(0, dtype=np.float32))

    def _scores(self, history: Mapping[str, float]) -> np.ndarray:
        return np.asarray(self._sim.T @ self._history_vector(history)).ravel()

    def similar_items(self, item_id: str, k: int) -> Ranked:
        i = self._index.get(item_id)
        if i is None:
            return np.asarray([], dtype=np.str_), np.asarray([], dtype=np.float32)
        row = np.asarray(self._sim[i].toarray(), dtype=np.float32).ravel()
        return top_k(self.item_ids, row, k, [i])

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            arrays: dict[str, Any] = {"item_ids": self.item_ids, **save_arrays("sim", self._sim)}
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls()
        with np.load(path, allow_pickle=False) as npz:
            model._set(npz["item_ids"], np.zeros(0, dtype=np.float32))
            sim = load_arrays("sim", npz)
            if sim is not None:
                model._sim = sim
        return model


class EASEModel(_ItemScorer):
    """Embarrassingly Shallow Autoencoder: closed-form item-item weights."""

    name = "ease"

    def __init__(self, regularization: float = 500.0) -> None:
        super().__init__()
        self.regularization = regularization

    def fit(self, data: InteractionMatrix) -> None:
        x = (data.matrix > 0).astype(np.float64)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += self.regularization
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self._set(data.item_ids, b)
