"""The user x item confidence matrix every model is fitted on, with its id mappings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix


@dataclass(frozen=True)
class InteractionMatrix:
    """Rows are users, columns items, values summed confidence weights."""

    user_ids: npt.NDArray[np.str_]
    item_ids: npt.NDArray[np.str_]
    matrix: csr_matrix

    @classmethod
    def from_histories(
        cls, user_ids: Sequence[str], histories: Sequence[Mapping[str, float]]
    ) -> InteractionMatrix:
        """Build from each user's item -> weight map (items indexed in sorted order). Items with
        no positive weight (a negative review: seen, but no preference) are left out."""
        histories = [{i: w for i, w in h.items() if w > 0} for h in histories]
        items = sorted({item for h in histories for item in h})
        index = {item: i for i, item in enumerate(items)}
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for h in histories:
            for item, weight in h.items():
                indices.append(index[item])
                data.append(weight)
            indptr.append(len(indices))
        m = csr_matrix(
            (
                np.asarray(data, dtype=np.float32),
                np.asarray(indices, dtype=np.int32),
                np.asarray(indptr, dtype=np.int64),
            ),
            shape=(len(histories), len(items)),
        )
        m.sum_duplicates()
        return cls(np.asarray(user_ids, dtype=np.str_), np.asarray(items, dtype=np.str_), m)

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)
