"""`streamrec bench freshness`: how long from a user's event to recommendations that reflect it.

The system runs on the embedded parts with MovieLens loaded and a model serving it, under a
steady background load (MovieLens-shaped events of other users). Each probe sends one event for a
known user, polls Redis every millisecond until the user's vector holds it, then asks the API
until the answer's `user_event_ms` (the newest event folded into the user's vector) reaches it.
In the same run a consumer that does nothing else (its own process and group) reads the same
topic: its p99 is the broker's own share, the ceiling of the Kafka leg. Also measured: a full
refit of the whole data set, the incremental update per user, and the API's recommend latency
under the same load.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from models.fitting import fit_als
from recommender.cf.vectors import decode_vector
from recommender.errors import StreamrecError
from recommender.evaluation.ranking import temporal_split
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.keys import CF
from streamrec.bench.report import write
from streamrec.bench.workload import isolated, seed_movielens, sequential_version
from streamrec.movielens import load_ratings
from streamrec.ratings_csv import clean_history, with_weights
from streamrec.runtime import Runtime
from streams.kafka import bootstrap_servers
from streams.producer import producer_config


def _background(
    settings: Settings, rate: int, stop: Any, skip_items: frozenset[str] = frozenset()
) -> int:
    """MovieLens ratings as new users' events at ``rate``/s until ``stop``; returns how many.
    ``skip_items``: movies the load must not touch (brand-new items a benchmark times)."""
    producer = KafkaProducer(**producer_config(settings.infra.kafka_url))
    ratings = load_ratings()
    ratings = ratings[~ratings["movieId"].astype(str).isin(skip_items)]
    rows = ratings[["userId", "movieId", "rating"]].itertuples(index=False, name=None)
    run = uuid.uuid4().hex[:6]
    started, sent = time.perf_counter(), 0
    for user, movie, rating in rows:
        if stop.is_set():
            break
        delay = started + sent / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        user_id = f"bg-{run}-{user}"
        event = {
            "event_id": f"bg-{run}-{sent}",
            "user_id": user_id,
            "item_id": str(movie),
            "type": "rating",
            "value": float(rating),
            "ts": int(time.time() * 1000) - 60_000,  # never newer than a probe
        }
        producer.send(settings.topic_events, key=user_id.encode(), value=json.dumps(event).encode())
        sent += 1
    producer.flush()
    producer.close()
    return sent


def _load_process(
    settings: Settings, rate: int, stop: Any, skip_items: frozenset[str], out: Any
) -> None:
    out.put(_background(settings, rate, stop, skip_items))


class BackgroundLoad:
    """`_background` in a process of its own while the block runs; `sent` after it. Not a
    thread of the process that times probes: its sends (kafka-python, Python code) would hold
    that process's GIL when a probe's poll wakes, and the probe would time the wait."""

    def __init__(self, settings: Settings, rate: int, skip_items: frozenset[str] = frozenset()):
        spawn = multiprocessing.get_context("spawn")
        self._stop, self._out = spawn.Event(), spawn.Queue()
        self._process = spawn.Process(
            target=_load_process, args=(settings, rate, self._stop, skip_items, self._out)
        )
        self.sent = 0

    def __enter__(self) -> BackgroundLoad:
        self._process.start()
        time.sleep(3)  # the load reaches its rate
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sent = int(self._out.get(timeout=60))
        self._process.join(30)


def _bare_consumer(settings: Settings, ready: Any, stop: Any, out: Any) -> None:
    """In a process of its own: the events topic read by a consumer that does nothing else
    (aiokafka in a group of its own, with the worker's fetch wait); puts the ms from each
    probe's `ts` (its send) to its arrival on ``out`` when ``stop`` is set. The broker's own
    share of `send_to_applied` in the same run: its ceiling."""

    async def consume() -> list[float]:
        consumer = AIOKafkaConsumer(
            settings.topic_events,
            bootstrap_servers=bootstrap_servers(settings.infra.kafka_url),
            group_id=f"bench-bare-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="latest",
            fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        await consumer.start()
        found: list[float] = []
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            ready.set()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                now_ms = time.time() * 1000
                for records in batches.values():
                    for record in records:
                        if b'"probe-' in record.value:  # the background load's are "bg-..."
                            found.append(now_ms - json.loads(record.value)["ts"])
        finally:
            await consumer.stop()
        return found

    out.put(asyncio.run(consume()))


@dataclass
class Probe:
    """One probe's milestones, in ms after its send: the event applied to the feature store
    (its dedupe marker written), the user's vector folded in with it (the vector's `as_of`),
    and the API answering with it."""

    applied_ms: float | None = None
    folded_ms: float | None = None
    answered_ms: float | None = None


def _probe(
    rt: Runtime,
    producer: KafkaProducer,
    client: httpx.Client,
    redis_client: redis.Redis,
    user: str,
    item: str,
) -> tuple[Probe, list[float]]:
    """The probe's milestones (`Probe`), and the API latencies seen meanwhile. Redis is polled
    every millisecond for the first two; the API is asked once the user's vector holds the
    event (and every 10 ms after the first second, in case a new model version came
    meanwhile), so that `answered` is the answer to the first question asked after the
    fold-in, not the next turn of a loop that asks the API all along."""
    ts = int(time.time() * 1000)
    event_id = f"probe-{uuid.uuid4().hex}"
    event = {"event_id": event_id, "user_id": user, "item_id": item, "type": "click", "ts": ts}
    pseudonym = keys.pseudonymize(rt.settings.pseudonym_secret, user)
    sent = time.perf_counter()
    producer.send(rt.settings.topic_events, key=user.encode(), value=json.dumps(event).encode())
    producer.flush()
    calls: list[float] = []
    probe = Probe()
    asked_ms = 0.0

    def now_ms() -> float:
        return (time.perf_counter() - sent) * 1000

    def folded() -> bool:
        version = redis_client.hget(keys.model_current(CF), "version")
        if version is None:
            return False
        vec = decode_vector(redis_client.hget(keys.user_vectors(str(version)), pseudonym))
        return vec is not None and vec.as_of >= ts

    while time.perf_counter() - sent < 30:
        if probe.applied_ms is None and redis_client.exists(keys.seen(pseudonym, event_id)):
            probe.applied_ms = now_ms()
        if probe.applied_ms is not None and probe.folded_ms is None and folded():
            probe.folded_ms = now_ms()
        if probe.folded_ms is not None or (now_ms() > 1000 and now_ms() - asked_ms >= 10):
            asked_ms = now_ms()
            body = client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()
            calls.append(now_ms() - asked_ms)
            if (body.get("user_event_ms") or 0) >= ts:
                probe.answered_ms = now_ms()
                probe.applied_ms = probe.applied_ms or probe.answered_ms
                probe.folded_ms = probe.folded_ms or probe.answered_ms
                return probe, calls
        time.sleep(0.001)
    raise TimeoutError(f"the event for {user} was not reflected within 30 s")


def probes(
    rt: Runtime, users: list[str], items: list[str], token: str, seconds: float
) -> tuple[list[Probe], list[float]]:
    """Random probes for ``seconds``, and the API latencies seen meanwhile."""
    rng = random.Random(11)
    found: list[Probe] = []
    calls: list[float] = []
    producer = KafkaProducer(**producer_config(rt.settings.infra.kafka_url, linger_ms=0))
    redis_client = redis.Redis.from_url(rt.settings.infra.redis_url, decode_responses=True)
    with httpx.Client(base_url=rt.api_url, headers={"X-API-Key": token}, timeout=10) as client:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            probe, seen = _probe(
                rt, producer, client, redis_client, rng.choice(users), rng.choice(items)
            )
            found.append(probe)
            calls.extend(seen)
            time.sleep(rng.uniform(0.05, 0.15))
    producer.close()
    redis_client.close()
    return found, calls


def breakdown(found: list[Probe]) -> dict[str, float]:
    """p50 and p99 of each stage: send -> applied (Kafka, the worker's fetch, the feature
    store's script), applied -> folded (the user's vector), folded -> answered (the
    API's answer to a question asked after the fold-in; the polling adds up to 1 ms)."""
    stages = {
        "send_to_applied": [p.applied_ms or 0.0 for p in found],
        "applied_to_folded": [(p.folded_ms or 0.0) - (p.applied_ms or 0.0) for p in found],
        "folded_to_answered": [(p.answered_ms or 0.0) - (p.folded_ms or 0.0) for p in found],
    }
    out: dict[str, float] = {}
    for name, values in stages.items():
        v = np.asarray(values)
        out[f"{name}_p50_ms"] = round(float(np.percentile(v, 50)), 1)
        out[f"{name}_p99_ms"] = round(float(np.percentile(v, 99)), 1)
    return out


def _training_costs(settings: Settings) -> dict[str, float]:
    """Full refit of MovieLens, and per-user incremental updates, in this process."""
    events, _ = clean_history(load_ratings())
    whole = temporal_split(with_weights(events, settings), test_fraction=0.0)
    data, histories = whole.matrix(), whole.train
    users = sorted(histories)
    params = {
        "factors": settings.als_factors,
        "regularization": settings.als_regularization,
        "iterations": settings.als_iterations,
        "alpha": settings.als_alpha,
        "neighbours": settings.knn_neighbours,
    }
    t0 = time.perf_counter()
    model = fit_als(data, **params).model(**params)
    refit_s = time.perf_counter() - t0
    all_h = [histories[u] for u in users]
    t0 = time.perf_counter()
    model.user_vectors(all_h)
    batch_ms = (time.perf_counter() - t0) * 1000 / len(users)
    singles = []
    for h in random.Random(7).sample(all_h, 50):
        t0 = time.perf_counter()
        model.user_vectors([h])
        singles.append((time.perf_counter() - t0) * 1000)
    return {
        "refit_s": round(refit_s, 3),
        "refit_events": len(events),
        "update_ms_per_user_batched": round(batch_ms, 4),
        "update_ms_one_user": round(statistics.median(singles), 3),
    }


def run_freshness(
    settings: Settings,
    seconds: float = 30.0,
    background_rate: int = 1000,
    json_path: Path | None = None,
) -> dict[str, Any]:
    costs = _training_costs(settings)
    bench_settings = isolated(settings, "fresh").model_copy(
        update={"api_rate_per_s": 1e9, "api_rate_burst": 10**9}
    )
    with Runtime(bench_settings, api_port=0) as rt:
        events = seed_movielens(rt)
        sequential = sequential_version(rt)
        users = sorted(events["user_id"].unique())
        items = sorted(events["item_id"].unique())
        token = rt.create_api_key({"read"}, "bench")
        spawn = multiprocessing.get_context("spawn")
        bare_ready, bare_stop, bare_out = spawn.Event(), spawn.Event(), spawn.Queue()
        bare = spawn.Process(
            target=_bare_consumer, args=(rt.settings, bare_ready, bare_stop, bare_out)
        )
        bare.start()
        try:
            if not bare_ready.wait(60):
                raise StreamrecError("the bare consumer did not join its group within 60 s")
            with BackgroundLoad(rt.settings, background_rate) as load:
                found, calls = probes(rt, users, items, token, seconds)
            time.sleep(1)  # the last probe reaches the bare consumer too
            bare_stop.set()
            bare_ms = np.asarray(bare_out.get(timeout=30) or [0.0])
        finally:  # a failed probe must not leave it polling a broker that is gone
            bare_stop.set()
            bare.join(30)
            if bare.is_alive():
                bare.kill()
    lat, api = np.asarray([p.answered_ms or 0.0 for p in found]), np.asarray(calls)
    results = {
        "background_events_per_s": background_rate,
        "background_events_sent": load.sent,
        "sequential_version": sequential,
        "probes": len(found),
        "event_to_recs_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "event_to_recs_p99_ms": round(float(np.percentile(lat, 99)), 1),
        "event_to_recs_max_ms": round(float(lat.max()), 1),
        "api_recs_p50_ms": round(float(np.percentile(api, 50)), 2),
        "api_recs_p99_ms": round(float(np.percentile(api, 99)), 2),
        **breakdown(found),
        "broker_only_p50_ms": round(float(np.percentile(bare_ms, 50)), 1),
        "broker_only_p99_ms": round(float(np.percentile(bare_ms, 99)), 1),
        **costs,
    }
    return write(json_path, "freshness", results)
