"""`/v1/health`: liveness and readiness probes (no key: orchestrators call them)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.deps import PublisherDep, ServiceDep, SettingsDep, StoreDep
from api.schemas import LiveOut, ReadyOut

router = APIRouter(prefix="/v1/health", tags=["health"])


def model_note(version: str | None, applied: int, min_events: int) -> str | None:
    """Why no model is served, in words an operator can act on."""
    if version is not None:
        return None
    if applied < min_events:
        return (
            f"no model yet: {applied:,} of the {min_events:,} events the first fit needs "
            "(STREAMREC_ALS_MIN_EVENTS); recommendations are popular items until then"
        )
    return "no model yet: the first fit is running in the worker"


@router.get("/live", response_model=LiveOut)
async def live(settings: SettingsDep) -> LiveOut:
    """The process answers."""
    return LiveOut(status="ok", instance=settings.instance_id or "")


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def ready(
    store: StoreDep, service: ServiceDep, publisher: PublisherDep, settings: SettingsDep
) -> ReadyOut | JSONResponse:
    """Redis and Kafka are reachable; 503 otherwise. Says why Redis refuses writes, if it does."""
    kafka_check = asyncio.create_task(publisher.reachable())
    try:
        stats = await store.stats.all()
        version = await service.served_version()
        refusal = await store.stats.write_refusal()
        workers = await store.stats.workers()
        redis_ok = True
    except RedisError:
        stats, version, refusal, workers, redis_ok = {}, None, None, {}, False
    now = int(time.time() * 1000)
    recent = [lag for lag, at in workers.values() if now - at <= 30_000]
    kafka_ok = await kafka_check
    applied = stats.get("events_applied", 0)
    body = ReadyOut(
        # Redis refusing writes is reported, not failed: reads still serve, and events still
        # reach Kafka (the worker stalls and resumes without losing them).
        status="ok" if redis_ok and kafka_ok else "degraded",
        instance=settings.instance_id or "",
        redis=redis_ok,
        redis_refusal=refusal,
        last_applied_ms=stats.get("applied_at"),
        worker_lag=sum(recent) if recent else None,
        kafka=kafka_ok,
        model_version=version,
        model_note=model_note(version, applied, settings.als_min_events) if redis_ok else None,
        events_applied=applied,
    )
    if body.status != "ok":
        return JSONResponse(body.model_dump(), status_code=503)
    return body
