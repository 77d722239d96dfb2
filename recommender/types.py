"""Domain records the core works on. The wire schemas (in `streams.records`) convert to these."""

from __future__ import annotations

from dataclasses import dataclass, field

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase", "rating", "review")


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user event, already validated."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: int  # epoch milliseconds
    value: float | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """What the catalogue knows about an item."""

    item_id: str
    title: str
    ts: int
    text: str | None = None
    categories: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item, with why it is there."""

    item_id: str
    score: float
    title: str | None
    reason: str
    because_item_id: str | None = None  # the user's own item that explains it, when asked
