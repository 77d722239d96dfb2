"""The serving chain with the sequential family blended in, as one ranker: what offline
evaluation scores (`streamrec bench quality`'s blended rows), the same arithmetic as the API's
(`ALSModel.recommend_vector` with a ``sequence``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from models.als import ALSModel
from models.base import Ranked
from models.sequential import SequentialModel


class ChainWithSequence:
    """The serving chain (ALS blended with the neighbours of the ``recent_n`` latest items) with
    the sequential family's scores blended in; both models are fitted and stay as they are."""

    def __init__(
        self, chain: ALSModel, sequential: SequentialModel, weight: float, recent_n: int
    ) -> None:
        self.chain, self.sequential = chain, sequential
        self.weight, self.recent_n = weight, recent_n
        self._index = sequential.index_of(chain.item_ids)  # one alignment for every list

    def recommend(
        self,
        history: Mapping[str, float],
        k: int,
        exclude: Iterable[str] = (),
        recent: Sequence[str] = (),
    ) -> Ranked:
        vector = self.chain.user_vectors([history])[0]
        state = self.sequential.encode([recent])[0]
        sequence = (self.sequential.aligned_scores(state, self._index), self.weight)
        skip = set(exclude) | set(history)
        return self.chain.recommend_vector(
            vector, k, skip, recent=recent[: self.recent_n], sequence=sequence
        )
