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

from models.base import FactorModel, Ranked, top_k
from models.content_map import ContentMap
from models.data import InteractionMatrix
from models.errors import ModelFitError
from models.neighbours import (
    blend,
    blend_sequence,
    item_neighbours,
    load_arrays,
    recent_scores,
    save_arrays,
)
from models.solvers import CG_MIN_ITEMS, conjugate_gradient


class ALSModel(FactorModel):
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
        neighbours: int = 0,
        knn_weight: float = 0.0,
        recent_decay: float = 0.95,
    ) -> None:
        """``neighbours`` > 0: `fit` also keeps each item's nearest items (cosine of interaction
        columns), and ``knn_weight`` blends them in from the user's recent items (see
        `recommend_vector`)."""
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.random_state = random_state
        self.neighbours = neighbours
        self.knn_weight = knn_weight
        self.recent_decay = recent_decay
        self.item_neighbours: csr_matrix | None = None
        #: U^T U over the users of the fit: what an item solve needs of the users not touching it.
        self.user_gramian: npt.NDArray[np.float32] | None = None
        #: Where a new item's content puts it in the item space (cold start), when fitted.
        self.content_map: ContentMap | None = None
        #: Items that have neighbour rows (those of the fit; items added since come after them).
        self.neighbour_rows: int | None = None
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
        if self.neighbours > 0:
            self.item_neighbours = item_neighbours(data, self.neighbours)
        users = np.asarray(self._als.user_factors, dtype=np.float32)
        self.user_gramian = users.T @ users

    def _history_rows(self, histories: Sequence[Mapping[str, float]]) -> csr_matrix:
        # Flattened once and filtered in numpy: the worker builds these rows for every user of
        # every batch (the per-entry loop was a quarter of the per-batch fold-in in a py-spy
        # profile of the worker; an ad-hoc timing of 20 users x 150 items: 0.9 -> 0.5 ms).
        get = self._index.get
        lengths = [len(h) for h in histories]
        indices = np.array([get(item, -1) for h in histories for item in h], dtype=np.int64)
        data = np.array([w for h in histories for w in h.values()], dtype=np.float32)
        # Items newer than the model wait for the next refit; no weight, no preference.
        keep = (indices >= 0) & (data > 0)
        rows = np.repeat(np.arange(len(histories)), lengths)[keep]
        indptr = np.zeros(len(histories) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(histories)), out=indptr[1:])
        return csr_matrix(
            (data[keep], indices[keep], indptr), shape=(len(histories), len(self.item_ids))
        )

    @classmethod
    def from_factors(
        cls,
        item_ids: npt.NDArray[np.str_],
        item_factors: np.ndarray,
        item_neighbours: csr_matrix | None = None,
        user_gramian: npt.NDArray[np.float32] | None = None,
        **params: Any,
    ) -> Self:
        model = cls(**params)
        model._set_items(item_ids, item_factors)
        model.item_neighbours = item_neighbours
        model.user_gramian = user_gramian
        return model

    def knows(self, item_id: str) -> bool:
        return item_id in self._index

    def partial_fit_items(
        self,
        user_vectors: Sequence[npt.NDArray[np.float32]],
        weights: Sequence[npt.NDArray[np.float32]],
    ) -> npt.NDArray[np.float32]:
        """Factors for items the model does not know yet, from the vectors of the users who
        touched each (and their weights for it), against fixed user factors: the item half of an
        ALS sweep. Without the fit's user Gramian (an older artifact), only those users count."""
        f = self.factors if not len(self.item_ids) else self.item_factors.shape[1]
        if not len(user_vectors):
            return np.zeros((0, f), dtype=np.float32)
        gram = self.user_gramian if self.user_gramian is not None else np.zeros((f, f))
        base = gram + self.regularization * np.eye(f)
        a = np.empty((len(user_vectors), f, f))
        b = np.empty((len(user_vectors), f))
        for n, (y, w) in enumerate(zip(user_vectors, weights, strict=True)):
            conf = 1.0 + self.alpha * np.asarray(w, dtype=np.float64)
            y64 = np.asarray(y, dtype=np.float64)
            a[n] = base + (y64.T * (conf - 1.0)) @ y64
            b[n] = y64.T @ conf
        # One batched solve for every item, not one call per item.
        return np.linalg.solve(a, b[..., None])[..., 0].astype(np.float32)

    def with_items(
        self, item_ids: Sequence[str], item_factors: npt.NDArray[np.float32]
    ) -> ALSModel:
        """A copy that also scores ``item_ids`` (new ones appended, known ones replaced); the
        new items have no neighbours until the next refit."""
        ids = list(self.item_ids)
        factors = self.item_factors.copy()
        fresh_ids, fresh_rows = [], []
        for item, row in zip(item_ids, item_factors, strict=True):
            i = self._index.get(item)
            if i is None:
                fresh_ids.append(item)
                fresh_rows.append(row)
            else:
                factors[i] = row
        if fresh_ids:
            ids += fresh_ids
            factors = np.vstack([factors, np.asarray(fresh_rows, dtype=np.float32)])
        neighbours = None
        if self.item_neighbours is not None:
            neighbours = self.item_neighbours.copy()
            neighbours.resize((len(ids), len(ids)))
        rows = self.neighbour_rows if self.neighbour_rows is not None else len(self.item_ids)
        model = ALSModel.from_factors(
            np.asarray(ids, dtype=np.str_),
            factors,
            neighbours,
            self.user_gramian,
            **self._params(),
        )
        model.content_map = self.content_map
        model.neighbour_rows = rows
        return model

    def _params(self) -> dict[str, Any]:
        names: tuple[str, ...] = ("factors", "regularization", "iterations", "alpha")
        names += ("random_state", "neighbours", "knn_weight", "recent_decay")
        return {name: getattr(self, name) for name in names}

    def user_vectors(self, histories: Sequence[Mapping[str, float]]) -> npt.NDArray[np.float32]:
        """One least-squares solve per user against the fixed item factors (a partial fit):
        implicit's exact solve, or conjugate gradient for histories of `CG_MIN_ITEMS` or more."""
        if not histories:
            return np.zeros((0, self.factors), dtype=np.float32)
        rows = self._history_rows(histories)
        lengths = np.diff(rows.indptr)
        long = np.flatnonzero(lengths >= CG_MIN_ITEMS)
        if not len(long):
            return self._exact(rows)
        out = np.empty((len(histories), self.factors), dtype=np.float32)
        short = np.flatnonzero(lengths < CG_MIN_ITEMS)
        if len(short):
            out[short] = self._exact(rows[short])
        factors = self._als.item_factors
        gram = self._als.YtY + self.regularization * np.eye(self.factors, dtype=np.float32)
        for u in long:
            start, end = rows.indptr[u], rows.indptr[u + 1]
            # The confidences implicit's solve uses: alpha times the weight.
            confidence = self.alpha * rows.data[start:end]
            out[u] = conjugate_gradient(factors[rows.indices[start:end]], confidence, gram)
        return out

    def _exact(self, rows: csr_matrix) -> npt.NDArray[np.float32]:
        vecs = self._als.recalculate_user(np.arange(rows.shape[0]), rows)
        return np.atleast_2d(np.asarray(vecs, dtype=np.float32))

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
        ``sequence``: the sequential family's scores in `item_ids` order and their weight.

        With item neighbours and a ``knn_weight`` (defaults: the model's), the score blends the
        factor score with the neighbours of the user's ``recent`` items (newest first, the r-th
        weighted ``recent_decay ** r``), each scaled to a maximum of 1: what the user did last
        says most about what they do next, which the factors, fitted on the whole history, blur.
        """
        scores = self.item_factors @ vector.astype(np.float32)
        weight = self.knn_weight if knn_weight is None else knn_weight
        if weight > 0 and recent and self.item_neighbours is not None:
            decay = self.recent_decay if recent_decay is None else recent_decay
            near = recent_scores(self.item_neighbours, self._index, recent, decay)
            if near is not None:
                scores = blend(scores, near, weight, self.neighbour_rows)
        if sequence is not None and sequence[1] > 0:
            scores = blend_sequence(scores, *sequence)
        if allowed is not None:
            keep = [self._index[i] for i in allowed if i in self._index]
            masked = np.full_like(scores, -np.inf)
            masked[keep] = scores[keep]
            scores = masked
        excl = (self._index[i] for i in exclude if i in self._index)
        return top_k(self.item_ids, scores.astype(np.float32), k, excl)

    def new_items_for(
        self,
        vector: npt.NDArray[np.float32],
        slots: int,
        within: int,
        exclude: Iterable[str] = (),
        allowed: Iterable[str] | None = None,
    ) -> Ranked:
        """Up to ``slots`` items newer than the fit (placed from their content, or folded in
        from their first users) that are among the ``within`` items closest to the user's taste
        (cosine, so that a new item's short history does not hold it back), closest first."""
        start = self.neighbour_rows if self.neighbour_rows is not None else len(self.item_ids)
        empty = (np.asarray([], dtype=np.str_), np.asarray([], dtype=np.float32))
        if slots <= 0 or start >= len(self.item_ids):
            return empty
        cos = (self.item_factors @ vector) / (self._norms * (np.linalg.norm(vector) + 1e-9))
        bar = np.partition(cos, -min(within, len(cos)))[-min(within, len(cos))]
        skip = set(exclude)
        keep = None if allowed is None else set(allowed)
        picks = [
            i
            for i in range(start, len(self.item_ids))
            if cos[i] >= bar
            and str(self.item_ids[i]) not in skip
            and (keep is None or str(self.item_ids[i]) in keep)
        ]
        picks = sorted(picks, key=lambda i: -cos[i])[:slots]
        return self.item_ids[picks], cos[picks].astype(np.float32)

    def item_vectors(self, item_ids: Iterable[str]) -> dict[str, npt.NDArray[np.float32]]:
        """Unit-length factors of the items the model knows (for explanations)."""
        f = self.item_factors
        return {
            i: f[self._index[i]] / self._norms[self._index[i]] for i in item_ids if i in self._index
        }

    def recommend(
        self,
        history: Mapping[str, float],
        k: int,
        exclude: Iterable[str] = (),
        recent: Sequence[str] = (),
    ) -> Ranked:
        vec = self.user_vectors([history])[0]
        return self.recommend_vector(vec, k, set(exclude) | set(history), recent=recent)

    def similar_items(self, item_id: str, k: int) -> Ranked:
        i = self._index.get(item_id)
        if i is None:
            return np.asarray([], dtype=np.str_), np.asarray([], dtype=np.float32)
        f = self.item_factors
        scores = (f @ f[i]) / (self._norms * self._norms[i])
        return top_k(self.item_ids, scores.astype(np.float32), k, [i])

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "item_ids": self.item_ids,
            "item_factors": self.item_factors,
            "params": np.asarray(
                [self.factors, self.regularization, self.iterations, self.alpha, self.random_state],
                dtype=np.float64,
            ),
        }
        if self.item_neighbours is not None:
            arrays.update(save_arrays("neighbours", self.item_neighbours))
        if self.user_gramian is not None:
            arrays["user_gramian"] = self.user_gramian
        if self.content_map is not None:
            arrays.update(self.content_map.arrays())
        with path.open("wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> Self:
        with np.load(path, allow_pickle=False) as npz:
            factors, reg, iters, alpha, seed = npz["params"].tolist()
            model = cls(int(factors), reg, int(iters), alpha, int(seed))
            model._set_items(npz["item_ids"], npz["item_factors"])
            model.item_neighbours = load_arrays("neighbours", npz)
            if "user_gramian" in npz:
                model.user_gramian = npz["user_gramian"]
            model.content_map = ContentMap.from_arrays(npz)
        return model
