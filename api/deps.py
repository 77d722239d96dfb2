"""Dependencies: clients come from the lifespan state, never from module globals."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from recommender.feature_store import FeatureStore
from recommender.serving import RecommendationService
from recommender.settings import Settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def _store(request: Request) -> FeatureStore:
    store: FeatureStore = request.state.store
    return store


def _service(request: Request) -> RecommendationService:
    service: RecommendationService = request.state.service
    return service


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[FeatureStore, Depends(_store)]
ServiceDep = Annotated[RecommendationService, Depends(_service)]
