"""`EventProducer`: what a Python event producer imports to publish to streamrec.

kafka-python with `acks=all` and idempotence on (retries make no duplicates per partition).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from streams.kafka import bootstrap_servers
from streams.records import ContentV1, EventV1, encode


def producer_config(kafka_url: str, **overrides: Any) -> dict[str, Any]:
    """kafka-python producer settings every streamrec producer starts from: acks from every
    in-sync replica, idempotence on (retries make no duplicates per partition)."""
    return {
        "bootstrap_servers": bootstrap_servers(kafka_url),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "client_id": "streamrec-producer",
        **overrides,
    }


class EventProducer:
    """Publishes validated events and content items.

    Examples
    --------
    >>> producer = EventProducer("localhost:9092")
    >>> producer.send_event(EventV1(event_id="e1", user_id="u1", item_id="i1",
    ...                             type="click", ts=1700000000000))
    >>> producer.close()
    """

    def __init__(
        self,
        kafka_url: str,
        events_topic: str = "events",
        content_topic: str = "content",
        **overrides: Any,
    ) -> None:
        self._producer = KafkaProducer(**producer_config(kafka_url, **overrides))
        # kafka-python silently drops idempotence when another setting conflicts with it.
        if not self._producer.config.get("enable_idempotence"):
            raise RuntimeError("the Kafka producer is not idempotent; check the overrides")
        self.events_topic = events_topic
        self.content_topic = content_topic

    @property
    def idempotent(self) -> bool:
        return bool(self._producer.config.get("enable_idempotence"))

    def send_event(self, event: EventV1) -> FutureRecordMetadata:
        return self.send_raw(self.events_topic, event.partition_key, encode(event))

    def send_content(self, item: ContentV1) -> FutureRecordMetadata:
        return self.send_raw(self.content_topic, item.partition_key, encode(item))

    def send_raw(self, topic: str, key: str, value: bytes) -> FutureRecordMetadata:
        return self._producer.send(topic, key=key.encode(), value=value)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout)
        self._producer.close(timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
