"""`streamrec bench faults`: SIGKILL the worker while events stream in, then prove nothing was
lost or double-counted by comparing Redis with a pandas recomputation of the produced events.
Then two workers in one consumer group must build exactly the features one worker built.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import redis
from kafka import KafkaProducer

from recommender.settings import Settings
from recommender.store import keys
from recommender.store.connections import redis_async, redis_sync
from recommender.store.features import FeatureStore
from recommender.store.verification import (
    FeatureSnapshot,
    SnapshotDiff,
    compare,
    expected_features,
)
from streamrec.bench.report import write
from streamrec.bench.workload import isolated, movielens_events
from streamrec.runtime import Runtime, applied_at_least
from streams.producer import producer_config


def _flush(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.flushdb()


def _produce(
    settings: Settings, events: list[tuple[str, bytes]], rate: float, acked: list[int]
) -> None:
    producer = KafkaProducer(**producer_config(settings.infra.kafka_url))
    started = time.perf_counter()
    futures = []
    for i, (key, value) in enumerate(events):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        futures.append(producer.send(settings.topic_events, key=key.encode(), value=value))
        acked[0] = i + 1
    producer.flush()
    for f in futures:
        f.get(timeout=30)  # every send acknowledged, or this raises
    producer.close()


async def feature_snapshot(settings: Settings) -> tuple[FeatureSnapshot, dict[str, int]]:
    client = redis_async(settings.infra.redis_url)
    try:
        store = FeatureStore(client, settings)
        return await store.snapshot(), await store.stats.all()
    finally:
        await client.aclose()


def watch_stall(count: Callable[[], int], busy: threading.Thread, stall: list[float]) -> None:
    """``stall[0]``: the longest time ``count()`` (events processed so far) stood still while
    ``busy`` ran. Measured before the mark moves, so that a read that waited out a fault
    counts its wait; a read Redis refuses counts as standing still."""
    last, since = -1, time.perf_counter()
    while busy.is_alive():
        try:
            now_count = count()
        except redis.RedisError:
            now_count = last
        stall[0] = max(stall[0], time.perf_counter() - since)
        if now_count != last:
            last, since = now_count, time.perf_counter()
        time.sleep(0.25)


def against_fold(s: Settings, events: list[dict[str, Any]]) -> tuple[int, SnapshotDiff]:
    """(how many of ``events`` have no dedupe marker, the store's features of their users
    against a pandas fold of them, popularity left out: other runs' events count there too).
    ``events`` as produced (`value` absent or None where an event has none)."""
    secret = s.pseudonym_secret
    client: Any = redis_sync(s.infra.redis_url)
    pipe = client.pipeline(transaction=False)
    for e in events:
        pipe.exists(keys.seen(keys.pseudonymize(secret, e["user_id"]), e["event_id"]))
    lost = sum(1 for found in pipe.execute() if not found)
    client.close()
    actual, _ = asyncio.run(feature_snapshot(s))
    mine = {keys.pseudonymize(secret, e["user_id"]) for e in events}
    actual.user_items = {k: v for k, v in actual.user_items.items() if k[0] in mine}
    actual.user_counts = {k: v for k, v in actual.user_counts.items() if k[0] in mine}
    actual.popular = {}
    frame = pd.DataFrame(events)
    if "value" not in frame:
        frame = frame.assign(value=None)
    expected = expected_features(frame, s, lambda u: keys.pseudonymize(secret, u))
    expected.popular = {}
    return lost, compare(actual, expected)


def run_faults(
    settings: Settings,
    events: int = 50_000,
    kills: int = 5,
    rate: float = 600.0,
    seed: int = 7,
    json_path: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    settings = isolated(settings, "faults")
    payloads = list(movielens_events(events, prefix=f"k{run}"))
    rt = Runtime(settings, api_port=0)
    try:
        rt.start(worker=False, api=False)
        s = rt.settings
        url = s.infra.redis_url
        acked = [0]
        producer = threading.Thread(target=_produce, args=(s, payloads, rate, acked))
        worker = rt.start_worker()
        producer.start()
        recovery: list[float] = []
        for k in range(kills):
            # Kill mid-processing: once this worker has applied something, at a random moment.
            before = rt.progress().applied
            rt.wait_for(applied_at_least(min(before + 1, events)), 120, poll_s=0.1)
            time.sleep(rng.uniform(0.2, 2.0))
            rt.supervisor.kill(worker)
            if not quiet:
                applied_now = rt.progress().applied
                print(f"kill {k + 1}/{kills} at {applied_now} applied, {acked[0]} produced")
            worker = rt.start_worker()
            target, restarted = acked[0], time.perf_counter()
            rt.wait_for(applied_at_least(target), 120, poll_s=0.1)
            recovery.append(time.perf_counter() - restarted)
        producer.join()
        rt.wait_for(applied_at_least(events), 180, poll_s=0.1)
        time.sleep(1.0)  # anything still in flight would show up as a double count
        single, stats = asyncio.run(feature_snapshot(s))

        # The same input through two workers of a fresh consumer group, into database 2.
        two = s.model_copy(
            update={"redis_url": url.rsplit("/", 1)[0] + "/2", "worker_id": f"faults-pair-{run}"}
        )
        _flush(two.infra.redis_url)
        rt.start_worker("worker-a", two)
        rt.start_worker("worker-b", two)
        rt.wait_for(applied_at_least(events), 180, redis_url=two.redis_url, poll_s=0.1)
        time.sleep(1.0)
        pair, _ = asyncio.run(feature_snapshot(two))
        _flush(two.infra.redis_url)
    finally:
        rt.stop()

    rows = [json.loads(value) for _, value in payloads]
    secret = s.pseudonym_secret
    expected = expected_features(pd.DataFrame(rows), s, lambda u: keys.pseudonymize(secret, u))
    versus_truth = compare(single, expected)
    versus_single = compare(pair, single)
    applied = stats.get("events_applied", 0)
    results = {
        "produced": events,
        "applied": applied,
        # Events acknowledged by Kafka that never reached the store.
        "lost": events - applied,
        # Feature cells below (missing) or above (double-counted) the fold over distinct events.
        "missing_cells": versus_truth.missing,
        "double_counted": versus_truth.extra,
        "duplicates_suppressed": stats.get("duplicates_suppressed", 0),
        "kills": kills,
        "recovery_s_max": round(max(recovery), 2) if recovery else 0.0,
        "recovery_s_median": round(sorted(recovery)[len(recovery) // 2], 2) if recovery else 0.0,
        "recovery_s": [round(r, 2) for r in recovery],
        "two_workers_mismatched_cells": versus_single.missing + versus_single.extra,
        "two_workers_identical": versus_single.equal,
    }
    return write(json_path, "faults", results)
