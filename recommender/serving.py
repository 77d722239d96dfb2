"""Serving: a user's recommendations through a fallback chain (collaborative filtering, popular)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from models.registry import ModelRegistry
from recommender.feature_store import FeatureStore
from recommender.model_state import ModelState, ServedModelCache
from recommender.types import ScoredItem

REASON_CF = "people with similar taste liked it"
REASON_POPULAR = "popular right now"


@dataclass(frozen=True, slots=True)
class Recommendations:
    user_id: str
    items: list[ScoredItem]
    model_version: str | None


class RecommendationService:
    """Answers recommendation requests from the feature store and the served model.

    The served version is checked on every request (one Redis read) through `ServedModelCache`,
    so a promoted model is served without a restart.
    """

    def __init__(self, store: FeatureStore, state: ModelState, registry: ModelRegistry) -> None:
        self._store = store
        self._state = state
        self._served = ServedModelCache(state, registry)

    async def served_version(self) -> str | None:
        """The pointer only: a health check must not load a model."""
        served = await self._state.current()
        return served.version if served else None

    async def recommend(self, user_id: str, k: int, exclude: Iterable[str] = ()) -> Recommendations:
        """Top-k unseen items for ``user_id``; an unknown user gets the popular ones."""
        served, model = await self._served.current()
        version = served.version if served else None
        seen = await self._store.seen_items(user_id)
        excluded = seen | set(exclude)
        items: list[tuple[str, float, str]] = []
        if model is not None and version is not None:
            vec = await self._state.user_vector(version, self._store.pseudonym(user_id))
            if vec is not None:
                ids, scores = model.recommend_vector(vec, k, excluded)
                items = [(str(i), float(s), REASON_CF) for i, s in zip(ids, scores, strict=True)]
        if len(items) < k:
            taken = excluded | {i for i, _, _ in items}
            popular = await self._store.popular(k - len(items), taken)
            items += [(i, s, REASON_POPULAR) for i, s in popular]
        titles = await self._store.titles([i for i, _, _ in items])
        return Recommendations(
            user_id=user_id,
            items=[ScoredItem(i, s, t, r) for (i, s, r), t in zip(items, titles, strict=True)],
            model_version=version,
        )
