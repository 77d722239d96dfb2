"""What an answer shows of each item: its card (title, predicted categories, the known item a
new one was placed near) and the reason it is there, in words."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from models.base import FactorModel
from recommender.memo import ExpiringMemo
from recommender.serving import reasons
from recommender.store.catalogue import ItemCard
from recommender.store.features import FeatureStore
from recommender.types import ScoredItem

#: An item in the making: its id, score and reason.
Item = tuple[str, float, str]


def ids_of(items: Sequence[Item]) -> set[str]:
    return {i for i, _, _ in items}


#: Cards a process keeps; titles change rarely, and reading ten per request was an eighth of the
#: API's time in a profile.
CARDS_KEPT = 100_000
#: How many recent items an explanation looks through for the closest one.
EXPLAIN_RECENT = 20


class Cards:
    """Turns ids, scores and reasons into the items an answer shows."""

    def __init__(
        self, store: FeatureStore, keep_s: float, fitted_knows: Callable[[str], bool]
    ) -> None:
        self._store = store
        self._kept: ExpiringMemo[str, ItemCard] = ExpiringMemo(keep_s, CARDS_KEPT)
        self._fitted_knows = fitted_knows  # whether the served version's fit has the item

    async def of(self, item_ids: Sequence[str]) -> dict[str, ItemCard]:
        found: dict[str, ItemCard] = {}
        missing = []
        for item in dict.fromkeys(item_ids):
            hit = self._kept.get(item)
            if hit is not None:
                found[item] = hit
            else:
                missing.append(item)
        if missing:
            for item, card in zip(missing, await self._store.catalogue.cards(missing), strict=True):
                self._kept.put(item, card)
                found[item] = card
        return found

    async def scored(
        self, items: Sequence[Item], because: dict[str, str] | None = None
    ) -> list[ScoredItem]:
        because = because or {}
        cards = await self.of([i for i, _, _ in items])
        likes = [c.placed_like for c in cards.values() if c.placed_like]
        names = {
            **cards,
            **await self.of([because[i] for i, _, _ in items if i in because] + likes),
        }
        out = []
        for item, score, reason in items:
            card, cause = cards[item], because.get(item)
            if cause is not None:
                reason = reasons.because(names[cause].title or cause)
            elif (
                reason in {reasons.CF, reasons.NEW}
                and card.placed_like is not None
                and not self._fitted_knows(item)
            ):
                reason = reasons.new_like(names[card.placed_like].title or card.placed_like)
            out.append(ScoredItem(item, score, card.title, reason, cause, card.predicted))
        return out

    async def explain(
        self, user_id: str, model: FactorModel, recommended: Sequence[str]
    ) -> dict[str, str]:
        """For each CF item, the user's recent item closest to it in the model's item space."""
        recent = [r.item_id for r in await self._store.users.recent(user_id, EXPLAIN_RECENT)]
        mine = model.item_vectors(dict.fromkeys(recent))
        theirs = model.item_vectors(recommended)
        if not mine or not theirs:
            return {}
        mine_ids = list(mine)
        sims = np.stack([theirs[i] for i in theirs]) @ np.stack([mine[i] for i in mine_ids]).T
        return {i: mine_ids[int(j)] for i, j in zip(theirs, sims.argmax(axis=1), strict=True)}
