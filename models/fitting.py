"""Fitting ALS where ingestion cannot feel it: a module-level function that a process pool runs,
returning plain arrays (`FittedALS`) that the worker turns back into a model."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix

from models.als import ALSModel
from models.content_map import ContentMap
from models.data import InteractionMatrix


def fit_als(data: InteractionMatrix, **params: Any) -> FittedALS:
    """Fit ALS (and item neighbours if ``neighbours`` > 0) and fold in every user of ``data``.

    Module-level and returning plain arrays, so a process pool can run it: a full fit then never
    competes with ingestion for the worker's GIL.
    """
    model = ALSModel(**params)
    model.fit(data)
    users = np.arange(data.matrix.shape[0])
    vectors = np.atleast_2d(
        np.asarray(model._als.recalculate_user(users, data.matrix), dtype=np.float32)
    )
    return FittedALS(
        model.item_ids, model.item_factors, vectors, model.item_neighbours, model.user_gramian
    )


class FittedALS(NamedTuple):
    item_ids: npt.NDArray[np.str_]
    item_factors: npt.NDArray[np.float32]
    user_vectors: npt.NDArray[np.float32]
    neighbours: csr_matrix | None
    user_gramian: npt.NDArray[np.float32] | None
    content_map: ContentMap | None = None

    def model(self, **params: Any) -> ALSModel:
        model = ALSModel.from_factors(
            self.item_ids, self.item_factors, self.neighbours, self.user_gramian, **params
        )
        model.content_map = self.content_map
        return model
