"""`/v1/items`: similar, popular and trending items; publishing content."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from api.auth import ReadKey, WriteKey
from api.deps import LimiterDep, PathId, PublisherDep, ServiceDep, SettingsDep, capped_k
from api.publisher import validate_batch
from api.routes.events import publish_rows
from api.schemas import (
    AUTH_ERRORS,
    KAFKA_DOWN,
    NOT_FOUND,
    AcceptedOut,
    ItemsIn,
    ItemsOut,
    RecommendedItem,
)
from streams.records import ContentV1

router = APIRouter(prefix="/v1/items", tags=["items"], responses=AUTH_ERRORS)

K = Annotated[int, Query(ge=1, le=1000, description="How many items (at most max_k)")]


@router.get("/popular", response_model=ItemsOut)
async def popular(
    service: ServiceDep,
    settings: SettingsDep,
    _: ReadKey,
    window: Literal["1h", "24h", "7d", "all"] = "24h",
    k: K = 10,
) -> ItemsOut:
    """The most interacted-with items in the window ending at the stream's clock."""
    rows = await service.lists.popular(None if window == "all" else window, capped_k(k, settings))
    return ItemsOut(items=[RecommendedItem.of(i) for i in rows])


@router.get("/trending", response_model=ItemsOut)
async def trending(service: ServiceDep, settings: SettingsDep, _: ReadKey, k: K = 10) -> ItemsOut:
    """Items whose last hour most exceeds their average hour of the last 24 h."""
    rows = await service.lists.trending(capped_k(k, settings))
    return ItemsOut(items=[RecommendedItem.of(i) for i in rows])


@router.get("/{item_id}/similar", response_model=ItemsOut, responses=NOT_FOUND)
async def similar(
    item_id: PathId, service: ServiceDep, settings: SettingsDep, _: ReadKey, k: K = 10
) -> ItemsOut:
    """Items liked by the same people (the served model's item space); for an item too new for
    the model, the popular items of its categories. 404 for an item streamrec never saw."""
    found = await service.lists.similar(item_id, capped_k(k, settings))
    if found is None:
        raise HTTPException(404, "unknown item")
    rows, version = found
    return ItemsOut(items=[RecommendedItem.of(i) for i in rows], model_version=version)


@router.post("", status_code=202, response_model=AcceptedOut, responses=KAFKA_DOWN)
async def post_items(
    body: ItemsIn, publisher: PublisherDep, limiter: LimiterDep, key: WriteKey
) -> AcceptedOut:
    """Up to 100 content items in the `content` topic's schema, each validated on its own
    (off the event loop: an image is decoded to check it)."""
    rows = await asyncio.to_thread(validate_batch, body.items, ContentV1)
    return await publish_rows(publisher, limiter, key, publisher.content_topic, *rows)
