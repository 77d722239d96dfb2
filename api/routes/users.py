"""`/v1/users`: a user's recommendations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from api.deps import ServiceDep, SettingsDep
from api.schemas import RecommendationsOut, RecommendedItem

router = APIRouter(prefix="/v1/users", tags=["users"])

UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s|]+$")]


@router.get("/{user_id}/recommendations", response_model=RecommendationsOut)
async def recommendations(
    user_id: UserId,
    service: ServiceDep,
    settings: SettingsDep,
    k: Annotated[int, Query(ge=1, le=1000, description="How many items")] = 10,
) -> RecommendationsOut:
    """Top-k items the user has not interacted with yet; popular items for an unknown user."""
    if k > settings.max_k:
        raise HTTPException(422, f"k must be at most {settings.max_k}")
    recs = await service.recommend(user_id, k)
    return RecommendationsOut(
        user_id=recs.user_id,
        model_version=recs.model_version,
        items=[
            RecommendedItem(item_id=i.item_id, title=i.title, score=i.score, reason=i.reason)
            for i in recs.items
        ],
    )
