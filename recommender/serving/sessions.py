"""Recommendations for a visitor with no user id, from the items they just viewed.

The served sequential model reads the session's items in order; the neighbours of those items
(the CF model's item-to-item rows, newest weighing most) are blended with it, each scaled to a
maximum of 1, as a user's list blends them. Nothing about the session is stored. What the models
cannot fill (no item they know, or a category filter that leaves too few) is filled with popular
items, of the category when one was asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from recommender.cf.served import ServedALS
from recommender.serving import reasons
from recommender.serving.cards import Cards, Item, ids_of
from recommender.serving.config import ServingConfig
from recommender.serving.lists import ItemLists
from recommender.serving.sequence import SequenceScores
from recommender.store.features import FeatureStore
from recommender.types import ScoredItem


class SessionRecommender:
    def __init__(
        self,
        store: FeatureStore,
        served: ServedALS,
        sequence: SequenceScores,
        cards: Cards,
        config: ServingConfig,
        lists: ItemLists,
    ) -> None:
        self._store = store
        self._lists = lists
        self._served = served
        self._sequence = sequence
        self._cards = cards
        self._config = config

    async def recommend(
        self,
        viewed: Sequence[str],
        k: int,
        exclude: Iterable[str] = (),
        category: str | None = None,
    ) -> tuple[list[ScoredItem], str | None]:
        """Top-k items for a session that viewed ``viewed`` (oldest first), leaving out what
        it viewed and ``exclude``; the served CF version, if any."""
        served, model = await self._served.current()
        recent = list(dict.fromkeys(reversed(viewed)))  # newest first, each item once
        excluded = set(recent) | set(exclude)
        allowed = await self._store.catalogue.items_in(category) if category is not None else None
        items: list[Item] = []
        if model is not None:
            c = self._config
            sequence = self._sequence.scores(await self._sequence.model(), model, recent)
            # No user vector: the factor score is zero, so the list is the recent items'
            # neighbours and the sequence's scores alone.
            ids, scores = model.recommend_vector(
                np.zeros(model.item_factors.shape[1], dtype=np.float32),
                k,
                excluded,
                allowed,
                recent[: c.recent_items],
                1.0,
                c.recent_decay,
                sequence,
            )
            # Without the sequence, an item no viewed item neighbours scores 0: popularity
            # orders those better.
            items = [
                (str(i), float(s), reasons.SESSION)
                for i, s in zip(ids, scores, strict=True)
                if sequence is not None or s > 0
            ]
        items += await self._lists.fill(k - len(items), excluded | ids_of(items), category)
        return await self._cards.scored(items), served.version if served else None
