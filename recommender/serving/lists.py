"""The lists that are not one user's model's: items similar to one, popular (all time or in a
window, or in the categories a user likes), and trending."""

from __future__ import annotations

from recommender.cf.served import ServedALS
from recommender.serving import reasons
from recommender.serving.cards import Cards, Item
from recommender.store.features import FeatureStore
from recommender.types import ScoredItem

#: Categories the affinity step looks at, the user's strongest first.
AFFINITY_TOP = 3


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

    async def fill(self, n: int, taken: set[str], category: str | None) -> list[Item]:
        """Up to ``n`` popular items (of ``category`` if given) not in ``taken``: what a list's
        models could not fill."""
        if n <= 0:
            return []
        rows = await self._store.popularity.popular(n, taken, category)
        reason = reasons.POPULAR if category is None else reasons.popular_in(category)
        return [(i, s, reason) for i, s in rows]

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

    async def by_affinity(self, user_id: str, n: int, taken: set[str]) -> list[Item]:
        """The chain's step between the model and plain popularity: popular items of the
        categories the user likes most (for users the model cannot place yet)."""
        affinity = await self._store.users.category_affinity(user_id)
        found: list[Item] = []
        for cat, _ in sorted(affinity.items(), key=lambda kv: (-kv[1], kv[0]))[:AFFINITY_TOP]:
            for item, score in await self._store.popularity.popular(n - len(found), taken, cat):
                found.append((item, score, reasons.affinity(cat)))
                taken.add(item)
            if len(found) >= n:
                break
        return found
