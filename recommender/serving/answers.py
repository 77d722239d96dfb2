"""An answer to a recommendations request, and what a kept one stands on."""

from __future__ import annotations

from dataclasses import dataclass

from models.als import ALSModel
from recommender.serving.ab_split import CONTROL
from recommender.types import ScoredItem

#: Users whose last answer a process keeps (`RecommendationService.answers`). Each answer is a
#: dozen objects the garbage collector walks in a full collection: 20,000 answers made one take
#: 26 ms longer (ad hoc), which a request waits out.
ANSWERS_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Recommendations:
    user_id: str
    items: list[ScoredItem]
    model_version: str | None
    user_event_ms: int | None = None  # newest event folded into the user's vector
    bucket: str = CONTROL


@dataclass(frozen=True, slots=True)
class Answered:
    """An answer from a user's cached candidates, and what it stands on: the served model
    object (its new items fill the last places) and the vector's `as_of`."""

    model: ALSModel
    as_of: int
    recs: Recommendations
