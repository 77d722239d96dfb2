"""`/v1/sessions`: recommendations for a visitor with no user id, from the items they just
viewed (`recommender.serving.sessions`). Nothing about the session is stored."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import ReadKey
from api.deps import ServiceDep, SettingsDep, capped_k
from api.schemas import AUTH_ERRORS, ItemsOut, RecommendedItem
from recommender.cf.candidates import SEQUENCE_ITEMS
from recommender.types import ID_PATTERN, MAX_ID_CHARS

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=AUTH_ERRORS)


def _viewed(raw: str) -> list[str]:
    """The session's items, oldest first: the newest `SEQUENCE_ITEMS` (the encoder's window);
    a piece longer than an id can be names no item and is left out."""
    items = [i for i in raw.split(",") if 0 < len(i) <= MAX_ID_CHARS]
    return items[-SEQUENCE_ITEMS:]


@router.get("/recommendations", response_model=ItemsOut)
async def session_recommendations(
    service: ServiceDep,
    settings: SettingsDep,
    _: ReadKey,
    items: Annotated[
        str,
        Query(
            min_length=1,
            max_length=SEQUENCE_ITEMS * (MAX_ID_CHARS + 1),
            pattern=ID_PATTERN,
            description=(
                "The items the visitor viewed, oldest first, comma-separated (the newest "
                f"{SEQUENCE_ITEMS} are read)"
            ),
        ),
    ],
    k: Annotated[int, Query(ge=1, le=1000, description="How many items (at most max_k)")] = 10,
    category: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    exclude: Annotated[list[str], Query(max_length=1000, description="Item ids to leave out")] = [],  # noqa: B006
) -> ItemsOut:
    """What visitors go on to after these items: the sequential model with the neighbours of
    the items viewed; popular items for what they cannot fill (all of it when no item is
    known). The items viewed are left out."""
    rows, version = await service.sessions.recommend(
        _viewed(items), capped_k(k, settings), exclude, category
    )
    return ItemsOut(items=[RecommendedItem.of(i) for i in rows], model_version=version)
