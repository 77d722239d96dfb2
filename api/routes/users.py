"""`/v1/users`: recommendations, and the user's personal data (profile, export, erasure)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from api.auth import AdminKey, ProfileKey, ReadKey
from api.deps import (
    PathId,
    PrivacyDep,
    RecommendingDep,
    capped_k,
)
from api.schemas import (
    AUTH_ERRORS,
    NOT_FOUND,
    ErasureOut,
    ExportOut,
    Profile,
    RecommendationsOut,
)

router = APIRouter(prefix="/v1/users", tags=["users"], responses=AUTH_ERRORS)


@router.get("/{user_id}/recommendations", response_model=RecommendationsOut)
async def recommendations(
    user_id: PathId,
    parts: RecommendingDep,
    key: ReadKey,
    k: Annotated[int, Query(ge=1, le=1000, description="How many items (at most max_k)")] = 10,
    category: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    exclude: Annotated[list[str], Query(max_length=1000, description="Item ids to leave out")] = [],  # noqa: B006
    explain: Annotated[
        bool, Query(description="Name the user's item behind each pick (the `explain` scope)")
    ] = False,
) -> dict[str, Any]:
    """Top-k items the user has not interacted with yet; popular items for an unknown user."""
    if explain and not key.allows("explain"):
        # It names items from the user's history: more than a `read` key reveals.
        raise HTTPException(403, "explain=true needs the 'explain' scope")
    return await parts.answer(user_id, capped_k(k, parts.settings), exclude, category, explain)


@router.put("/{user_id}/profile", response_model=Profile)
async def put_profile(
    user_id: PathId, profile: Profile, privacy: PrivacyDep, _: ProfileKey
) -> Profile:
    """Store the user's personal data, encrypted under their own data key."""
    await privacy.put_profile(user_id, profile.model_dump(exclude_none=True))
    return profile


@router.get("/{user_id}/profile", response_model=Profile, responses=NOT_FOUND)
async def get_profile(user_id: PathId, privacy: PrivacyDep, _: ProfileKey) -> Profile:
    found = await privacy.get_profile(user_id)
    if found is None:
        raise HTTPException(404, "no profile for this user")
    return Profile.model_validate(found)


@router.get("/{user_id}/export", response_model=ExportOut, responses=NOT_FOUND)
async def export(user_id: PathId, privacy: PrivacyDep, _: AdminKey) -> ExportOut:
    """Everything streamrec holds about the user, decrypted (the GDPR right of access)."""
    found = await privacy.export(user_id)
    if found is None:
        raise HTTPException(404, "streamrec holds no data about this user")
    return ExportOut.model_validate(found)


@router.delete("/{user_id}", response_model=ErasureOut)
async def erase(user_id: PathId, privacy: PrivacyDep, _: AdminKey) -> ErasureOut:
    """Erase the user: destroy their data key, delete their features and model vector.
    Idempotent: erasing again reports nothing left to remove."""
    done = await privacy.erase(user_id)
    return ErasureOut(
        user_id=user_id,
        data_key_destroyed=done.data_key_destroyed,
        keys_deleted=done.keys_deleted,
        model_vectors_removed=done.model_vectors_removed,
    )
