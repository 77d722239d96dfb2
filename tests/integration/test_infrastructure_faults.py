"""What the worker does when the infrastructure, not the record, is at fault (issue 24, findings 1
and 2): against the embedded Valkey and broker, through the record handler the worker runs."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from recommender.store import keys
from recommender.store.connections import prepare_store
from recommender.store.faults import EvictingPolicyError
from recommender.store.features import FeatureStore
from streams.handlers import RawRecord, RecordHandler
from streams.kafka import bootstrap_servers
from streams.records import DeadLetterV1
from tests.conftest import read_topics

pytestmark = pytest.mark.integration


def event(i: int, **extra: object) -> bytes:
    body = {"event_id": f"e{i}", "user_id": f"alice{i % 7}@example.com", "item_id": f"i{i % 13}"}
    return json.dumps({**body, "type": "view", "ts": 1_000 + i, **extra}).encode()


def records(values: list[bytes]) -> list[RawRecord]:
    return [
        RawRecord("events", 0, i, f"alice{i % 7}@example.com".encode(), v)
        for i, v in enumerate(values)
    ]


async def test_an_invalid_record_too_big_to_dead_letter_whole_loses_nothing_else(redis, settings):
    """On main its dead letter (the whole record, base64) was over the producer's 1 MB limit:
    the send raised and the worker acked every valid event fetched with it, unapplied."""
    store = FeatureStore(redis, settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings.kafka_url or ""))
    await producer.start()

    async def sink(key: bytes | None, value: bytes) -> None:
        await producer.send_and_wait(settings.topic_dead_letter, value, key=key)

    handler = RecordHandler(store, [], sink)
    huge = event(50, event_id="huge", text="my secret diary " * 50_000)  # ~800 KB, text too long
    batch = records([event(i) for i in range(50)] + [huge] + [event(i) for i in range(51, 100)])
    try:
        assert await handler.handle_events(batch) == 99
    finally:
        await producer.stop()
    assert (await store.stats.all())["events_applied"] == 99
    [message] = read_topics(settings, settings.topic_dead_letter)
    assert len(message.value) < 40_000
    letter = DeadLetterV1.model_validate_json(message.value)
    assert (letter.offset, letter.original_bytes) == (50, len(huge))
    assert "text" in letter.reason
    kept = base64.b64decode(letter.original_b64)
    # No personal field in clear: not the user id (value or key), not the review text.
    assert b"alice" not in message.value + kept + (message.key or b"")
    assert b"secret diary" not in kept
    assert store.pseudonym("alice1@example.com").encode() in kept


async def test_redis_out_of_memory_stalls_the_batch_and_then_applies_it_whole(redis, settings):
    """On main OOM came back as the record's fault: every event was dead-lettered."""
    store = FeatureStore(redis, settings)
    sent: list[bytes] = []

    async def sink(key: bytes | None, value: bytes) -> None:
        sent.append(value)

    handler = RecordHandler(store, [], sink)
    await redis.config_set("maxmemory", 1)  # used > 1 byte: noeviction refuses every write
    try:
        task = asyncio.create_task(handler.handle_events(records([event(i) for i in range(100)])))
        await asyncio.sleep(1.5)
        assert not task.done()
        assert handler.stall.stalled_s > 0 and "OutOfMemory" in handler.stall.reason
        assert not await redis.exists(keys.seen(store.pseudonym("alice0@example.com"), "e0"))
    finally:
        await redis.config_set("maxmemory", 0)
    assert await asyncio.wait_for(task, 30) == 100
    assert sent == []
    stats = await store.stats.all()
    assert stats["events_applied"] == 100 and "dead_letters" not in stats
    assert handler.stall.stalled_s == 0 and handler.stall.stalls == 1


async def test_readiness_reports_redis_refusing_writes_and_serves_on(redis, settings):
    from tests.conftest import serve_api

    async with serve_api(settings) as api:
        await redis.config_set("maxmemory", 1)
        try:
            body = (await api.get("/v1/health/ready")).json()
        finally:
            await redis.config_set("maxmemory", 0)
        assert body["redis_refusal"].startswith("OOM")
        assert (await api.get("/v1/health/ready")).json()["redis_refusal"] is None


async def test_the_worker_refuses_an_evicting_memory_policy(redis, settings):
    prepare_store(settings.redis_url or "")  # the embedded Valkey is started with it
    await redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(EvictingPolicyError, match="noeviction"):
            prepare_store(settings.redis_url or "")
    finally:
        await redis.config_set("maxmemory-policy", "noeviction")


async def test_an_image_too_big_to_publish_is_rejected_as_invalid_not_a_503(redis, settings):
    """On main the schema took images up to 2 MiB and the producer 1 MB: a 900 KB image passed
    validation and answered 503, inviting retries of a permanent error."""
    from recommender.privacy.access import ApiKeyStore
    from tests.conftest import serve_api

    token = (await ApiKeyStore(redis).create({"write"}, "writer")).token
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(900_000)).decode()
    item = {"item_id": "big", "title": "Big", "image": image, "ts": 1}
    async with serve_api(settings) as api:
        resp = await api.post("/v1/items", json={"items": [item]}, headers={"X-API-Key": token})
    # A batch answers per row: this one rejected with its reason, nothing to retry.
    assert resp.status_code == 202, resp.text
    assert resp.json()["rejected"] == 1 and "image over" in resp.text


