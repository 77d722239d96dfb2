"""Faust's aiokafka transport with a configurable fetch wait and batched topics, registered as
`streamrec://`; and a table manager that does not wait for tables the worker does not have.

Faust hard-codes `fetch_max_wait_ms=1500`. Brokers that do not wake a parked fetch when data
arrives (the embedded Tansu among them) then hold every fetch that long: measured here, a trivial
Faust agent saw a median of 390 ms from send to receive with 1500 ms, and 44 ms with 10 ms.
The price of a short wait is more (empty) fetch requests while the topic is idle.
Registered through the `faust.transports` entry point in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import aiokafka
from faust.tables.manager import TableManager
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.batch_intake import INBOX_ATTR, BatchInbox

log = logging.getLogger(__name__)

#: Attribute of the Faust app holding the wait in ms; absent keeps Faust's 1500.
FETCH_WAIT_ATTR = "streamrec_fetch_max_wait_ms"


def set_fetch_max_wait(app: Any, ms: int) -> None:
    setattr(app, FETCH_WAIT_ATTR, ms)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, FETCH_WAIT_ATTR, None)
        if wait is not None:
            # Read by aiokafka when start() builds its fetcher, which happens after this.
            consumer._fetch_max_wait_ms = int(wait)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    #: What ends the fetch loop quietly while the app stops (Faust's loop catches both too).
    _stopped_errors: ClassVar[tuple[type[BaseException], ...]] = (
        *faust_aiokafka.Consumer.consumer_stopped_errors,
        asyncio.CancelledError,
    )

    #: Partition logs found lost or replaced under this worker (`_log_replaced`).
    logs_replaced = 0

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (the worker's)
        """Faust's fetch loop (`faust.transport.consumer.Consumer._drain_messages`), except that
        the records of the inbox's topics are put into it as one list per topic and fetch,
        rather than each handed to the conductor on its own. Offsets, gaps and commits are
        tracked as Faust does."""
        inbox: BatchInbox | None = getattr(self.app, INBOX_ATTR, None)
        if inbox is None:
            await super()._drain_messages(fetcher)
            return
        callback = self.callback
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        num_since_yield = 0
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                batches: dict[str, list[Any]] = {}
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in self.getmany(timeout=1.0):
                        num_since_yield += 1
                        if num_since_yield > 100:  # as Faust: let the loop breathe
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            if not self._log_replaced(tp, r_offset):
                                continue  # read before (Faust drops these too)
                            r_offset = None  # a new log: its records are new

                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if message.topic in inbox:
                            batches.setdefault(message.topic, []).append(message)
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                    for topic, messages in batches.items():
                        if inbox.full(topic):
                            # A rebalance must not wait on a busy agent: the records are then
                            # read again from the committed offset.
                            await self.wait_first(
                                inbox.put(topic, messages), self.suspend_flow.wait()
                            )
                        else:
                            await inbox.put(topic, messages)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self._stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _log_replaced(self, tp: Any, read_offset: int) -> bool:
        """Whether ``tp``'s log now ends before ``read_offset``, the offset this worker read up
        to: the broker lost or replaced it (restarted on memory storage, an unclean leader
        election, a restore). Its records are then new, not read before: Faust's offsets for
        the partition are forgotten (dropping the records as "read before" lost every event
        published after such a restart, up to the old offset), and the next commit is the new
        log's. Events applied before are recognised by their `event_id`."""
        highwater = self.highwater(tp)
        if highwater is None or highwater >= read_offset:
            return False
        log.warning(
            "%s: the broker's log ends at offset %d, before offset %d this worker read or was "
            "committed: the log was lost or replaced (a broker restarted on memory storage, an "
            "unclean leader election, a restore). Reading it from its start.",
            tp,
            highwater,
            read_offset,
        )
        for offsets in (self._read_offset, self._committed_offset):
            offsets[tp] = None
        for bookkeeping in (self._acked, self._acked_index, self._gap):
            bookkeeping.pop(tp, None)
        self.logs_replaced += 1
        return True

    async def rewind_past_end(self) -> int:
        """Read from its start every assigned partition whose log ends before the offset this
        worker is at (some brokers answer a fetch past the end with nothing, not an error, so
        the fetch loop never sees a record to tell); returns how many."""
        rewound = 0
        for tp in self.assignment():
            read = self._read_offset.get(tp)
            if read is not None and self._log_replaced(tp, read):
                await self._thread.seek_to_beginning(
                    aiokafka.TopicPartition(tp.topic, tp.partition)
                )
                rewound += 1
        return rewound


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


class NoTablesManager(TableManager):
    """Faust's table manager sleeps a second at start, for agents to register their tables,
    before the consumer subscribes. The worker keeps its state in Redis, not in tables, and a
    restarted worker would spend that second idle (measured: a fifth of its recovery)."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


async def rewind_logs_past_end(app: Any) -> None:
    """`Consumer.rewind_past_end` of the worker's consumer (a timer calls it; a failure is
    logged, and tried again at the next tick, never the worker's end)."""
    consumer = app.consumer
    if isinstance(consumer, Consumer):
        try:
            await consumer.rewind_past_end()
        except Exception:
            log.exception("could not check the partitions' log ends; trying again")


def logs_replaced(app: Any) -> int:
    """How many partition logs this worker found lost or replaced under it."""
    return int(getattr(app.consumer, "logs_replaced", 0))


def consumer_lag(app: Any) -> dict[tuple[str, int], int]:
    """Records not yet read per assigned partition: the high watermark from the last fetch
    less the next offset to read (Faust keeps the last offset read, privately)."""
    consumer: Any = app.consumer  # the base type declares no offsets
    lag = {}
    for tp in consumer.assignment():
        read = consumer._read_offset.get(tp)  # private: no public accessor
        committed = consumer._committed_offset.get(tp)
        highwater = consumer.highwater(tp)  # None until the first fetch answered
        if highwater is None:
            continue
        # Nothing read or committed yet: the worker starts from the earliest offset (0 unless
        # retention removed the head, when this overstates the lag until the first read).
        position = read + 1 if read is not None else committed if committed is not None else 0
        lag[(tp.topic, tp.partition)] = max(0, highwater - position)
    return lag
