"""A broker that comes back (issue 24, finding 4), against a broker of the test's own beside the
session's Valkey: the worker reconnects by itself, and a log shorter than what it read is read
from its start, not skipped."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from recommender.store import keys
from recommender.store.connections import redis_sync as redis_client
from streamrec.embedded import free_port, start_broker, wait_for_port
from streamrec.runtime import Runtime
from streamrec.supervisor import Supervisor
from streams.kafka import bootstrap_servers, create_topics
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def publish(kafka_url: str, topic: str, first: int, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers(kafka_url), acks="all")
    for i in range(first, first + n):
        user = f"u{i % 97}"
        event = {"event_id": f"e{i}", "user_id": user, "item_id": f"i{i % 31}",
                 "type": "view", "ts": int(time.time() * 1000)}  # fmt: skip
        producer.send(topic, key=user.encode(), value=json.dumps(event).encode())
    producer.flush()
    producer.close()


def commit(kafka_url: str, group: str, topic: str, offset: int, partitions: int) -> None:
    """Commit ``offset`` on every partition for ``group``, as a worker's last commit would."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers(kafka_url), group_id=group, enable_auto_commit=False
    )
    try:
        consumer.commit(
            {TopicPartition(topic, p): OffsetAndMetadata(offset, "", -1) for p in range(partitions)}
        )
    finally:
        consumer.close()


def test_a_log_shorter_than_the_committed_offsets_is_read_from_its_start(
    infra, tmp_path: Path, redis
):
    """On main a worker whose group's committed offsets were past the log's end (a broker
    restarted on memory storage after the worker's last commit, an unclean election, a
    restore) dropped every record of the new log below them: those events never applied."""
    (tmp_path / "logs").mkdir()
    supervisor = Supervisor(tmp_path / "logs")
    port = free_port()
    broker = start_broker(supervisor, port)
    wait_for_port(port)
    kafka_url = f"kafka://127.0.0.1:{port}"
    settings = make_settings(tmp_path, kafka_url=kafka_url, redis_url=infra.redis_url)
    redis_sync = redis_client(infra.redis_url)
    try:
        with Runtime(settings, api_port=0) as rt:
            [worker] = [c for c in rt.supervisor.children if c.name == "worker"]
            rt.supervisor.kill(worker)
            supervisor.kill(broker)  # its memory log is gone with it ...
            broker = start_broker(supervisor, port)
            wait_for_port(port)
            create_topics(rt.settings)
            # ... but not the offsets the group committed before (here: as its last commit).
            partitions = settings.topic_partitions
            commit(kafka_url, settings.worker_id, settings.topic_events, 500, partitions)
            publish(kafka_url, settings.topic_events, 0, 300)  # ~150 a partition: below 500
            rt.start_worker()
            secret = settings.pseudonym_secret
            new = [keys.seen(keys.pseudonymize(secret, f"u{i % 97}"), f"e{i}") for i in range(300)]
            deadline = time.monotonic() + 60
            while sum(redis_sync.exists(k) for k in new) < 300:
                assert time.monotonic() < deadline, (rt.log_dir / "worker.log").read_text()[-3000:]
                rt.check_children()
                time.sleep(0.5)
            assert "the log was lost or replaced" in (rt.log_dir / "worker.log").read_text()
    finally:
        supervisor.stop_all()


def test_a_durable_broker_restarted_mid_stream_loses_and_doubles_nothing(
    infra, s3, tmp_path: Path, redis
):
    """Tansu on S3 storage (the session's moto server): SIGKILLed while the worker is
    consuming and restarted on the same storage, every event is applied exactly once."""
    (tmp_path / "logs").mkdir()
    supervisor = Supervisor(tmp_path / "logs")
    port = free_port()
    bucket = s3.bucket()
    env = {**os.environ, **s3.credentials, "AWS_ENDPOINT": s3.endpoint, "AWS_ALLOW_HTTP": "true"}
    broker = start_broker(supervisor, port, f"s3://{bucket}/", env)
    wait_for_port(port)
    kafka_url = f"kafka://127.0.0.1:{port}"
    settings = make_settings(tmp_path, kafka_url=kafka_url, redis_url=infra.redis_url)
    redis_sync = redis_client(infra.redis_url)
    try:
        with Runtime(settings.model_copy(update={"batch_size": 50}), api_port=0) as rt:
            publish(kafka_url, settings.topic_events, 0, 1500)
            rt.wait_for(lambda p: p.applied >= 300, 60, poll_s=0.01)
            supervisor.kill(broker)  # mid-stream
            broker = start_broker(supervisor, port, f"s3://{bucket}/", env)
            wait_for_port(port)
            publish(kafka_url, settings.topic_events, 1500, 1500)
            done = rt.wait_for(lambda p: p.applied >= 3000, 120, poll_s=0.2)
            time.sleep(2)  # anything counted twice would show by now
            assert rt.progress().applied == done.applied == 3000
            popular: Any = redis_sync.zrange(keys.ITEMS_POPULAR, 0, -1, withscores=True)
            assert sum(float(score) for _, score in popular) == 3000
            assert "the log was lost or replaced" not in (rt.log_dir / "worker.log").read_text()
    finally:
        supervisor.stop_all()
