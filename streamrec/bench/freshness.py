"""`streamrec bench freshness`: how long from a user's event to recommendations that reflect it.

The system runs on the embedded parts with MovieLens loaded and a model serving it, under a
steady background load (MovieLens-shaped events of other users). Each probe sends one event for a
known user and polls the API until the answer's `user_event_ms` (the newest event folded into the
user's vector) reaches it. Also measured: a full refit of the whole data set, the incremental
update per user, and the API's recommend latency under the same load.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from kafka import KafkaProducer

from models.als import fit_als
from recommender.evaluation import temporal_split
from recommender.history import clean_history, with_weights
from recommender.settings import Settings
from streamrec.bench.report import write
from streamrec.bench.workload import isolated, seed_movielens
from streamrec.movielens import load_ratings
from streamrec.runtime import Runtime
from streams.producer import producer_config


def _background(
    settings: Settings, rate: int, stop: threading.Event, skip_items: frozenset[str] = frozenset()
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


def _probe(
    rt: Runtime, producer: KafkaProducer, client: httpx.Client, user: str, item: str
) -> tuple[float, list[float]]:
    """(ms from send until the API reflects the event, the API latencies seen meanwhile)."""
    ts = int(time.time() * 1000)
    event = {
        "event_id": f"probe-{uuid.uuid4().hex}",
        "user_id": user,
        "item_id": item,
        "type": "click",
        "ts": ts,
    }
    sent = time.perf_counter()
    producer.send(rt.settings.topic_events, key=user.encode(), value=json.dumps(event).encode())
    producer.flush()
    calls: list[float] = []
    while time.perf_counter() - sent < 30:
        t0 = time.perf_counter()
        body = client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()
        calls.append((time.perf_counter() - t0) * 1000)
        if (body.get("user_event_ms") or 0) >= ts:
            return (time.perf_counter() - sent) * 1000, calls
        time.sleep(0.002)
    raise TimeoutError(f"the event for {user} was not reflected within 30 s")


def probes(
    rt: Runtime, users: list[str], items: list[str], token: str, seconds: float
) -> tuple[list[float], list[float]]:
    """Event-to-recommendation latencies of random probes for ``seconds``, and the API
    latencies seen meanwhile."""
    rng = random.Random(11)
    latencies: list[float] = []
    calls: list[float] = []
    producer = KafkaProducer(**producer_config(rt.settings.infra.kafka_url, linger_ms=0))
    with httpx.Client(base_url=rt.api_url, headers={"X-API-Key": token}, timeout=10) as client:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            ms, seen = _probe(rt, producer, client, rng.choice(users), rng.choice(items))
            latencies.append(ms)
            calls.extend(seen)
            time.sleep(rng.uniform(0.05, 0.15))
    producer.close()
    return latencies, calls


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
        users = sorted(events["user_id"].unique())
        items = sorted(events["item_id"].unique())
        token = rt.create_api_key({"read"}, "bench")
        stop = threading.Event()
        sent: list[int] = []
        load = threading.Thread(
            target=lambda: sent.append(_background(rt.settings, background_rate, stop)),
            daemon=True,
        )
        load.start()
        time.sleep(3)  # the load reaches its rate
        latencies, calls = probes(rt, users, items, token, seconds)
        stop.set()
        load.join(30)
    lat, api = np.asarray(latencies), np.asarray(calls)
    results = {
        "background_events_per_s": background_rate,
        "background_events_sent": sent[0] if sent else 0,
        "probes": len(latencies),
        "event_to_recs_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "event_to_recs_p99_ms": round(float(np.percentile(lat, 99)), 1),
        "event_to_recs_max_ms": round(float(lat.max()), 1),
        "api_recs_p50_ms": round(float(np.percentile(api, 50)), 2),
        "api_recs_p99_ms": round(float(np.percentile(api, 99)), 2),
        **costs,
    }
    return write(json_path, "freshness", results)
