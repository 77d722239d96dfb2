"""The FastAPI application factory."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.middleware import HardeningMiddleware
from api.publisher import Publisher
from api.routes import events, health, items, metrics, users
from api.telemetry import ApiMetrics
from recommender.access import ApiKeyStore, RateLimiter
from recommender.cf_vectors import CFVectors
from recommender.connections import redis_async
from recommender.crypto import UserDataCipher, check_master_keys, master_cipher
from recommender.families import cf_registry
from recommender.feature_store import FeatureStore
from recommender.keys import CF
from recommender.model_state import ModelState
from recommender.privacy import UserDataService
from recommender.reviews import ReviewStore
from recommender.serving import RecommendationService
from recommender.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Build the API. Missing secrets or master keys fail here, before anything is served;
    clients live in the lifespan and reach handlers through the request state."""
    kafka_url, redis_url = settings.require_infrastructure()
    settings.require_secrets()
    master = master_cipher(settings.require_master_keys())
    if settings.instance_id is None:
        settings = settings.model_copy(update={"instance_id": secrets.token_hex(8)})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        redis = redis_async(redis_url)
        publisher = Publisher(kafka_url, settings.topic_events, settings.topic_content)
        try:
            await check_master_keys(redis, master)
            store = FeatureStore(redis, settings)
            cipher = UserDataCipher(redis, master)
            cf_state = ModelState(redis, CF)
            reviews = ReviewStore(redis, cipher, store.pseudonym, settings.user_ttl_s)
            yield {
                "settings": settings,
                "store": store,
                "service": RecommendationService(
                    store,
                    cf_state,
                    cf_registry(settings.models_dir),
                    pointer_check_s=settings.api_model_check_s,
                    title_ttl_s=settings.api_title_cache_s,
                    knn_weight=settings.serve_knn_weight,
                    recent_items=settings.serve_recent_items,
                    recent_decay=settings.serve_recent_decay,
                    new_item_slots=settings.serve_new_item_slots,
                    new_item_within=settings.serve_new_item_within,
                ),
                "privacy": UserDataService(
                    redis, store, cipher, reviews, CFVectors(redis, cf_state)
                ),
                "api_keys": ApiKeyStore(redis, cache_s=settings.api_key_cache_s),
                "limiter": RateLimiter(redis, settings.api_rate_per_s, settings.api_rate_burst),
                "publisher": publisher,
                "metrics": telemetry,
            }
        finally:
            publisher.close()
            await redis.aclose()

    telemetry = ApiMetrics()
    docs = settings.api_docs
    app = FastAPI(
        title="streamrec",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        max_body_size=settings.api_max_body_bytes,  # 413 beyond it, declared or streamed
    )
    _document_max_k(app, settings.max_k)
    for router in (users.router, items.router, events.router, health.router, metrics.router):
        app.include_router(router)
    app.add_middleware(
        HardeningMiddleware,
        requests=telemetry.requests,
        latency=telemetry.latency,
    )
    return app


def _document_max_k(app: FastAPI, max_k: int) -> None:
    """The routes declare `k <= 1000` (the setting's own ceiling); the OpenAPI document states
    the configured `max_k` instead, so that clients and generated tests see the real bound."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for param in operation.get("parameters", []):
                        if param.get("name") == "k" and param.get("in") == "query":
                            param["schema"]["maximum"] = max_k
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
