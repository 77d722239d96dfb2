"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI

from api.routes import health, users
from models.registry import ModelRegistry
from recommender.feature_store import FeatureStore
from recommender.model_state import ModelState
from recommender.serving import RecommendationService
from recommender.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Build the API; its Redis client lives in the lifespan and reaches handlers via state."""
    _, redis_url = settings.require_infrastructure()
    settings.require_secrets()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = FeatureStore(redis, settings)
        state = ModelState(redis)
        service = RecommendationService(store, state, ModelRegistry(settings.models_dir))
        try:
            yield {"settings": settings, "store": store, "service": service}
        finally:
            await redis.aclose()

    app = FastAPI(title="streamrec", version="0.1.0", lifespan=lifespan)
    app.include_router(users.router)
    app.include_router(health.router)
    return app
