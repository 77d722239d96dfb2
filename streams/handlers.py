"""What the agents do with a batch of raw records: decode, call the core, dead-letter the bad.

Kept apart from the Faust wiring so it can be tested without a broker. Faust acks a message even
when the agent raises, so nothing here may raise for one bad record: it goes to `dead-letter`
with the reason, its topic/partition/offset and its original bytes, and the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from recommender.errors import InvalidRecordError
from recommender.feature_store import FeatureStore
from recommender.training import Trainer
from recommender.types import Interaction, ItemMeta
from streams.records import dead_letter, decode_content, decode_event

log = logging.getLogger(__name__)

#: Sends one dead-letter record (key, value).
DeadLetterSink = Callable[[bytes | None, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes


T = TypeVar("T")


async def _with_retry(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Retry while Redis is unreachable: blocking the stream loses nothing, skipping would."""
    delay = 0.1
    while True:
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("%s: Redis unavailable (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class RecordHandler:
    """Turns batches of raw records into feature-store updates and model updates."""

    def __init__(self, store: FeatureStore, trainer: Trainer, dead_letters: DeadLetterSink) -> None:
        self._store = store
        self._trainer = trainer
        self._dead_letters = dead_letters

    async def _reject(self, record: RawRecord, reason: str) -> None:
        log.info("dead-letter %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason)
        await self._dead_letters(
            record.key,
            dead_letter(reason, record.topic, record.partition, record.offset, record.value),
        )
        await _with_retry("count dead letter", lambda: self._store.incr_stat("dead_letters"))

    async def handle_events(self, records: Sequence[RawRecord]) -> int:
        """Apply a batch of event records; return how many were new."""
        valid: list[Interaction] = []
        for record in records:
            try:
                valid.append(decode_event(record.value))
            except InvalidRecordError as exc:
                await self._reject(record, str(exc))
        applied = await _with_retry("apply events", lambda: self._store.apply_interactions(valid))
        try:
            await self._trainer.on_applied(applied)
        except Exception:
            # The features are safe in Redis; the next refit folds these users in.
            log.exception("incremental model update failed for %d events", len(applied))
        return len(applied)

    async def handle_content(self, records: Sequence[RawRecord]) -> int:
        items: list[ItemMeta] = []
        for record in records:
            try:
                items.append(decode_content(record.value))
            except InvalidRecordError as exc:
                await self._reject(record, str(exc))
        await _with_retry("upsert items", lambda: self._store.upsert_items(items))
        return len(items)
