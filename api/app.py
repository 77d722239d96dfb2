"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from api.fast_path import ROUTE_PATH, RecommendationsFastPath
from api.metrics_feed import MetricsFeed
from api.middleware import HardeningMiddleware
from api.publisher import Publisher
from api.routes import dashboard, events, health, items, metrics, users
from api.telemetry import ApiMetrics
from recommender.cf.vectors import CFVectors
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.monitoring.impressions import ImpressionStore
from recommender.monitoring.metrics import MetricsWindow
from recommender.privacy.access import ApiKeyStore, RateLimiter
from recommender.privacy.crypto import UserDataCipher, check_master_keys, master_cipher
from recommender.privacy.profiles import UserDataService
from recommender.privacy.reviews import ReviewStore
from recommender.serving.config import ServingConfig
from recommender.serving.service import RecommendationService
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from recommender.store.keys import CF
from streams.metrics import MetricsPublisher, now_ms

log = logging.getLogger(__name__)


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
        background_task: asyncio.Task[None] | None = None
        feed = MetricsFeed(kafka_url, settings.topic_metrics)
        try:
            await check_master_keys(redis, master)
            store = FeatureStore(redis, settings)
            cipher = UserDataCipher(redis, master)
            cf_state = ModelState(redis, CF)
            reviews = ReviewStore(redis, cipher, store.pseudonym, settings.user_ttl_s)
            impressions = ImpressionStore(redis, settings.attribution_window_s)
            service = RecommendationService(
                store,
                cf_state,
                cf_registry(settings.models_dir),
                ServingConfig.of(settings),
            )
            metrics_out = _metrics_publisher(publisher)
            background_task = asyncio.create_task(
                _background(metrics_out, impressions, store, service)
            )
            yield {
                "settings": settings,
                "store": store,
                "service": service,
                "privacy": UserDataService(
                    redis,
                    store,
                    cipher,
                    reviews,
                    CFVectors(redis, cf_state),
                    [impressions, service],
                ),
                "impressions": impressions,
                "feed": feed,
                "api_keys": ApiKeyStore(redis, cache_s=settings.api_key_cache_s),
                "limiter": RateLimiter(redis, settings.api_rate_per_s, settings.api_rate_burst),
                "publisher": publisher,
                "metrics": telemetry,
            }
        finally:
            if background_task is not None:
                background_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background_task
                with contextlib.suppress(Exception):
                    await impressions.flush()
                if settings.metrics_publish:
                    await _sample_gauges(store, service)
                    await metrics_out.flush()  # the last, partial window
            await feed.aclose()
            publisher.close()
            await redis.aclose()

    telemetry = ApiMetrics(MetricsWindow(settings.metrics_window_ms))

    def _metrics_publisher(publisher: Publisher) -> MetricsPublisher:
        async def send(records: list[tuple[str, bytes]]) -> None:
            await publisher.publish(settings.topic_metrics, records)

        source = f"/streamrec/api/{settings.instance_id}"
        if settings.api_processes > 1:  # the processes share the instance id: one source each
            source += f"/{os.getpid()}"
        return MetricsPublisher(telemetry.window, send, source)

    async def _sample_gauges(store: FeatureStore, service: RecommendationService) -> None:
        """The gauges this replica sets as a window closes: coverage and the served version."""
        try:
            _, catalogue = await store.counts()
            telemetry.close_coverage(catalogue)
            telemetry.window.clear("streamrec_served_version")
            version = await service.served_version()
            if version is not None:
                telemetry.window.set("streamrec_served_version", 1, family=CF, version=version)
        except Exception as exc:
            log.warning("could not sample the API's gauges: %s", exc)

    async def _background(
        out: MetricsPublisher,
        impressions: ImpressionStore,
        store: FeatureStore,
        service: RecommendationService,
    ) -> None:
        """Every 0.1 s the impressions served since; once per window this replica's metric
        records. The window rolls even when nothing is published: coverage counts the items
        served in one window, and would otherwise grow for as long as the process runs."""
        while True:
            await asyncio.sleep(0.1)
            try:
                await impressions.flush()
            except Exception as exc:
                log.warning("could not write impressions (attribution misses them): %s", exc)
            if not out.window.due(now_ms()):
                continue
            await _sample_gauges(store, service)
            if settings.metrics_publish:
                await out.publish_due()
            else:
                out.window.close(now_ms())  # Prometheus reads the running totals

    docs = settings.api_docs
    app = StreamrecAPI(
        title="streamrec",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        max_body_size=settings.api_max_body_bytes,  # 413 beyond it, declared or streamed
    )
    _document_max_k(app, settings.max_k)
    routers = (users, items, events, health, metrics, dashboard)
    for module in routers:
        app.include_router(module.router)
    app.add_middleware(HardeningMiddleware, telemetry=telemetry)
    (recs_route,) = [r for r in users.router.routes if getattr(r, "path", "") == ROUTE_PATH]
    app.fast_path = RecommendationsFastPath(recs_route, telemetry)
    return app


class StreamrecAPI(FastAPI):
    """FastAPI, with the common recommendations request answered before its middleware and
    routing (`api.fast_path`); every other request goes through them as usual."""

    fast_path: RecommendationsFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and await self.fast_path.answer(scope, send):
            return
        await super().__call__(scope, receive, send)


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