async def test_readiness_asks_kafka_for_metadata_and_reports_the_workers(redis, settings, tmp_path):
    """On main readiness opened a TCP connection: a port that accepts connections and
    answers nothing (a broker hung, a proxy with no broker behind) was ready."""
    from recommender.store.features import FeatureStore
    from streams.kafka import broker_answers
    from tests.conftest import serve_api

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # accepts, never answers, until the client gives up
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert not await broker_answers(f"kafka://127.0.0.1:{port}", {}, timeout_s=0.5)
    finally:
        server.close()
    assert await broker_answers(settings.kafka_url or "", {}, timeout_s=2.0)
    store = FeatureStore(redis, settings)
    handler = RecordHandler(store, [], lambda key, value: asyncio.sleep(0))
    await handler.handle_events(records([event(1)]))
    await store.stats.report_worker("w1", 42, int(time.time() * 1000))
    async with serve_api(settings) as api:
        body = (await api.get("/v1/health/ready")).json()
    assert body["kafka"] is True and body["worker_lag"] == 42
    assert abs(body["last_applied_ms"] - time.time() * 1000) < 60_000


async def test_an_acl_user_in_the_redis_url_is_what_streamrec_connects_as(redis, settings):
    """Redis as the root of trust: streamrec runs as a user of its own, with a password, and a
    wrong one is a clear error that does not print the password."""
    from recommender.store.connections import UnreachableError, check_redis, redis_async

    host = (settings.redis_url or "").split("//", 1)[1]
    await redis.execute_command("ACL", "SETUSER", "streamrec", "on", ">s3cret", "~*", "&*", "+@all")
    try:
        client = redis_async(f"redis://streamrec:s3cret@{host}")
        store = FeatureStore(client, settings)
        assert (await store.apply_interactions([])).applied == []
        handler = RecordHandler(store, [], lambda key, value: asyncio.sleep(0))
        assert await handler.handle_events(records([event(1)])) == 1
        assert await client.acl_whoami() == "streamrec"
        await client.aclose()
        with pytest.raises(UnreachableError) as refused:
            check_redis(f"redis://streamrec:wrong@{host}")
        assert "wrong" not in str(refused.value) and "***" in str(refused.value)
    finally:
        await redis.execute_command("ACL", "DELUSER", "streamrec")


def test_the_embedded_valkey_with_an_aof_comes_back_with_what_it_held(tmp_path):
    """What `bench chaos` relies on to crash Redis: SIGKILLed, it restarts from its AOF."""
    import redis as redis_sync

    from streamrec.embedded import EmbeddedInfrastructure
    from streamrec.supervisor import Supervisor

    supervisor = Supervisor()
    infra = EmbeddedInfrastructure(supervisor, tmp_path, aof=True)
    infra.start()
    try:
        client = redis_sync.Redis.from_url(infra.redis_url)
        client.set("kept", "yes")
        client.close()
        infra.restart_valkey()
        client = redis_sync.Redis.from_url(infra.redis_url)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.get("kept") == b"yes"
                break
            except redis_sync.BusyLoadingError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        client.close()
    finally:
        supervisor.stop_all()


async def test_while_redis_cannot_be_read_recommendations_are_the_popular_items(redis, settings):
    """A request that would fail because Redis is away (a crash, a restart loading its AOF)
    is answered from memory with the popular items last read, less what was excluded."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from recommender.lifecycle.families import cf_registry
    from recommender.lifecycle.state import ModelState
    from recommender.serving import reasons
    from recommender.serving.service import RecommendationService
    from recommender.types import Interaction

    store = FeatureStore(redis, settings)
    await store.apply_interactions(
        [Interaction(f"e{i}", f"u{i}", f"i{i % 3}", "view", 1_000 + i) for i in range(9)]
    )
    service = RecommendationService(store, ModelState(redis), cf_registry(settings.models_dir))

    async def away(*args: object, **kwargs: object) -> Any:
        raise RedisConnectionError("Connection refused")

    async def buggy(*args: object, **kwargs: object) -> Any:
        raise ValueError("a bug")

    with pytest.raises(RedisConnectionError):  # nothing read yet: nothing to answer with
        await service.fallback.recommend(away, "anyone", 2)
    await service.fallback.refresh()
    recs = await service.fallback.recommend(away, "anyone", 2, exclude=["i0"])
    assert {i.item_id for i in recs.items} == {"i1", "i2"} and recs.model_version is None
    assert {i.reason for i in recs.items} == {reasons.POPULAR}
    with pytest.raises(ValueError):  # not Redis' state: a bug is not hidden
        await service.fallback.recommend(buggy, "x", 1)


async def test_a_key_verified_before_is_taken_while_redis_cannot_be_read(redis):
    """In `bench chaos` three requests answered 500 while Valkey loaded its AOF: the key's
    5 s cache had expired and its verification read Redis."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from recommender.privacy.access import ApiKeyStore
    from recommender.store.connections import redis_async
    from streamrec.embedded import free_port

    store = ApiKeyStore(redis, cache_s=0)
    issued = await store.create({"read"}, "r")
    other = await store.create({"read"}, "never verified")
    assert (await store.verify(issued.token)) is not None
    store._redis = redis_async(f"redis://127.0.0.1:{free_port()}/0")  # Redis away
    try:
        assert (await store.verify(issued.token)) == issued.key
        with pytest.raises(RedisConnectionError):  # one never seen: not taken on trust
            await store.verify(other.token)
    finally:
        await store._redis.aclose()
        store._redis = redis
    await store.revoke(issued.key.key_id)
    assert await store.verify(issued.token) is None  # Redis back: a revocation holds
