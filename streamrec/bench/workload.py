"""MovieLens-shaped events: the real ratings, cycled with fresh users and ids to any size."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pandas as pd

from recommender.settings import Settings
from streamrec.movielens import load_ratings, movies
from streamrec.publish import publish_events, publish_items
from streamrec.ratings_csv import clean_history
from streamrec.runtime import Runtime
from streams.producer import EventProducer


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
    return events
