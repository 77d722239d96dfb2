"""What the agents do with a batch of raw records: decode, call the core, dead-letter the bad.

Kept apart from the Faust wiring so it can be tested without a broker. Nothing here raises for one
bad record: it goes to `dead-letter` with the reason, its topic/partition/offset and a redacted
prefix of it, and the batch goes on. Nothing here blames a record for the infrastructure: Redis
refusing writes stalls the batch (`recommender.store.faults`), a dead letter Kafka does not take
is sent again, and the batch is acked only after.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from recommender.errors import InvalidRecordError
from recommender.listeners import (
    ContentEnricher,
    ContentListener,
    EventEnricher,
    EventListener,
    EventRecorder,
)
from recommender.monitoring.metrics import MetricsWindow
from recommender.store.faults import StallReport, with_retry
from recommender.store.features import FeatureStore
from recommender.types import Interaction, ItemMeta
from streams.dead_letters import dead_letter, dead_letter_key
from streams.records import decode_content, decode_event

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
    timestamp_ms: int | None = None  # when Kafka appended it (or its producer made it)


def _millis_since(records: Sequence[RawRecord]) -> list[float]:
    now = time.time() * 1000
    return [max(0.0, now - r.timestamp_ms) for r in records if r.timestamp_ms is not None]


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """The events a batch applied (new ones only), and the records they came from."""

    events: list[Interaction]
    records: list[RawRecord]


D = TypeVar("D")


E = TypeVar("E", Interaction, ItemMeta)


def _always(exc: Exception) -> bool:
    return True


async def _enriched(
    enrichers: Sequence[EventEnricher] | Sequence[ContentEnricher], batch: list[E]
) -> list[E]:
    """``batch`` through every enricher; one that fails (a model that cannot load) is skipped:
    the records are applied without what it would have added, never lost."""
    for enricher in enrichers:
        try:
            out = await enricher.enrich(batch)  # type: ignore[arg-type]
        except Exception:
            log.exception(
                "%s failed for %d records; going on without it", type(enricher).__name__, len(batch)
            )
            continue
        if len(out) == len(batch):
            batch = list(out)  # type: ignore[arg-type]
    return batch


class RecordHandler:
    """Turns batches of raw records into feature-store updates, and tells the listeners.

    Parameters
    ----------
    store
        The feature store the batches are applied to.
    listeners
        Told the events each batch applied (the CF updater first).
    dead_letters
        Sends one rejected record.
    content_listeners
        Told the items each content batch upserted.
    recorders
        Keep what must not be lost (review text), before a batch is applied.
    enrichers, content_enrichers
        Add what models read (a review's sentiment, an item's predicted categories) before a
        batch is applied or stored; when one fails, the batch goes on without it.
    metrics
        Counts what came in, what was applied, duplicated or dead-lettered, and how long after
        its append to Kafka an event's features and recommendations reflected it.
    """

    def __init__(
        self,
        store: FeatureStore,
        listeners: Sequence[EventListener],
        dead_letters: DeadLetterSink,
        content_listeners: Sequence[ContentListener] = (),
        recorders: Sequence[EventRecorder] = (),
        enrichers: Sequence[EventEnricher] = (),
        content_enrichers: Sequence[ContentEnricher] = (),
        metrics: MetricsWindow | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics or MetricsWindow()
        self._listeners = list(listeners)
        self._content_listeners = list(content_listeners)
        self._recorders = list(recorders)
        self._enrichers = list(enrichers)
        self._content_enrichers = list(content_enrichers)
        self._dead_letters = dead_letters
        self._rejected = 0  # dead letters sent and not yet counted in the store
        #: Since when Redis refuses this handler's writes (the worker's gauges read it).
        self.stall = StallReport()

    async def _reject(self, record: RawRecord, reason: str) -> None:
        """Send ``record``'s dead letter, retried until Kafka takes it: a record is acked only
        once its dead letter is out (a dead letter always fits: `streams.dead_letters`)."""
        log.info("dead-letter %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason)
        pseudonym = self._store.pseudonym
        key = dead_letter_key(record.key, pseudonym)
        value = dead_letter(
            reason, record.topic, record.partition, record.offset, record.value, pseudonym
        )
        # Any failure is retried: a dead letter always fits, so one that is refused is Kafka's.
        await with_retry(
            "send a dead letter", partial(self._dead_letters, key, value), retry_if=_always
        )
        self._rejected += 1
        self._metrics.add("streamrec_dead_letters", topic=record.topic)

    async def _count_rejected(self) -> None:
        if self._rejected:
            n, self._rejected = self._rejected, 0
            await with_retry(
                "count dead letters",
                lambda: self._store.stats.incr("dead_letters", n),
                self.stall,
            )

    async def _decode_or_reject(
        self, records: Sequence[RawRecord], decode: Callable[[bytes], D]
    ) -> list[tuple[RawRecord, D]]:
        """Decoded records paired with their raw form; the undecodable ones are dead-lettered."""
        good: list[tuple[RawRecord, D]] = []
        for record in records:
            try:
                good.append((record, decode(record.value)))
            except InvalidRecordError as exc:
                await self._reject(record, str(exc))
        return good

    async def _apply_isolating(
        self,
        what: str,
        pairs: list[tuple[RawRecord, D]],
        apply: Callable[[list[D]], Awaitable[list[D]]],
    ) -> list[D]:
        """Apply the batch; if it fails for a reason other than Redis being away, apply record by
        record and dead-letter the ones that fail. Safe because every apply is idempotent."""
        try:
            return await with_retry(what, partial(apply, [d for _, d in pairs]), self.stall)
        except Exception:
            log.exception(
                "%s failed for a batch of %d; isolating the bad records", what, len(pairs)
            )
        done: list[D] = []
        for record, decoded in pairs:
            try:
                done += await with_retry(what, partial(apply, [decoded]), self.stall)
            except Exception as exc:
                await self._reject(record, f"processing failed: {exc!r}")
        return done

    async def handle_events(self, records: Sequence[RawRecord]) -> int:
        """Apply a batch of event records and tell the listeners; return how many were new."""
        applied = await self.apply_events(records)
        await self.tell_listeners(applied)
        return len(applied.events)

    async def apply_events(self, records: Sequence[RawRecord]) -> AppliedBatch:
        """The feature store's half of `handle_events`: decode, enrich, apply, dead-letter.
        The worker overlaps it with the previous batch's `tell_listeners`."""
        # The pseudonym is computed here, once per event, and travels with it.
        pairs = await self._decode_or_reject(
            records, partial(decode_event, pseudonym=self._store.pseudonym)
        )
        record_of = {id(event): record for record, event in pairs}
        metrics = self._metrics
        for kind, n in Counter(event.type for _, event in pairs).items():
            metrics.add("streamrec_events_in", n, type=kind)
        if len(pairs) < len(records):
            metrics.add("streamrec_events_in", len(records) - len(pairs), type="invalid")

        async def apply(events: list[Interaction]) -> list[Interaction]:
            events = await self._after_erasures(events)
            enriched = await _enriched(self._enrichers, events)
            for before, after in zip(events, enriched, strict=True):
                record_of[id(after)] = record_of[id(before)]
            for recorder in self._recorders:
                await recorder.record(enriched)
            result = await self._store.apply_interactions(enriched)
            for event, reason in result.failed:
                await self._reject(record_of[id(event)], f"processing failed: {reason}")
            new = {id(e) for e in result.applied} | {id(e) for e, _ in result.failed}
            for kind, n in Counter(e.type for e in enriched if id(e) not in new).items():
                metrics.add("streamrec_events_duplicate", n, type=kind)
            return result.applied

        applied = await self._apply_isolating("apply events", pairs, apply)
        applied_records = [record_of[id(e)] for e in applied]
        metrics.observe("streamrec_event_to_feature", _millis_since(applied_records))
        for kind, n in Counter(e.type for e in applied).items():
            metrics.add("streamrec_events_applied", n, type=kind)
        await self._count_rejected()
        return AppliedBatch(applied, applied_records)

    async def _after_erasures(self, events: list[Interaction]) -> list[Interaction]:
        """``events`` without the reviews of erased users from before their erasure (a
        redelivery, a retry, an event stamped before it): no recorder keeps their text again.
        Only events with text are looked up (a batch without any costs no round trip): the
        apply script checks every event's tombstone itself, atomically with its writes."""
        store = self._store
        erased = await store.users.erased_at(store.pseudonym_of(e) for e in events if e.text)
        if not erased:
            return events
        kept = [e for e in events if not e.text or e.ts > erased.get(store.pseudonym_of(e), -1)]
        self._metrics.add("streamrec_events_erased", len(events) - len(kept))
        return kept

    async def tell_listeners(self, applied: AppliedBatch) -> None:
        """The listeners' half of `handle_events` (the CF fold-in of the touched users)."""
        events, metrics = applied.events, self._metrics
        started = time.perf_counter()
        for listener in self._listeners:
            try:
                await listener.on_applied(events)
            except Exception:
                # The features are safe in Redis; what listeners derive is recomputed later
                # (the next refit folds these users in).
                log.exception("%s failed for %d events", type(listener).__name__, len(events))
        if events:
            metrics.observe("streamrec_foldin", [(time.perf_counter() - started) * 1000])
            metrics.observe("streamrec_event_to_recs", _millis_since(applied.records))

    async def handle_content(self, records: Sequence[RawRecord]) -> int:
        """Apply a batch of content records; return how many were valid."""
        pairs = await self._decode_or_reject(records, decode_content)

        async def upsert(items: list[ItemMeta]) -> list[ItemMeta]:
            enriched = await _enriched(self._content_enrichers, items)
            await self._store.catalogue.upsert_items(enriched)
            return enriched

        upserted = await self._apply_isolating("upsert items", pairs, upsert)
        for listener in self._content_listeners:
            try:
                await listener.on_items(upserted)
            except Exception:
                log.exception("%s failed for %d items", type(listener).__name__, len(upserted))
        if upserted:
            self._metrics.add("streamrec_content_in", len(upserted))
        await self._count_rejected()
        return len(upserted)
