"""What may listen on the event path: small protocols the record handler calls, so that a new
capability (a model family, monitoring) arrives as a listener beside the others, not as more
lines inside the handler."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from recommender.types import Interaction, ItemMeta


class EventEnricher(Protocol):
    """Adds what a model reads in an event before it is applied (a review's sentiment): returns
    the events, one for one, in order."""

    async def enrich(self, events: Sequence[Interaction]) -> list[Interaction]: ...


class ContentEnricher(Protocol):
    """Adds what a model reads in an item before it is stored (predicted categories): returns
    the items, one for one, in order."""

    async def enrich(self, items: Sequence[ItemMeta]) -> list[ItemMeta]: ...


class EventRecorder(Protocol):
    """Keeps something of each event *before* it is applied, idempotently (a redelivery writes
    the same thing again): data that must not be lost if the worker dies mid-batch."""

    async def record(self, events: Sequence[Interaction]) -> None: ...


class EventListener(Protocol):
    """Hears about the events a batch applied (new ones only, never a duplicate). What it
    derives must be recomputable: a crash between the batch and the listener skips it."""

    async def on_applied(self, events: Sequence[Interaction]) -> None: ...


class ContentListener(Protocol):
    """Hears about the content items a batch upserted."""

    async def on_items(self, items: Sequence[ItemMeta]) -> None: ...


class Forgetter(Protocol):
    """A store that keeps per-user data, and removes all of it on erasure."""

    async def forget(self, pseudonym: str) -> int:
        """Remove everything kept for ``pseudonym``; return how many keys or entries went."""
        ...
