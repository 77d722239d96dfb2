"""Publishing from the API to Kafka: `POST /v1/events` and `POST /v1/items` go through here.

The producer is created on first use, so the API starts (and serves reads) while Kafka is down;
a write then answers 503. kafka-python is blocking, so every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any, TypeVar

from kafka.errors import KafkaError

from recommender.errors import InvalidRecordError
from streams.kafka import bootstrap_servers, broker_answers
from streams.producer import EventProducer
from streams.records import ContentV1, EventV1, encode, validate

Keyed = TypeVar("Keyed", EventV1, ContentV1)

#: How long a request may wait for Kafka (metadata, buffer space, acknowledgements).
KAFKA_WAIT_S = 5.0


class PublishError(Exception):
    """Kafka did not take the records; nothing may be assumed published."""


class Publisher:
    def __init__(
        self,
        kafka_url: str,
        events_topic: str,
        content_topic: str,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        """``security``: `streams.kafka.kafka_security` of the settings."""
        self._url = kafka_url
        self._security = dict(security or {})
        self._topics = (events_topic, content_topic)
        self._producer: EventProducer | None = None
        self._lock = threading.Lock()

    def _get(self) -> EventProducer:
        with self._lock:
            if self._producer is None:
                self._producer = EventProducer(
                    bootstrap_servers(self._url),
                    *self._topics,
                    max_block_ms=int(KAFKA_WAIT_S * 1000),
                    bootstrap_timeout_ms=int(KAFKA_WAIT_S * 1000),
                    client_id="streamrec-api",
                    **self._security,
                )
            return self._producer

    def _send(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        producer = self._get()
        futures = [producer.send_raw(topic, key, value) for key, value in records]
        for future in futures:
            future.get(timeout=KAFKA_WAIT_S)  # acks=all: on every in-sync replica

    async def publish(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Publish (key, value) records and wait until Kafka acknowledged every one."""
        if not records:
            return
        if self._producer is None and not await self.reachable():
            # Fail fast: kafka-python spends its whole bootstrap timeout on a dead broker.
            raise PublishError("Kafka is not reachable; nothing was published")
        try:
            await asyncio.to_thread(self._send, topic, records)
        except (KafkaError, OSError) as exc:
            raise PublishError(f"Kafka did not acknowledge the records: {exc}") from exc

    async def reachable(self, timeout_s: float = 1.0) -> bool:
        """Whether a broker answers a metadata request (`streams.kafka.broker_answers`)."""
        return await broker_answers(self._url, self._security, timeout_s)

    @property
    def events_topic(self) -> str:
        return self._topics[0]

    @property
    def content_topic(self) -> str:
        return self._topics[1]

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=KAFKA_WAIT_S)
                self._producer = None


def validate_batch(
    rows: list[dict[str, Any]], model: type[Keyed]
) -> tuple[list[tuple[str, bytes]], list[tuple[int, str]]]:
    """Each row checked on its own against the topic's schema: the valid ones as (key, bytes)
    records, the others as (index, reason)."""
    records: list[tuple[str, bytes]] = []
    rejected: list[tuple[int, str]] = []
    for index, row in enumerate(rows):
        try:
            record = validate(model, row)
        except InvalidRecordError as exc:
            rejected.append((index, str(exc)))
            continue
        records.append((record.partition_key, encode(record)))
    return records, rejected
