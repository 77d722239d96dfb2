"""10,000 hostile payloads mixed with valid events, through the real worker over Kafka."""

import hashlib
import random

import pytest
from kafka import KafkaProducer

from streamrec.runtime import Runtime
from streams.kafka import bootstrap_servers
from streams.records import DeadLetterV1
from tests.conftest import read_topics
from tests.poison import poison_payloads, valid_payloads

pytestmark = pytest.mark.integration

N_POISON, N_VALID = 10_000, 2_000


def test_worker_survives_poison_and_loses_nothing(settings, redis):
    poison = poison_payloads(N_POISON)
    valid = valid_payloads(N_VALID)
    mixed: list[tuple[str, bytes]] = [(f"p{i}", p) for i, p in enumerate(poison)] + valid
    random.Random(3).shuffle(mixed)
    with Runtime(settings.model_copy(update={"als_min_events": 10**9}), api_port=0) as rt:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers(settings.kafka_url),
            acks="all",
            enable_idempotence=True,
            max_request_size=8 * 1024 * 1024,
        )
        for key, value in mixed:
            producer.send(settings.topic_events, key=key.encode(), value=value)
        producer.flush()
        producer.close()
        # The worker never dies: wait_for raises if a child exits.
        done = rt.wait_for(
            lambda p: p.applied + p.stats.get("dead_letters", 0) >= len(mixed), 120, poll_s=0.2
        )
        rt.check_children()
    stats = done.stats
    assert stats.get("events_applied") == N_VALID
    assert stats.get("dead_letters") == N_POISON

    messages = read_topics(settings, settings.topic_dead_letter, fetch_max_bytes=64 * 1024 * 1024)
    letters = [DeadLetterV1.model_validate_json(m.value) for m in messages]
    assert len(letters) == N_POISON
    assert all(d.reason and d.offset is not None for d in letters)
    # Each poison record is its dead letter's original (by checksum: the letter keeps a bounded,
    # redacted prefix), and no letter is over the producer's default 1 MB.
    assert sorted(d.original_sha256 or "" for d in letters) == sorted(
        hashlib.sha256(p).hexdigest() for p in poison
    )
    assert max(len(m.value) for m in messages) < 1_000_000
