"""`/v1/sessions`: recommendations for a visitor with no user id, from the items they just
viewed (`recommender.serving.sessions`). Nothing about the session is stored."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.auth import ReadKey
from api.deps import ServiceDep, SettingsDep, capped_k
from api.schemas import AUTH_ERRORS, ItemsOut, RecommendedItem
from recommender.cf.candidates import SEQUENCE_ITEMS
from recommender.types import ID_PATTERN, MAX_ID_CHARS

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=AUTH_ERRORS)

_ID = re.compile(ID_PATTERN)


def _viewed(raw: str) -> list[str]:
    items = [i for i in raw.split(",") if i]
    if not items or len(items) > SEQUENCE_ITEMS:
        raise HTTPException(422, f"items: from 1 to {SEQUENCE_ITEMS} item ids, comma-separated")
    bad = [i for i in items if len(i) > MAX_ID_CHARS or not _ID.match(i)]
    if bad:
        raise HTTPException(422, f"items: not an item id: {bad[0][:MAX_ID_CHARS]!r}")
    return items


@router.get("/recommendations", response_model=ItemsOut)
async def session_recommendations(
    service: ServiceDep,
    settings: SettingsDep,
    _: ReadKey,
    items: Annotated[
        str,
        Query(
            max_length=SEQUENCE_ITEMS * (MAX_ID_CHARS + 1),
            description="The items the visitor viewed, oldest first, comma-separated",
        ),
    ],
    k: Annotated[int, Query(ge=1, le=1000, description="How many items (at most max_k)")] = 10,
    category: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    exclude: Annotated[list[str], Query(max_length=1000, description="Item ids to leave out")] = [],  # noqa: B006
) -> ItemsOut:
    """What visitors go on to after these items: the sequential model with the neighbours of
    the items viewed; popular items for what they cannot fill. The items viewed are left out."""
    rows, version = await service.sessions.recommend(
        _viewed(items), capped_k(k, settings), exclude, category
    )
    return ItemsOut(items=[RecommendedItem.of(i) for i in rows], model_version=version)
