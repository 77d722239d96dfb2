"""`/v1/health`: liveness and readiness probes (no key: orchestrators call them)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.deps import PublisherDep, ServiceDep, StoreDep
from api.schemas import LiveOut, ReadyOut

router = APIRouter(prefix="/v1/health", tags=["health"])


@router.get("/live", response_model=LiveOut)
async def live() -> LiveOut:
    """The process answers."""
    return LiveOut(status="ok")


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def ready(
    store: StoreDep, service: ServiceDep, publisher: PublisherDep
) -> ReadyOut | JSONResponse:
    """Redis and Kafka are reachable; 503 otherwise."""
    kafka_check = asyncio.create_task(publisher.reachable())
    try:
        stats = await store.stats()
        version = await service.served_version()
        redis_ok = True
    except RedisError:
        stats, version, redis_ok = {}, None, False
    kafka_ok = await kafka_check
    body = ReadyOut(
        status="ok" if redis_ok and kafka_ok else "degraded",
        redis=redis_ok,
        kafka=kafka_ok,
        model_version=version,
        events_applied=stats.get("events_applied", 0),
    )
    if body.status != "ok":
        return JSONResponse(body.model_dump(), status_code=503)
    return body
