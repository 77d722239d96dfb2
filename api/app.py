"""The FastAPI application factory."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from api.fast_path import ROUTE_PATH, RecommendationsFastPath
from api.middleware import HardeningMiddleware
from api.routes import dashboard, events, health, items, metrics, sessions, users
from api.services import ApiServices
from api.telemetry import ApiMetrics
from recommender.monitoring.metrics import MetricsWindow
from recommender.privacy.crypto import master_cipher
from recommender.settings import Settings
from recommender.store.faults import is_infrastructure_fault


def create_app(settings: Settings) -> FastAPI:
    """Build the API. Missing secrets or master keys fail here, before anything is served;
    the services live in the lifespan (`api.services.ApiServices`) and reach handlers through
    the request state."""
    settings.require_infrastructure()
    settings.require_secrets()
    master = master_cipher(settings.require_master_keys())
    if settings.instance_id is None:
        settings = settings.model_copy(update={"instance_id": secrets.token_hex(8)})

    telemetry = ApiMetrics(MetricsWindow(settings.metrics_window_ms))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, ApiServices]]:
        services = await ApiServices.open(settings, master, telemetry)
        try:
            yield {"services": services}
        finally:
            await services.aclose()

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
    routers = (users, sessions, items, events, health, metrics, dashboard)
    for module in routers:
        app.include_router(module.router)
    app.add_exception_handler(RedisError, _redis_refused)
    app.add_middleware(HardeningMiddleware, telemetry=telemetry)
    (recs_route,) = [r for r in users.router.routes if getattr(r, "path", "") == ROUTE_PATH]
    app.fast_path = RecommendationsFastPath(recs_route, telemetry)
    return app


async def _redis_refused(request: Request, exc: Exception) -> JSONResponse:
    """Redis away or refusing writes is the infrastructure's state, not the server's bug: 503
    with `Retry-After`, which clients retry (a 500 says do not). Other Redis errors are 500."""
    if not is_infrastructure_fault(exc):
        return JSONResponse({"detail": "internal error"}, status_code=500)
    return JSONResponse(
        {"detail": "Redis is unavailable or refuses writes for now; retry"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


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
