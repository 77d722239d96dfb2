"""MovieLens-shaped events: the real ratings, cycled with fresh users and ids to any size."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pandas as pd

from recommender.lifecycle.families import SEQUENTIAL
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.connections import redis_sync
from streamrec.movielens import load_ratings, movies
from streamrec.publish import publish_events, publish_items
from streamrec.ratings_csv import clean_history
from streamrec.runtime import Runtime
from streams.producer import EventProducer

#: How long a benchmark waits for the sequential family's first version after the seed data.
SEQUENTIAL_WAIT_S = 300.0


def isolated(settings: Settings, prefix: str) -> Settings:
    """Settings whose topics and consumer group belong to this run alone."""
    run = f"{prefix}-{uuid.uuid4().hex[:6]}"
    return settings.model_copy(
        update={
            "topic_events": f"{run}-events",
            "topic_content": f"{run}-content",
            "topic_metrics": f"{run}-metrics",
            "topic_dead_letter": f"{run}-dead-letter",
            "worker_id": f"{run}-worker",
        }
    )


def movielens_events(n: int, prefix: str = "b") -> Iterator[tuple[str, bytes]]:
    """(key, value) pairs of `n` rating events in time order; pass r > 0 uses new user ids."""
    ratings = load_ratings().sort_values("timestamp")
    rows = list(
        ratings[["userId", "movieId", "rating", "timestamp"]].itertuples(index=False, name=None)
    )
    produced = 0
    cycle = 0
    while produced < n:
        for user, movie, rating, ts in rows:
            if produced >= n:
                return
            user_id = f"{user}" if cycle == 0 else f"{user}-{cycle}"
            event = {
                "event_id": f"{prefix}-{produced}",
                "user_id": user_id,
                "item_id": str(movie),
                "type": "rating",
                "value": float(rating),
                "ts": int(ts) * 1000,
            }
            yield user_id, json.dumps(event, separators=(",", ":")).encode()
            produced += 1
        cycle += 1


def seed_movielens(rt: Runtime, timeout_s: float = 600) -> pd.DataFrame:
    """Every MovieLens movie and rating through the running system, until a model covers them
    all; returns the cleaned events."""
    ratings = load_ratings()
    events, _ = clean_history(ratings)
    catalogue = list(movies(ratings))
    with EventProducer(
        rt.settings.infra.kafka_url,
        rt.settings.topic_events,
        rt.settings.topic_content,
    ) as producer:
        publish_items(producer, catalogue, total=len(catalogue), progress=False)
        sent = publish_events(producer, events, progress=False)
    rt.wait_for(lambda p: p.applied >= sent and p.model_watermark >= sent, timeout_s, poll_s=0.5)
    if rt.settings.content_models and rt.settings.sequential_weight > 0:
        wait_for_sequential(rt)
    return events


def wait_for_sequential(rt: Runtime, timeout_s: float = SEQUENTIAL_WAIT_S) -> str | None:
    """Wait for the content trainer's first sequential version to serve, so that a benchmark
    measures the system with the family on; say so when none came within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := sequential_version(rt):
            return found
        rt.check_children()
        time.sleep(0.5)
    print(f"bench: no sequential version within {timeout_s:g} s; measured without one")
    return None


def sequential_version(rt: Runtime) -> str | None:
    """The sequential family's served version, if any (for a benchmark's JSON)."""
    client = redis_sync(rt.settings.infra.redis_url)
    try:
        found = client.hget(keys.model_current(SEQUENTIAL), "version")
    finally:
        client.close()
    return str(found) if found else None
