"""Small helpers around Kafka URLs and topic creation (kafka-python admin)."""

from __future__ import annotations

import contextlib
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from recommender.settings import Settings
from streams.records import topic_names


def bootstrap_servers(url: str) -> str:
    """`kafka://h:p,h2:p2` or `h:p` -> `h:p,h2:p2` (what Kafka clients want)."""
    return url.removeprefix("kafka://")


def faust_broker(url: str) -> str:
    """The broker URL for Faust, on streamrec's transport (see `streams.faust_transport`)."""
    return "streamrec://" + bootstrap_servers(url)


def create_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create every streamrec topic that does not exist yet (idempotent)."""
    kafka_url, _ = settings.require_infrastructure()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap_servers(kafka_url), client_id="streamrec-admin"
            )
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, settings.topic_partitions, 1)
            for name in topic_names(settings)
            if name not in existing
        ]
        if wanted:
            # Another process may win the race; the topic existing is the state we want.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()
