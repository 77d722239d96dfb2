"""Alternating least squares (implicit), incremental for users: the streaming CF model.

Serving never needs the training users' factors: a user's vector is recomputed from their full
history in one least-squares solve (`user_vectors`), which is what `partial_fit_users` does inside
implicit. So the artifact holds item factors only, and user vectors live in the feature store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from implicit.cpu.als import AlternatingLeastSquares
from scipy.sparse import csr_matrix

from models.base import Ranked, RecommenderModel, top_k
from models.data import InteractionMatrix
from models.errors import ModelFitError


class ALSModel(RecommenderModel):
    """Implicit-feedback ALS with string ids, fold-in for new users, and `.npz` artifacts."""

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 2.0,
        random_state: int = 42,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.random_state = random_state
        self._als = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            iterations=iterations,
            alpha=alpha,
            random_state=random_state,
            num_threads=num_threads,
            calculate_training_loss=False,
        )
        self.item_ids: npt.NDArray[np.str_] = np.asarray([], dtype=np.str_)
        self._index: dict[str, int] = {}
        self._norms: npt.NDArray[np.float32] = np.zeros((0,), dtype=np.float32)

    @property
    def item_factors(self) -> npt.NDArray[np.float32]:
        return np.asarray(self._als.item_factors, dtype=np.float32)

    def _set_items(self, item_ids: npt.NDArray[np.str_], item_factors: np.ndarray) -> None:
        self.item_ids = item_ids
        self._index = {str(item): i for i, item in enumerate(item_ids)}
        self._als.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        # implicit checks user_factors in places; serving never reads them.
        self._als.user_factors = np.zeros((0, item_factors.shape[1]), dtype=np.float32)
        self._norms = np.linalg.norm(self._als.item_factors, axis=1) + 1e-9

    def fit(self, data: InteractionMatrix) -> None:
        self._als.fit(data.matrix, show_progress=False)
        factors = np.asarray(self._als.item_factors)
        if not np.isfinite(factors).all() or not np.isfinite(self._als.user_factors).all():
            raise ModelFitError(
                "ALS produced NaN or infinite factors; lower alpha or raise regularization"
            )
        self._set_items(data.item_ids, factors)

    def _history_rows(self, histories: Sequence[Mapping[str, float]]) -> csr_matrix:
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for h in histories:
            for item, weight in h.items():
                i = self._index.get(item)
                if i is not None:  # items newer than the model wait for the next refit
                    indices.append(i)
                    data.append(weight)
            indptr.append(len(indices))
        return csr_matrix(
            (np.asarray(data, dtype=np.float32), indices, indptr),
            shape=(len(histories), len(self.item_ids)),
        )

    @classmethod
    def from_factors(
        cls, item_ids: npt.NDArray[np.str_], item_factors: np.ndarray, **params: Any
    ) -> Self:
        model = cls(**params)
        model._set_items(item_ids, item_factors)
        return model

    def user_vectors(self, histories: Sequence[Mapping[str, float]]) -> npt.NDArray[np.float32]:
        """One least-squares solve per user against the fixed item factors (a partial fit)."""
        if not histories:
            return np.zeros((0, self.factors), dtype=np.float32)
        rows = self._history_rows(histories)
        vecs = self._als.recalculate_user(np.arange(len(histories)), rows)
        return np.atleast_2d(np.asarray(vecs, dtype=np.float32))

    def recommend_vector(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        exclude: Iterable[str] = (),
        allowed: Iterable[str] | None = None,
    ) -> Ranked:
        """Top-k items for a user vector, skipping ``exclude``, among ``allowed`` if given."""
        scores = self.item_factors @ vector.astype(np.float32)
        if allowed is not None:
            keep = [self._index[i] for i in allowed if i in self._index]
            masked = np.full_like(scores, -np.inf)
            masked[keep] = scores[keep]
            scores = masked
        excl = (self._index[i] for i in exclude if i in self._index)
        return top_k(self.item_ids, scores, k, excl)

    def item_vectors(self, item_ids: Iterable[str]) -> dict[str, npt.NDArray[np.float32]]:
        """Unit-length factors of the items the model knows (for explanations)."""
        f = self.item_factors
        return {
            i: f[self._index[i]] / self._norms[self._index[i]] for i in item_ids if i in self._index
        }

    def recommend(
        self, history: Mapping[str, float], k: int, exclude: Iterable[str] = ()
    ) -> Ranked:
        vec = self.user_vectors([history])[0]
        return self.recommend_vector(vec, k, set(exclude) | set(history))

    def similar_items(self, item_id: str, k: int) -> Ranked:
        i = self._index.get(item_id)
        if i is None:
            return np.asarray([], dtype=np.str_), np.asarray([], dtype=np.float32)
        f = self.item_factors
        scores = (f @ f[i]) / (self._norms * self._norms[i])
        return top_k(self.item_ids, scores.astype(np.float32), k, [i])

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(
                fh,
                item_ids=self.item_ids,
                item_factors=self.item_factors,
                params=np.asarray(
                    [
                        self.factors,
                        self.regularization,
                        self.iterations,
                        self.alpha,
                        self.random_state,
                    ],
                    dtype=np.float64,
                ),
            )

    @classmethod
    def load(cls, path: Path) -> Self:
        with np.load(path, allow_pickle=False) as npz:
            factors, reg, iters, alpha, seed = npz["params"].tolist()
            model = cls(int(factors), reg, int(iters), alpha, int(seed))
            model._set_items(npz["item_ids"], npz["item_factors"])
        return model


def fit_als(
    data: InteractionMatrix, **params: Any
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Fit ALS and fold in every user of ``data``: (item ids, item factors, user vectors).

    Module-level and returning plain arrays, so a process pool can run it: a full fit then never
    competes with ingestion for the worker's GIL.
    """
    model = ALSModel(**params)
    model.fit(data)
    users = np.arange(data.matrix.shape[0])
    vectors = np.atleast_2d(
        np.asarray(model._als.recalculate_user(users, data.matrix), dtype=np.float32)
    )
    return model.item_ids, model.item_factors, vectors
