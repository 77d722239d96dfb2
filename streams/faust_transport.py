"""Faust's aiokafka transport with a configurable fetch wait, registered as `streamrec://`;
and a table manager that does not wait for tables the worker does not have.

Faust hard-codes `fetch_max_wait_ms=1500`. Brokers that do not wake a parked fetch when data
arrives (the embedded Tansu among them) then hold every fetch that long: measured here, a trivial
Faust agent saw a median of 390 ms from send to receive with 1500 ms, and 44 ms with 10 ms.
The price of a short wait is more (empty) fetch requests while the topic is idle.
Registered through the `faust.transports` entry point in pyproject.toml.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka

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
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


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
