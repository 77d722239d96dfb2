"""Request and response models: what a client may send and see (no pseudonyms, no features)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recommender.privacy.reviews import Review
from recommender.types import ScoredItem

MAX_EVENTS_PER_REQUEST = 1000
MAX_ITEMS_PER_REQUEST = 100


class ErrorOut(BaseModel):
    detail: str


#: The answers every route behind a key may give besides its own.
AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "No API key, or a bad or revoked one"},
    403: {"model": ErrorOut, "description": "The key lacks the route's scope"},
    429: {"model": ErrorOut, "description": "Over the key's rate; see Retry-After"},
}
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut}}
KAFKA_DOWN: dict[int | str, dict[str, object]] = {
    503: {"model": ErrorOut, "description": "Kafka did not take the records"}
}


class RecommendedItem(BaseModel):
    item_id: str
    title: str | None
    score: float
    reason: str
    because_item_id: str | None = None
    predicted_categories: dict[str, float] | None = Field(
        None,
        description="The item came without categories: these were predicted from its text and "
        "image, with their confidence",
    )

    @classmethod
    def of(cls, item: ScoredItem) -> RecommendedItem:
        return cls.model_validate(cls.fields_of(item))

    @staticmethod
    def fields_of(item: ScoredItem) -> dict[str, Any]:
        return {
            "item_id": item.item_id,
            "title": item.title,
            "score": item.score,
            "reason": item.reason,
            "because_item_id": item.because_item_id,
            "predicted_categories": item.predicted,
        }


class RecommendationsOut(BaseModel):
    user_id: str
    recommendation_id: str = Field(description="Quote it in later events to attribute them")
    model_version: str | None
    user_event_ms: int | None = Field(
        None, description="Time of the newest event of the user's folded into their vector"
    )
    bucket: str = Field(
        "control", description="A/B bucket: `control` (the served version) or `challenger`"
    )
    items: list[RecommendedItem]


class ItemsOut(BaseModel):
    items: list[RecommendedItem]
    model_version: str | None = None


class Rejected(BaseModel):
    index: int
    reason: str


class AcceptedOut(BaseModel):
    accepted: int
    rejected: int
    errors: list[Rejected]


class EventsIn(BaseModel):
    """Up to 1,000 events, each in the `events` topic's v1 schema. Each is checked on its own:
    valid ones are published, invalid ones are listed with the reason."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class ItemsIn(BaseModel):
    """Up to 100 content items in the `content` topic's v1 schema."""

    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)


Attribute = str | int | float | bool


class Profile(BaseModel):
    """A user's personal data. Stored only encrypted under the user's own data key."""

    model_config = ConfigDict(extra="forbid")

    email: (
        Annotated[str, Field(max_length=254, pattern=r"^[^@\x00-\x20]+@[^@\x00-\x20]+$")] | None
    ) = None
    name: Annotated[str, Field(max_length=200)] | None = None
    age: Annotated[int, Field(ge=0, le=150)] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    attributes: dict[Annotated[str, Field(max_length=64)], Attribute] = Field(
        default_factory=dict, max_length=50
    )


class ExportOut(BaseModel):
    """Everything streamrec holds about one user (the GDPR right of access)."""

    user_id: str
    profile: Profile | None
    interactions: dict[str, float]
    recent: list[dict[str, str | int]]
    event_counts: dict[str, int]
    category_affinity: dict[str, float]
    reviews: list[Review] = Field(description="Review texts, decrypted")
    has_data_key: bool


class ErasureOut(BaseModel):
    user_id: str
    data_key_destroyed: bool
    keys_deleted: int
    model_vectors_removed: int


class LiveOut(BaseModel):
    status: Literal["ok"]
    instance: str = Field(description="Names this API process (a supervisor checks it)")


class ReadyOut(BaseModel):
    status: Literal["ok", "degraded"]
    instance: str = Field(description="Names this API process (a supervisor checks it)")
    redis: bool
    redis_refusal: str | None = Field(
        None, description="Why Redis refuses writes now (OOM, MISCONF, READONLY), when it does"
    )
    kafka: bool = Field(description="A broker answered a metadata request")
    last_applied_ms: int | None = Field(
        None, description="When a worker last applied a batch of events (epoch ms)"
    )
    worker_lag: int | None = Field(
        None,
        description="Records the workers that reported in the last 30 s have yet to read "
        "(None: none reported)",
    )
    model_version: str | None
    model_note: str | None = Field(
        None, description="Why no model is served yet, when none is (answers are popular items)"
    )
    events_applied: int
