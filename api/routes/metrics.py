"""`/v1/metrics`: Prometheus exposition (a `read` key: it reveals volumes)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import ReadKey
from api.deps import MetricsDep, StoreDep
from api.schemas import AUTH_ERRORS

router = APIRouter(prefix="/v1", tags=["metrics"], responses=AUTH_ERRORS)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(store: StoreDep, telemetry: MetricsDep, _: ReadKey) -> Response:
    body = telemetry.render(await store.stats.all())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
