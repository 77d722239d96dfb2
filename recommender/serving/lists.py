"""The lists that are not one user's: items similar to one, popular (all time or in a window),
and trending."""

from __future__ import annotations

from recommender.cf.served import ServedALS
from recommender.serving import reasons
from recommender.serving.cards import Cards
from recommender.store.features import FeatureStore
from recommender.types import ScoredItem


class ItemLists:
    def __init__(self, store: FeatureStore, served: ServedALS, cards: Cards) -> None:
        self._store = store
        self._served = served
        self._cards = cards

    async def similar(self, item_id: str, k: int) -> tuple[list[ScoredItem], str | None] | None:
        """Items most like ``item_id`` by the served model; None when the item is unknown."""
        served, model = await self._served.current()
        version = served.version if served else None
        if model is not None:
            ids, scores = model.similar_items(item_id, k)
            if len(ids):
                items = [
                    (str(i), float(s), reasons.SIMILAR) for i, s in zip(ids, scores, strict=True)
                ]
                return await self._cards.scored(items), version
        if not await self._store.catalogue.known_item(item_id):
            return None
        # Known, but too new for the model: the popular items of its categories.
        (cats,) = await self._store.catalogue.categories([item_id])
        found: dict[str, float] = {}
        for c in cats:
            for i, s in await self._store.popularity.popular(k, {item_id}, c):
                found[i] = max(found.get(i, 0.0), s)
        ranked = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        reason = reasons.popular_in(", ".join(cats))
        return await self._cards.scored([(i, s, reason) for i, s in ranked]), version

    async def popular(self, window: str | None, k: int) -> list[ScoredItem]:
        """All-time popular items, or those of a window (`1h`, `24h`, `7d`)."""
        if window is None:
            rows = await self._store.popularity.popular(k)
            reason = reasons.POPULAR
        else:
            rows = await self._store.popularity.popular_in(window, k)
            reason = reasons.popular_in_window(window)
        return await self._cards.scored([(i, s, reason) for i, s in rows])

    async def trending(self, k: int) -> list[ScoredItem]:
        rows = await self._store.popularity.trending(k)
        return await self._cards.scored([(i, s, reasons.TRENDING) for i, s in rows])
