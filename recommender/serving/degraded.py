"""Answers while Redis cannot be read: the popular items this process last saw.

A recommendations request reads the user's features and vector from Redis; while Redis is away
or refusing (a crash, a restart loading its AOF, a failover), the request would fail. Instead it
is answered from memory with the most popular items (refreshed every few seconds while Redis
answers), less what the caller excluded: a cold-start answer rather than an error, and nothing
personal in it. A process that never read them fails as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from recommender.serving import reasons
from recommender.serving.answers import Recommendations
from recommender.serving.cards import Cards
from recommender.store.faults import is_infrastructure_fault
from recommender.store.features import FeatureStore
from recommender.types import ScoredItem

log = logging.getLogger(__name__)

#: Popular items kept (the largest k a client may ask for is 1,000; most ask for 10).
KEPT = 200

Recommend = Callable[..., Awaitable[Recommendations]]


class PopularFallback:
    """The popular items, kept in memory for `recommend` to fall back on."""

    def __init__(self, store: FeatureStore, cards: Cards) -> None:
        self._store = store
        self._cards = cards
        self._items: list[ScoredItem] = []
        self.answered = 0  # requests answered from memory

    async def refresh(self) -> None:
        """Read the popular items again (a background task calls it while Redis answers)."""
        popular = await self._store.popularity.popular(KEPT)
        self._items = await self._cards.scored([(i, s, reasons.POPULAR) for i, s in popular])

    async def recommend(
        self, recommend: Recommend, user_id: str, k: int, exclude: Iterable[str] = (), **kw: object
    ) -> Recommendations:
        """``recommend(user_id, k, exclude, **kw)``, or the kept popular items when Redis
        cannot be read (`recommender.store.faults`)."""
        exclude = set(exclude)
        try:
            return await recommend(user_id, k, exclude, **kw)
        except Exception as exc:
            if not is_infrastructure_fault(exc) or not self._items:
                raise
            if self.answered % 1000 == 0:
                log.warning("Redis cannot be read (%s): answering with popular items", exc)
            self.answered += 1
            items = [i for i in self._items if i.item_id not in exclude][:k]
            return Recommendations(user_id, items, None)
