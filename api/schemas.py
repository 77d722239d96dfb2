"""Response models: what a client may see, and nothing more (no pseudonyms, no features)."""

from __future__ import annotations

from pydantic import BaseModel


class RecommendedItem(BaseModel):
    item_id: str
    title: str | None
    score: float
    reason: str


class RecommendationsOut(BaseModel):
    user_id: str
    model_version: str | None
    items: list[RecommendedItem]


class HealthOut(BaseModel):
    status: str
    redis: bool
    model_version: str | None
    events_applied: int
