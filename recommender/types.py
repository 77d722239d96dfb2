"""Domain records the core works on. The wire schemas (in `streams.records`) convert to these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

#: The kinds of user event, defined here once (the wire schema and the weights read them).
EventType = Literal["view", "click", "cart", "purchase", "rating", "review"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

#: What an id may be: no whitespace, no control characters, no `|` (the feature store's field
#: separator). Spelled out rather than `\s`, which Python, Rust and ECMAScript regexes read
#: differently (U+0085).
ID_PATTERN = r"^[^|\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
MAX_ID_CHARS = 128


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
    #: The recommendation list the event answers (the API hands these out), for attribution.
    recommendation_id: str | None = None
    #: A review's probability of being positive, once the sentiment model has read it.
    sentiment: float | None = None
    #: The user's pseudonym, computed once where the event enters (the worker's decoding) and
    #: carried with it; `FeatureStore.pseudonym_of` reads it (and computes it for an event
    #: made elsewhere, which has none).
    pseudonym: str | None = None


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """What the catalogue knows about an item."""

    item_id: str
    title: str
    ts: int
    text: str | None = None
    categories: tuple[str, ...] = field(default_factory=tuple)
    image: str | None = None  # base64 PNG or JPEG, as published
    #: Categories the content models predicted (label -> confidence) for an item that came
    #: without any; `categories` then holds the confident ones.
    predicted: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item, with why it is there."""

    item_id: str
    score: float
    title: str | None
    reason: str
    because_item_id: str | None = None  # the user's own item that explains it, when asked
    predicted: dict[str, float] | None = None  # predicted categories, when it came without
