"""The content models through the real system (Tansu, Valkey, the worker and its content trainer,
the API): an item without categories gets predicted ones, a brand-new item is recommended before
anyone touches it, a review's sentiment sets its weight, and a corrupt image is dead-lettered."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from recommender.store import keys
from recommender.store.connections import redis_sync
from streamrec.content_data import fine_food_reviews, movielens_movies
from streamrec.movielens import load_ratings
from streamrec.runtime import Runtime
from streams.producer import EventProducer
from streams.records import ContentV1, DeadLetterV1, EventV1
from tests.conftest import make_settings, read_topics

pytestmark = pytest.mark.integration


def _wait(what: str, check, timeout: float = 120.0, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def test_content_models_through_the_real_system(infra, tmp_path, redis):
    s = make_settings(
        tmp_path,
        kafka_url=infra.kafka_url,
        redis_url=infra.redis_url,
        content_models=True,
        content_min_examples=300,
        content_first_fit_epochs=4,
        content_publish_every=400,
        als_factors=16,
        als_regularization=10.0,
        als_min_events=500,
        refit_min_interval_s=2,
    )
    movies = movielens_movies()
    movies = movies[movies["genres"].map(len) > 0]
    ratings = load_ratings()
    counts = ratings["movieId"].astype(str).value_counts()
    known = movies[movies["movie_id"].isin(counts[counts >= 5].index)].head(1200)
    # A movie none of whose ratings is published: new to the system when its content arrives.
    new_movie = movies[
        ~movies["movie_id"].isin(known["movie_id"])
        & movies["movie_id"].isin(counts[counts >= 50].index)
    ].iloc[0]
    train, _ = fine_food_reviews()
    with Runtime(s, api_port=0) as rt:
        client = redis_sync(s.redis_url or "")
        auth = {"X-API-Key": rt.create_api_key({"read"}, "test")}
        with EventProducer(s.kafka_url or "", s.topic_events, s.topic_content) as producer:
            for m, title, genres in known[["movie_id", "title", "genres"]].itertuples(index=False):
                producer.send_content(ContentV1(item_id=m, title=title, categories=genres, ts=1))
            rows = ratings[ratings["movieId"].astype(str).isin(known["movie_id"])]
            for n, (u, m, r, ts) in enumerate(
                rows[["userId", "movieId", "rating", "timestamp"]].itertuples(index=False)
            ):
                producer.send_event(
                    EventV1(
                        event_id=f"r{n}",
                        user_id=str(u),
                        item_id=str(m),
                        type="rating",
                        value=float(r),
                        ts=int(ts) * 1000,
                    )
                )
            for i in range(600):  # reviews labelled by their ratings teach the sentiment model
                producer.send_event(
                    EventV1(
                        event_id=f"rev{i}",
                        user_id=f"reviewer{i % 40}",
                        item_id=f"food{i % 30}",
                        type="review",
                        value=5.0 if train.positive[i] else 1.0,
                        text=train.text[i],
                        ts=1_600_000_000_000 + i,
                    )
                )
            # A PNG's first bytes, then nothing an image decoder can read.
            bad = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
            producer.send_raw(
                s.topic_content,
                "broken",
                json.dumps({"item_id": "broken", "title": "t", "image": bad, "ts": 1}).encode(),
            )

        def served(family: str) -> str | None:
            found = client.hget(keys.model_current(family), "version")
            return None if found is None else str(found)

        _wait("text and sentiment models", lambda: served("text") and served("sentiment"), 240)

        # A content item without categories gets predicted ones, shown as predicted.
        with EventProducer(s.kafka_url or "", s.topic_events, s.topic_content) as producer:
            producer.send_content(ContentV1(item_id="uncategorised", title="Scream 5 (2022)", ts=2))
        meta = _wait(
            "predicted categories",
            lambda: (m := client.hgetall(keys.item_meta("uncategorised"))).get("predicted") and m,
        )
        predicted = json.loads(meta["predicted"])
        assert predicted and set(json.loads(meta["categories"])) == set(predicted)

        # A refit after the text model serves learns where content puts items; then a brand-new
        # movie is placed the moment it arrives, and recommended with a reason that says so.
        text_version = served("text")
        _wait(
            "a CF model with a cold-start map",
            lambda: (v := served("cf")) and _has_map(s.models_dir, v, text_version),
            240,
        )
        with EventProducer(s.kafka_url or "", s.topic_events, s.topic_content) as producer:
            producer.send_content(
                ContentV1(
                    item_id=new_movie["movie_id"],
                    title=new_movie["title"],
                    categories=new_movie["genres"],
                    ts=3,
                )
            )
        version = served("cf")
        assert version is not None
        _wait(
            "the new movie placed",
            lambda: client.hexists(keys.item_vectors(version), new_movie["movie_id"]),
        )
        users = sorted({str(u) for u in rows["userId"]})[:80]

        def recommended() -> list[dict[str, str]]:
            hits = []
            for u in users:
                body = httpx.get(
                    f"{rt.api_url}/v1/users/{u}/recommendations",
                    params={"k": 50},
                    headers=auth,
                ).json()
                hits += [i for i in body["items"] if i["item_id"] == new_movie["movie_id"]]
            return hits

        hits = _wait("the new movie in someone's recommendations", recommended, 30, 1)
        assert hits[0]["reason"].startswith("new, like ")

        # A review's weight follows its sentiment: a positive one counts, a negative one not.
        with EventProducer(s.kafka_url or "", s.topic_events, s.topic_content) as producer:
            for eid, item, text in (
                ("happy", "food-a", "Delicious! The best coffee I ever had, my kids love it."),
                ("sad", "food-b", "Awful, stale and tasteless. Threw it away, never again."),
            ):
                producer.send_event(
                    EventV1(
                        event_id=eid,
                        user_id="zoe",
                        item_id=item,
                        type="review",
                        text=text,
                        ts=1_700_000_000_000,
                    )
                )
        from recommender.store.keys import pseudonymize

        p = pseudonymize((s.pseudonym_key.get_secret_value()).encode(), "zoe")  # type: ignore[union-attr]
        weights = _wait(
            "zoe's reviews applied",
            lambda: (w := client.hgetall(keys.user_items(p))).get("food-b") is not None and w,
        )
        assert float(weights["food-a"]) > float(weights["food-b"])
        client.close()

    letters = [
        DeadLetterV1.model_validate_json(m.value) for m in read_topics(s, s.topic_dead_letter)
    ]
    assert [d.reason for d in letters if "image" in d.reason] == [
        next(d.reason for d in letters if "does not decode" in d.reason)
    ]


def _has_map(models_dir, version: str, text_version: str | None) -> bool:
    from recommender.lifecycle.families import cf_registry

    try:
        model = cf_registry(models_dir).load(version)
    except Exception:
        return False
    return model.content_map is not None and model.content_map.text_version == text_version
