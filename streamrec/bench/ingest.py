"""`streamrec bench ingest`: worker throughput against two ceilings, freshness, memory.

All figures come from one run on one broker and one Valkey:
- `events_per_s`: the streamrec worker (validation, dedupe, every feature, CF updates) draining
  a pre-filled topic;
- `faust_trivial_events_per_s`: a Faust agent that does nothing per event (the framework ceiling);
- `aiokafka_pipeline_events_per_s`: a plain aiokafka loop, one Redis pipeline per 1000 events;
- `freshness_p50_ms` / `_p99_ms`: producer send to the event's features visible in Redis, at a
  steady rate (sampled every 10th event, polled every millisecond);
- `redis_bytes_per_user` / `_per_item`: `MEMORY USAGE` summed over each kind of key.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from recommender.settings import Settings
from recommender.store import keys
from recommender.store.connections import redis_sync
from streamrec.bench.report import write
from streamrec.bench.workload import isolated, movielens_events
from streamrec.runtime import Progress, Runtime
from streams.kafka import bootstrap_servers
from streams.producer import producer_config


def _producer(settings: Settings, linger_ms: int = 20) -> KafkaProducer:
    return KafkaProducer(
        **producer_config(settings.infra.kafka_url, linger_ms=linger_ms, batch_size=256 * 1024)
    )


def _fill(settings: Settings, n: int, prefix: str = "b") -> float:
    producer = _producer(settings)
    started = time.perf_counter()
    for key, value in movielens_events(n, prefix):
        producer.send(settings.topic_events, key=key.encode(), value=value)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return n / elapsed


async def _aiokafka_pipeline(settings: Settings, n: int) -> float:
    """Consume n events and apply one HINCRBYFLOAT each, 1000 per pipeline, into database 1."""
    consumer = AIOKafkaConsumer(
        settings.topic_events,
        bootstrap_servers=bootstrap_servers(settings.infra.kafka_url),
        group_id=f"bench-aiokafka-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=1000,
    )
    db1 = settings.infra.redis_url.rsplit("/", 1)[0] + "/1"
    client = redis.asyncio.Redis.from_url(db1)
    await consumer.start()
    seen, first = 0, 0.0
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            pipe = client.pipeline(transaction=False)
            for records in batches.values():
                for record in records:
                    if seen == 0:
                        first = time.perf_counter()
                    event = json.loads(record.value)
                    pipe.hincrbyfloat(f"bench:{event['user_id']}", event["item_id"], event["value"])
                    seen += 1
            await pipe.execute()
        return n / (time.perf_counter() - first)
    finally:
        await consumer.stop()
        await client.flushdb()
        await client.aclose()


def _trivial_faust(rt: Runtime, n: int, timeout_s: float) -> float:
    out = rt.log_dir / "trivial.json"
    child = rt.supervisor.start(
        "trivial-faust",
        [
            sys.executable,
            "-m",
            "streamrec.bench.trivial_faust",
            rt.settings.infra.kafka_url,
            rt.settings.topic_events,
            str(n),
            str(out),
        ],
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not out.exists():
            if time.monotonic() > deadline or child.process.poll() is not None:
                raise RuntimeError(f"trivial Faust agent failed:\n{rt.supervisor.tail(child)}")
            time.sleep(0.1)
        result = json.loads(out.read_text())
        return float(result["events"] / result["seconds"])
    finally:
        rt.supervisor.stop(child)


def _streamrec_worker(rt: Runtime, n: int, timeout_s: float) -> float:
    """Events/s from the first applied batch to the n-th event."""
    rt.start_worker()
    first: list[tuple[float, int]] = []
    last = [0.0]

    def done(progress: Progress) -> bool:
        last[0] = time.perf_counter()
        if progress.applied and not first:
            first.append((last[0], progress.applied))
        return progress.applied >= n

    final = rt.wait_for(done, timeout_s, poll_s=0.02)
    started, counted = first[0]
    return (final.applied - counted) / (last[0] - started)


def _freshness(
    settings: Settings, client: redis.Redis, rate: int, seconds: float
) -> tuple[float, float, int]:
    """Send `rate` events/s for `seconds`; time every 10th from send to visible in Redis."""
    producer = _producer(settings, linger_ms=1)
    secret = settings.pseudonym_secret
    outstanding: dict[str, float] = {}  # dedupe marker -> sent at
    latencies: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def poll() -> None:
        while not (done.is_set() and not outstanding):
            with lock:
                pending = list(outstanding.items())
            if pending:
                pipe = client.pipeline(transaction=False)
                for marker, _ in pending:
                    pipe.exists(marker)
                found = pipe.execute()
                now = time.perf_counter()
                with lock:
                    for (marker, sent), hit in zip(pending, found, strict=True):
                        if hit:
                            latencies.append((now - sent) * 1000)
                            del outstanding[marker]
            time.sleep(0.001)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    total = int(rate * seconds)
    started = time.perf_counter()
    for i, (key, value) in enumerate(movielens_events(total, prefix=f"f{uuid.uuid4().hex[:6]}")):
        target = started + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if i % 10 == 0:
            event = json.loads(value)
            marker = keys.seen(keys.pseudonymize(secret, event["user_id"]), event["event_id"])
            with lock:
                outstanding[marker] = time.perf_counter()
        producer.send(settings.topic_events, key=key.encode(), value=value)
    producer.flush()
    done.set()
    poller.join(timeout=30)
    producer.close()
    lat = np.asarray(latencies)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), len(lat)


def _memory(client: redis.Redis) -> tuple[float, float, float]:
    """(bytes per user, bytes per item, bytes per dedupe marker)."""

    def total(pattern: str, limit: int | None = None) -> tuple[int, int]:
        size = count = 0
        batch: list[str] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if limit and len(batch) >= limit:
                break
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key)
        for used in pipe.execute():
            size += int(used or 0)
            count += 1
        return size, count

    users = int(client.zcard(keys.USERS_ACTIVE))
    user_bytes = total("u:*")[0] + total("model:*:users")[0]
    user_bytes += int(client.memory_usage(keys.USERS_ACTIVE) or 0)
    items = max(int(client.zcard(keys.ITEMS_POPULAR)), 1)
    item_bytes = total("item:*")[0] + sum(
        int(client.memory_usage(k) or 0) for k in (keys.ITEMS_POPULAR, keys.ITEMS_CATALOGUE)
    )
    seen_bytes, seen_count = total("seen:*", limit=2000)
    return user_bytes / max(users, 1), item_bytes / items, seen_bytes / max(seen_count, 1)


def run_ingest(
    settings: Settings,
    events: int = 200_000,
    freshness_rate: int = 2000,
    freshness_s: float = 30.0,
    json_path: Path | None = None,
) -> dict[str, Any]:
    settings = isolated(settings, "ingest")
    rt = Runtime(settings, api_port=0)
    try:
        rt.start(worker=False, api=False)
        client = redis_sync(rt.settings.infra.redis_url)
        print(f"filling {rt.settings.topic_events} with {events:,} MovieLens-shaped events...")
        produce_rate = _fill(rt.settings, events)
        print("aiokafka + Redis pipeline baseline...")
        aiokafka_rate = asyncio.run(_aiokafka_pipeline(rt.settings, events))
        print("trivial Faust agent baseline...")
        trivial_rate = _trivial_faust(rt, events, timeout_s=300)
        print("streamrec worker...")
        worker_rate = _streamrec_worker(rt, events, timeout_s=600)
        print(f"freshness at {freshness_rate} events/s for {freshness_s:.0f}s...")
        p50, p99, samples = _freshness(rt.settings, client, freshness_rate, freshness_s)
        per_user, per_item, per_seen = _memory(client)
        client.close()
    finally:
        rt.stop()
    results = {
        "events": events,
        "events_per_s": round(worker_rate, 1),
        "faust_trivial_events_per_s": round(trivial_rate, 1),
        "aiokafka_pipeline_events_per_s": round(aiokafka_rate, 1),
        "producer_events_per_s": round(produce_rate, 1),
        "freshness_rate_per_s": freshness_rate,
        "freshness_samples": samples,
        "freshness_p50_ms": round(p50, 2),
        "freshness_p99_ms": round(p99, 2),
        "redis_bytes_per_user": round(per_user, 1),
        "redis_bytes_per_item": round(per_item, 1),
        "redis_bytes_per_dedupe_marker": round(per_seen, 1),
        "worker_vs_trivial_faust": round(worker_rate / trivial_rate, 2),
        "worker_vs_aiokafka_ceiling": round(worker_rate / aiokafka_rate, 3),
    }
    return write(json_path, "ingest", results)
