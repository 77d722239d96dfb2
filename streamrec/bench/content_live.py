"""The content models' live figures (part of `streamrec bench content`): how soon a brand-new
item reaches a matching user's recommendations, and what the content models cost the stream:
ingest events/s and event-to-recommendation latency with them on and off, in the same run."""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import Any

import httpx
import numpy as np
from kafka import KafkaProducer

from recommender.settings import Settings
from streamrec.bench.freshness import BackgroundLoad, probes
from streamrec.bench.ingest import _streamrec_worker
from streamrec.bench.workload import isolated, movielens_events
from streamrec.content_data import fine_food_reviews
from streamrec.movielens import load_ratings, movies
from streamrec.placement import matching_users, wait_cold_start
from streamrec.publish import publish_events, publish_items
from streamrec.ratings_csv import clean_history
from streamrec.runtime import Runtime
from streams.producer import EventProducer, producer_config
from streams.records import ContentV1

NEW_ITEMS = 50
PROBE_SECONDS = 20.0
BACKGROUND_RATE = 1000
INGEST_EVENTS = 40_000


def _percentiles(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values)
    return round(float(np.percentile(a, 50)), 1), round(float(np.percentile(a, 99)), 1)


def _seed(rt: Runtime, held: set[str], timeout_s: float = 900) -> list[str]:
    """MovieLens without the ``held`` movies (no content, no ratings); returns the users."""
    ratings = load_ratings()
    ratings = ratings[~ratings["movieId"].astype(str).isin(held)]
    events, _ = clean_history(ratings)
    catalogue = [m for m in movies(ratings) if m.item_id not in held]
    with EventProducer(
        rt.settings.infra.kafka_url, rt.settings.topic_events, rt.settings.topic_content
    ) as producer:
        publish_items(producer, catalogue, total=len(catalogue), progress=False)
        sent = publish_events(producer, events, progress=False)
    rt.wait_for(lambda p: p.applied >= sent and p.model_watermark >= sent, timeout_s, poll_s=0.5)
    return sorted(events["user_id"].unique())


def _with_load(rt: Runtime, work: Any, held: frozenset[str] = frozenset()) -> Any:
    """``work()`` under the background load; the load never touches the ``held`` items (they
    are brand-new: an interaction would fold them in from their users, not their content)."""
    with BackgroundLoad(rt.settings, BACKGROUND_RATE, held):
        return work()


def _new_items(rt: Runtime, new: list[ContentV1], users: list[str], token: str) -> dict[str, Any]:
    """Publish each new item and time it until it shows in the recommendations of the user it
    suits best (chosen just before, from the same placement the worker computes); an item close
    to no one's taste (`serve_new_item_within`) is shown to no one and counted apart."""
    latencies: list[float] = []
    missed = unmatched = 0
    producer = EventProducer(
        rt.settings.infra.kafka_url, rt.settings.topic_events, rt.settings.topic_content
    )
    with httpx.Client(base_url=rt.api_url, headers={"X-API-Key": token}, timeout=10) as http:
        for n, item in enumerate(new):
            # Against the version served now: refits under the load move every item and user.
            cf_version, _ = wait_cold_start(rt.settings, 900, rt.check_children)
            user, closer = matching_users(rt.settings, cf_version, new[: n + 1], users)[-1]
            sent = time.perf_counter()
            producer.send_content(item)
            producer.flush()
            if closer >= rt.settings.serve_new_item_within:
                unmatched += 1  # close to no one's taste: shown to no one, by design
                continue
            while True:
                body = http.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()
                if any(i["item_id"] == item.item_id for i in body["items"]):
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
                if time.perf_counter() - sent > 10:
                    missed += 1
                    latencies.append(10_000.0)
                    break
                time.sleep(0.01)
    producer.close()
    p50, p99 = _percentiles(latencies)
    return {
        "new_items": len(new),
        "new_items_matching_no_one": unmatched,
        "new_item_to_recs_p50_ms": p50,
        "new_item_to_recs_p99_ms": p99,
        "new_items_missed_10s": missed,
    }


