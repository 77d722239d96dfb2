"""Dependencies: clients come from the lifespan state, never from module globals.

Every one is `async def`: FastAPI runs a plain `def` dependency in a worker thread, and the
hand-offs cost more than the request itself (seen in a py-spy profile of `bench serve`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from api.publisher import Publisher
from api.telemetry import ApiMetrics
from recommender.feature_store import FeatureStore
from recommender.privacy import UserDataService
from recommender.serving import RecommendationService
from recommender.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def _store(request: Request) -> FeatureStore:
    store: FeatureStore = request.state.store
    return store


async def _service(request: Request) -> RecommendationService:
    service: RecommendationService = request.state.service
    return service


async def _privacy(request: Request) -> UserDataService:
    privacy: UserDataService = request.state.privacy
    return privacy


async def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.state.publisher
    return publisher


async def _metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[FeatureStore, Depends(_store)]
ServiceDep = Annotated[RecommendationService, Depends(_service)]
PrivacyDep = Annotated[UserDataService, Depends(_privacy)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]


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
