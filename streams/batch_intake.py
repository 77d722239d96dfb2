"""Records handed to an agent a fetch at a time, not an event at a time.

Why: Faust delivers each record to a stream on its own (a task to wait on the delivery, a queue,
an event object, sensors, an ack), and `bench ingest` measured a Faust agent that does nothing
at a quarter of what a plain aiokafka loop drains. For the topics registered here the worker's
consumer (`streams.faust_transport.Consumer`) puts the records of each fetch into an inbox as one
list; the topic's agent takes lists, applies them and acks every record with Faust's consumer.

What stays Faust's: the app, the agents, the consumer group and its rebalances, the fetcher,
the leader's timers, and the at-least-once commits (only acked, contiguous offsets are committed;
a rebalance waits for the records an agent has taken and not yet acked).
What is given up for these topics: Faust's stream operators (processors, group_by, per-event
sensors), which the worker does not use. Lists fetched before a rebalance are dropped unacked
when taken after it, as Faust's streams skip such events: whoever owns the partition then reads
them again from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

#: Attribute of the Faust app holding its `BatchInbox`; absent: every topic goes through streams.
INBOX_ATTR = "streamrec_batch_inbox"

R = TypeVar("R")

#: Lists buffered per topic before the consumer waits for its agent (backpressure).
MAX_BUFFERED_LISTS = 4


class BatchInbox:
    """One bounded queue of record lists per registered topic, fed by the consumer's fetch loop.

    Parameters
    ----------
    topics
        The topics whose records skip Faust's per-event streams.
    """

    def __init__(self, topics: Iterable[str]) -> None:
        self._queues: dict[str, asyncio.Queue[list[Any]]] = {
            topic: asyncio.Queue(maxsize=MAX_BUFFERED_LISTS) for topic in topics
        }

    def __contains__(self, topic: object) -> bool:
        return topic in self._queues

    def full(self, topic: str) -> bool:
        return self._queues[topic].full()

    async def put(self, topic: str, messages: list[Any]) -> None:
        await self._queues[topic].put(messages)

    async def batches(self, topic: str, app: Any, max_records: int) -> AsyncIterator[list[Any]]:
        """Lists of up to ``max_records`` records, as soon as any have arrived: what queued while
        the last list was applied is merged, so batches grow with the load and a lone event
        waits for no window. Each record is tracked as unacked before it is yielded."""
        queue = self._queues[topic]
        pending: list[Any] = []
        while True:
            if not pending:
                pending = await queue.get()
            while len(pending) < max_records and not queue.empty():
                pending += queue.get_nowait()
            batch, pending = pending[:max_records], pending[max_records:]
            fresh = _current(app, batch)
            if fresh:
                yield fresh

    @staticmethod
    def ack(app: Any, messages: Iterable[Any]) -> None:
        """Mark records done: Faust commits an offset once it and all before it are acked."""
        consumer = app.consumer
        for message in messages:
            consumer.ack(message)


def _current(app: Any, messages: list[Any]) -> list[Any]:
    """The records fetched in the consumer's current generation, tracked as taken (a rebalance
    waits for them to be acked); the rest are left for the partition's owner to read again."""
    if not app.flow_control.is_active():
        return []
    generation = app.consumer_generation_id
    consumer = app.consumer
    fresh = [m for m in messages if m.generation_id == generation]
    if len(fresh) < len(messages):
        log.info("dropped %d records fetched before a rebalance", len(messages) - len(fresh))
    for message in fresh:
        message.tracked = True
        consumer.track_message(message)
    return fresh


async def run_batches(
    app: Any,
    inbox: BatchInbox,
    topic: str,
    max_records: int,
    apply: Callable[[list[Any]], Awaitable[R]],
    then: Callable[[R], Awaitable[None]] | None = None,
) -> None:
    """The body of a batched topic's agent: ``apply`` each list, then ``then`` with what it
    returned, then ack the list. ``then`` of one list runs while the next list is taken and
    applied (each stage keeps the lists' order): the worker computes while Redis works.

    An error that escapes ``apply`` (the handlers retry Redis and dead-letter bad records
    themselves, so a bug's or a dead Kafka's) is logged and the list applied again with backoff,
    never acked unapplied: the partition stalls, visibly, rather than lose what was fetched.
    A list is acked only after both stages, so a kill loses none."""
    follow_up: asyncio.Task[None] | None = None

    async def finish(batch: list[Any], result: R | None) -> None:
        if then is not None and result is not None:
            try:
                await then(result)
            except Exception:
                log.exception("following up %d records of %s failed", len(batch), topic)
        BatchInbox.ack(app, batch)

    try:
        async for batch in inbox.batches(topic, app, max_records):
            result = await _until_applied(apply, batch, topic)
            if follow_up is not None:
                await follow_up
            follow_up = asyncio.create_task(finish(batch, result))
    finally:
        if follow_up is not None:
            follow_up.cancel()


#: The longest wait between two tries of a list that failed.
MAX_RETRY_DELAY_S = 30.0


async def _until_applied(
    apply: Callable[[list[Any]], Awaitable[R]], batch: list[Any], topic: str
) -> R:
    """``apply(batch)``, again and again until it returns (every apply is idempotent)."""
    delay = 0.5
    while True:
        try:
            return await apply(batch)
        except Exception:
            log.exception(
                "applying %d records of %s failed; trying again in %.1fs (nothing is acked "
                "before it is applied)",
                len(batch),
                topic,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY_S)
