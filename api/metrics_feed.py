"""The metrics topic, fanned out to the dashboard's live connections.

One consumer per API process (aiokafka, no consumer group, from the newest records), started
when the first dashboard connects and stopped with the app; each connection gets its own bounded
queue (a slow browser loses its oldest records, never slows the others) and, on connecting, the
last minute of records so its charts start full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer

from streams.kafka import bootstrap_servers

log = logging.getLogger(__name__)

#: Records kept for a new connection, and how old they may be.
BACKLOG_RECORDS = 5000
BACKLOG_S = 60.0
#: Records a slow connection may fall behind before its oldest are dropped.
QUEUE_RECORDS = 2000


class MetricsFeed:
    def __init__(
        self, kafka_url: str, topic: str, security: Mapping[str, Any] | None = None
    ) -> None:
        """``security``: `streams.kafka.kafka_security` of the settings."""
        self._url = kafka_url
        self._security = dict(security or {})
        self._topic = topic
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        self._backlog: deque[tuple[float, bytes]] = deque(maxlen=BACKLOG_RECORDS)
        self._task: asyncio.Task[None] | None = None

    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._consume(), name="streamrec-metrics-feed")

    async def _consume(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                self._topic,
                bootstrap_servers=bootstrap_servers(self._url),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                fetch_max_wait_ms=50,  # a record reaches the screen within a window, not later
                client_id="streamrec-dashboard",
                **self._security,
            )
            try:
                await consumer.start()
                while True:
                    batches = await consumer.getmany(timeout_ms=500)
                    for messages in batches.values():
                        for message in messages:
                            self._publish(message.value or b"")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the dashboard's metrics feed failed (%s); retrying in 2 s", exc)
                await asyncio.sleep(2)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def _publish(self, raw: bytes) -> None:
        self._backlog.append((time.monotonic(), raw))
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(raw)

    async def subscribe(self) -> AsyncIterator[bytes]:
        """The backlog, then every record as it arrives, until the caller stops iterating."""
        self._ensure_started()
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_RECORDS)
        since = time.monotonic() - BACKLOG_S
        for at, raw in list(self._backlog):
            if at >= since and not queue.full():
                queue.put_nowait(raw)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