def _system(settings: Settings, content: bool, new: list[ContentV1]) -> dict[str, Any]:
    s = isolated(settings, "content-on" if content else "content-off").model_copy(
        update={"content_models": content, "api_rate_per_s": 1e9, "api_rate_burst": 10**9}
    )
    with Runtime(s, api_port=0) as rt:
        users = _seed(rt, {it.item_id for it in new})
        token = rt.create_api_key({"read"}, "bench")
        out: dict[str, Any] = {}
        if content:
            held = frozenset(it.item_id for it in new)
            out |= _with_load(rt, lambda: _new_items(rt, new, users, token), held)
        items = sorted({m.item_id for m in movies(load_ratings())} - {i.item_id for i in new})
        found, _ = _with_load(rt, lambda: probes(rt, users, items, token, PROBE_SECONDS))
        p50, p99 = _percentiles([p.answered_ms or 0.0 for p in found])
        tag = "on" if content else "off"
        return out | {
            f"event_to_recs_p50_ms_content_{tag}": p50,
            f"event_to_recs_p99_ms_content_{tag}": p99,
        }


def _ingest(settings: Settings, content: bool, sequential: bool = True) -> float:
    """Worker events/s over rating events with reviews and content items among them (the
    sequential family trained by the content trainer unless ``sequential`` is off)."""
    train, _ = fine_food_reviews()
    weight = settings.sequential_weight if sequential else 0.0
    rt = Runtime(
        isolated(settings, "ingest-content").model_copy(
            update={"content_models": content, "sequential_weight": weight}
        ),
        api_port=0,
    )
    try:
        rt.start(worker=False, api=False)
        s = rt.settings
        producer = KafkaProducer(**producer_config(s.infra.kafka_url, linger_ms=20))
        reviews = 0
        for n, (key, value) in enumerate(movielens_events(INGEST_EVENTS)):
            producer.send(s.topic_events, key=key.encode(), value=value)
            if n % 20 == 0:  # one review in twenty events, from a real review text
                i = reviews % len(train.text)
                review = {
                    "event_id": f"review-{reviews}",
                    "user_id": key,
                    "item_id": f"food-{i % 300}",
                    "type": "review",
                    "value": 5.0 if train.positive[i] else 1.0,
                    "text": train.text[i],
                    "ts": 1_600_000_000_000 + reviews,
                }
                producer.send(s.topic_events, key=key.encode(), value=json.dumps(review).encode())
                reviews += 1
        for m in list(movies(load_ratings()))[:2000]:
            producer.send(
                s.topic_content, key=m.item_id.encode(), value=m.model_dump_json().encode()
            )
        producer.flush()
        producer.close()
        return _streamrec_worker(rt, INGEST_EVENTS + reviews, 900)
    finally:
        rt.stop()


def run_live(settings: Settings) -> dict[str, Any]:
    rng = random.Random(5)
    catalogue = [m for m in movies(load_ratings()) if m.categories]
    new = rng.sample(catalogue, NEW_ITEMS)
    print("content: live, content models on...", flush=True)
    results = _system(settings, True, new)
    print("content: live, content models off...", flush=True)
    results |= _system(settings, False, new)
    print("content: ingest on and off, alternated twice...", flush=True)
    on_runs, off_runs = [], []
    for _ in range(2):
        on_runs.append(_ingest(settings, True))
        off_runs.append(_ingest(settings, False))
    on, off = statistics.median(on_runs), statistics.median(off_runs)
    print("content: ingest with the sequential family off, twice...", flush=True)
    no_seq = statistics.median([_ingest(settings, True, sequential=False) for _ in range(2)])
    results |= {
        "ingest_events_per_s_sequential_off": no_seq,
        "ingest_ratio_sequential_on_off": on / no_seq,
        "ingest_events_per_s_content_on": on,
        "ingest_events_per_s_content_off": off,
        "ingest_ratio_content_on_off": on / off,
        "event_to_recs_p99_ratio_off_on": results["event_to_recs_p99_ms_content_off"]
        / results["event_to_recs_p99_ms_content_on"],
    }
    return results
