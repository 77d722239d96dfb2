"""`streamrec demo`: MovieLens through Kafka into Redis, then recommendations over HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx

from recommender.privacy.access import SCOPES
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from streamrec.banner import print_banner
from streamrec.demo_taste import show_taste_change
from streamrec.movielens import load_ratings, movies
from streamrec.progress import WorkerTimeoutError, wait_until_served
from streamrec.publish import publish_events, publish_items
from streamrec.ratings_csv import clean_history
from streamrec.runtime import Runtime
from streams.producer import EventProducer


async def _show_user(rt: Runtime, token: str, user_id: str, titles: dict[str, str]) -> None:
    redis = redis_async(rt.settings.infra.redis_url)
    try:
        recent = await FeatureStore(redis, rt.settings).users.recent(user_id, 5)
    finally:
        await redis.aclose()
    headers = {"X-API-Key": token}
    async with httpx.AsyncClient(base_url=rt.api_url, timeout=10, headers=headers) as client:
        resp = await client.get(
            f"/v1/users/{user_id}/recommendations", params={"k": 10, "explain": "true"}
        )
        resp.raise_for_status()
        body = resp.json()
    print(f"\nUser {user_id}")
    print("  last rated:")
    for r in recent:
        print(f"    - {titles.get(r.item_id, r.item_id)}")
    print(f"  recommended (model {body['model_version']}):")
    for rank, item in enumerate(body["items"], 1):
        print(
            f"    {rank:2d}. {item['title'] or item['item_id']}  "
            f"[{item['score']:.3f}, {item['reason']}]"
        )


#: The demo's recency half-life, unless STREAMREC_RECENCY_HALF_LIFE_S is set: its change of
#: taste comes years after the user's MovieLens history, the case a half-life is for. Without one
#: a regular user's list moves less after five films (ad hoc: 1-6 of 10 new; with it 5-10).
DEMO_HALF_LIFE_S = 30 * 86_400.0


def run_demo(
    settings: Settings, serve: bool = False, limit: int | None = None, timeout_s: float = 240.0
) -> int:
    if "recency_half_life_s" not in settings.model_fields_set:
        settings = settings.model_copy(update={"recency_half_life_s": DEMO_HALF_LIFE_S})
    ratings = load_ratings()
    if limit:
        ratings = ratings.sort_values("timestamp").head(limit)
    catalogue = list(movies(ratings))
    titles = {m.item_id: m.title for m in catalogue}
    content = None
    if settings.content_models:
        from streamrec.demo_content import prepare

        counts = ratings["movieId"].astype(str).value_counts()
        popularity = {str(k): int(v) for k, v in counts.items()}
        content = prepare(catalogue, popularity)
        catalogue = content.catalogue
        ratings = ratings[ratings["movieId"].astype(str) != content.new_movie.item_id]
    events, report = clean_history(ratings, settings.rating_scale)
    print(
        f"MovieLens: {report.rows_read:,} ratings of {len(catalogue):,} movies "
        f"({len(report.rejects)} rows left out, {len(report.duplicate_lines)} duplicates)"
    )

    with Runtime(settings, api_port=None if serve else 0) as rt:
        print(
            f"streamrec is up: API {rt.api_url}  Kafka {rt.settings.kafka_url}  "
            f"Redis {rt.settings.redis_url}"
        )
        token = rt.create_api_key(set(SCOPES), "demo")
        print(f"API key for this run (all scopes; header X-API-Key): {token}")
        started = time.perf_counter()
        with EventProducer(
            rt.settings.infra.kafka_url, rt.settings.topic_events, rt.settings.topic_content
        ) as producer:
            publish_items(producer, catalogue, total=len(catalogue))
            sent = publish_events(producer, events)
            for review in content.reviews if content else []:
                producer.send_event(review)
                sent += 1
        done = wait_until_served(
            rt.progress, sent, rt.settings.als_min_events, timeout_s, rt.check_children
        )
        if done.applied < sent or (
            done.applied >= rt.settings.als_min_events and done.model_watermark < sent
        ):
            raise WorkerTimeoutError(f"no model covers the {sent:,} events after {timeout_s:g} s")
        applied, version = done.applied, done.served.version if done.served else None
        elapsed = time.perf_counter() - started

        counts = events.groupby("user_id").size()
        regular = sorted(counts[(counts >= 20) & (counts <= 200)].index, key=int)
        for user_id in (regular[0], regular[len(regular) // 2], regular[-1]):
            asyncio.run(_show_user(rt, token, str(user_id), titles))
        if content is not None:
            from streamrec.demo_content import show

            show(rt, token, content, [str(u) for u in regular])
        taster = str(regular[len(regular) // 2])
        rated = set(events.loc[events["user_id"].astype(str) == taster, "item_id"].astype(str))
        counts = events["item_id"].astype(str).value_counts()
        popularity = {str(k): int(v) for k, v in counts.items()}
        show_taste_change(rt, token, taster, catalogue, rated, popularity)

        users, items = asyncio.run(_counts(rt))
        print(
            f"\nSummary: {applied} events ingested in {elapsed:.1f}s "
            f"({applied / elapsed:,.0f} events/s through Kafka, Faust and Redis), "
            f"{users} users, {items} items, model {version}"
        )
        if serve:
            print()
            print_banner(rt, token, empty=False)
            _serve_forever(rt)
    return 0


async def _counts(rt: Runtime) -> tuple[int, int]:
    redis = redis_async(rt.settings.infra.redis_url)
    try:
        return await FeatureStore(redis, rt.settings).stats.counts()
    finally:
        await redis.aclose()


def _serve_forever(rt: Runtime) -> None:
    try:
        while True:
            rt.check_children()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping...")
