"""Dependencies: the services the lifespan opened (`api.services.ApiServices`), never module
globals.

Every one is `async def`: FastAPI runs a plain `def` dependency in a worker thread, and the
hand-offs cost more than the request itself (seen in a py-spy profile of `bench serve`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from fastapi.exceptions import RequestValidationError

from api.metrics_feed import MetricsFeed
from api.publisher import Publisher
from api.schemas import RecommendedItem
from api.services import ApiServices, services_of
from api.telemetry import ApiMetrics
from recommender.monitoring.impressions import Impression, ImpressionStore
from recommender.privacy.access import RateLimiter
from recommender.privacy.profiles import UserDataService
from recommender.serving.answers import Recommendations
from recommender.serving.service import RecommendationService
from recommender.settings import Settings
from recommender.store.features import FeatureStore
from recommender.types import ID_PATTERN, MAX_ID_CHARS

T = TypeVar("T")


def _from_state(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency answering the service ``name`` of the lifespan's `ApiServices`."""

    async def get(request: Request) -> T:
        value: T = getattr(services_of(request.state), name)
        return value

    get.__name__ = f"state_{name}"
    return get


SettingsDep = Annotated[Settings, Depends(_from_state("settings", Settings))]
StoreDep = Annotated[FeatureStore, Depends(_from_state("store", FeatureStore))]
ServiceDep = Annotated[
    RecommendationService, Depends(_from_state("service", RecommendationService))
]
PrivacyDep = Annotated[UserDataService, Depends(_from_state("privacy", UserDataService))]
PublisherDep = Annotated[Publisher, Depends(_from_state("publisher", Publisher))]
MetricsDep = Annotated[ApiMetrics, Depends(_from_state("telemetry", ApiMetrics))]
FeedDep = Annotated[MetricsFeed, Depends(_from_state("feed", MetricsFeed))]
ImpressionsDep = Annotated[ImpressionStore, Depends(_from_state("impressions", ImpressionStore))]
LimiterDep = Annotated[RateLimiter, Depends(_from_state("limiter", RateLimiter))]


def capped_k(k: int, settings: Settings) -> int:
    """``k`` if within the configured `max_k`, else the same 422 a declared bound gives."""
    if k > settings.max_k:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("query", "k"),
                    "msg": f"Input should be less than or equal to {settings.max_k}",
                    "input": k,
                    "ctx": {"le": settings.max_k},
                }
            ]
        )
    return k


#: A user or item id in a path, as the record schemas define ids.
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]


@dataclass(frozen=True, slots=True)
class Recommending:
    """What the recommendations route uses, as one dependency: FastAPI's cost is per
    dependency, and this route is the one every client calls (five made a tenth of its time
    in a py-spy profile of `bench serve`)."""

    service: RecommendationService
    settings: Settings
    telemetry: ApiMetrics
    impressions: ImpressionStore
    store: FeatureStore

    @classmethod
    def of(cls, s: ApiServices) -> Recommending:
        return cls(s.service, s.settings, s.telemetry, s.impressions, s.store)

    async def answer(
        self,
        user_id: str,
        k: int,
        exclude: Iterable[str] = (),
        category: str | None = None,
        explain: bool = False,
    ) -> dict[str, Any]:
        """The recommendations route's answer: the list, counted and kept as an impression for
        attribution."""
        recs = await self.recommend(user_id, k, exclude, category=category, explain=explain)
        return document(recs, self.served(recs))

    async def recommend(
        self, user_id: str, k: int, exclude: Iterable[str] = (), **kw: Any
    ) -> Recommendations:
        """The service's answer, or popular items from memory while Redis cannot be read."""
        service = self.service
        return await service.fallback.recommend(service.recommend, user_id, k, exclude, **kw)

    def served(self, recs: Recommendations) -> str:
        """Count ``recs`` as served and keep it as an impression; returns its new
        `recommendation_id` (`api.fast_path` answers the common request with these too)."""
        recommendation_id = secrets.token_hex(16)  # 32 hex digits, like a uuid4's hex
        items = tuple(i.item_id for i in recs.items)
        self.telemetry.served(recs.model_version, recs.bucket, items)
        self.impressions.record(
            Impression(
                recommendation_id,
                self.store.pseudonym(recs.user_id),
                items,
                recs.model_version or "none",
                recs.bucket,
                int(time.time() * 1000),
            )
        )
        return recommendation_id


def document(recs: Recommendations, recommendation_id: str) -> dict[str, Any]:
    """The route's answer as a plain document: the route validates it against
    `RecommendationsOut` (its response model); the fast path writes it as is (ad hoc, for ten
    items: 14 us, against 30 us through the model). tests/integration/test_api.py holds the two
    answers equal. `api.fast_path.encoded` relies on this key order."""
    return {
        "user_id": recs.user_id,
        "recommendation_id": recommendation_id,
        "model_version": recs.model_version,
        "user_event_ms": recs.user_event_ms,
        "bucket": recs.bucket,
        "items": [RecommendedItem.fields_of(i) for i in recs.items],
    }


async def _recommending(request: Request) -> Recommending:
    return Recommending.of(services_of(request.state))


RecommendingDep = Annotated[Recommending, Depends(_recommending)]
