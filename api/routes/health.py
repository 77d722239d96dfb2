"""`/v1/health`: is the API up, can it reach Redis, which model does it serve."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.deps import ServiceDep, StoreDep
from api.schemas import HealthOut

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health", response_model=HealthOut)
async def health(store: StoreDep, service: ServiceDep) -> HealthOut | JSONResponse:
    try:
        stats = await store.stats()
        version = await service.served_version()
    except RedisError:
        body = HealthOut(status="degraded", redis=False, model_version=None, events_applied=0)
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthOut(
        status="ok",
        redis=True,
        model_version=version,
        events_applied=stats.get("events_applied", 0),
    )
