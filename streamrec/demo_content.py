"""The demo's content part: movies published without genres get predicted ones, a brand-new
movie reaches a matching user's recommendations with no interaction, and reviews move
recommendations.

No review text tied to MovieLens users ships offline, so the demo *pairs*: its reviews are real
review texts from the fine-food data set (labelled by their own ratings), attached to demo
reviewers and, for the last part, to MovieLens movies. The output says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx

from recommender.lifecycle.families import SENTIMENT, TEXT
from recommender.store import keys
from recommender.store.connections import redis_sync
from streamrec.content_data import fine_food_reviews
from streamrec.placement import matching_users, wait_cold_start
from streamrec.runtime import Runtime
from streams.producer import EventProducer
from streams.records import ContentV1, EventV1

#: One movie in this many is published without its genres.
UNLABELLED_ONE_IN = 50
REVIEWS = 1500


@dataclass
class DemoContent:
    catalogue: list[ContentV1]  # as published: some without categories, the new movie left out
    unlabelled: list[ContentV1]  # as they were, with their true genres
    new_movie: ContentV1
    reviews: list[EventV1]
    popular: list[ContentV1]  # what the demo's visitor rates first
    review_targets: list[ContentV1]  # what the visitor then reviews, well and badly


def prepare(catalogue: list[ContentV1], popularity: dict[str, int]) -> DemoContent:
    """Pick what the demo holds back: genres of some movies, one movie entirely (its content
    and ratings: the caller leaves its ratings out), and build the labelled reviews."""
    with_genres = [m for m in catalogue if m.categories]
    ranked = sorted(with_genres, key=lambda m: (-popularity.get(m.item_id, 0), m.item_id))
    new_movie = ranked[40]  # well known, so that its title says something about it
    unlabelled = [m for n, m in enumerate(with_genres) if n % UNLABELLED_ONE_IN == 7]
    hidden = {m.item_id for m in unlabelled}
    published = [
        m.model_copy(update={"categories": []}) if m.item_id in hidden else m
        for m in catalogue
        if m.item_id != new_movie.item_id
    ]
    train, _ = fine_food_reviews()
    reviews = [
        EventV1(
            event_id=f"demo-review-{i}",
            user_id=f"reviewer-{i % 60}",
            item_id=f"food-{i % 200}",
            type="review",
            value=5.0 if train.positive[i] else 1.0,
            text=train.text[i],
            ts=1_500_000_000_000 + i,
        )
        for i in range(REVIEWS)
    ]
    action = [m for m in ranked if "Action" in m.categories][:3]
    other = [m for m in ranked if "Romance" in m.categories and "Action" not in m.categories]
    return DemoContent(published, unlabelled, new_movie, reviews, action, other[2:4])


def _recs(http: httpx.Client, user: str, k: int = 10) -> list[dict[str, object]]:
    body = http.get(f"/v1/users/{user}/recommendations", params={"k": k}).json()
    items: list[dict[str, object]] = body["items"]
    return items


def _until_folded_in(http: httpx.Client, user: str, ts: int, timeout_s: float = 15) -> None:
    """Until the user's vector holds their event of time ``ts``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = http.get(f"/v1/users/{user}/recommendations", params={"k": 1}).json()
        if (body.get("user_event_ms") or 0) >= ts:
            return
        time.sleep(0.1)


def show(rt: Runtime, token: str, demo: DemoContent, users: list[str]) -> None:
    print(
        "\nContent models (trained from the stream: item text -> genres, review text -> "
        "sentiment)..."
    )
    wait_cold_start(rt.settings, 600, rt.check_children)
    client = redis_sync(rt.settings.infra.redis_url)
    versions = {f: str(client.hget(keys.model_current(f), "version")) for f in (TEXT, SENTIMENT)}
    print(f"  serving text model {versions[TEXT]}, sentiment model {versions[SENTIMENT]}")

    print("\nMovies published without genres, and the genres the text model gave them:")
    for movie in demo.unlabelled[:5]:
        meta = client.hgetall(keys.item_meta(movie.item_id))
        predicted = json.loads(meta.get("predicted") or "{}")
        shown = ", ".join(f"{g} {p:.2f}" for g, p in predicted.items()) or "-"
        print(f"  {movie.title}: predicted {shown}  (true: {', '.join(movie.categories)})")

    http = httpx.Client(base_url=rt.api_url, headers={"X-API-Key": token}, timeout=10)
    cf_version, _ = wait_cold_start(rt.settings, 60, rt.check_children)
    [(user, _)] = matching_users(rt.settings, cf_version, [demo.new_movie], users)
    print(
        f"\nA brand-new movie, {demo.new_movie.title}: no one has rated it. Publishing its "
        f"content, then asking for user {user}'s recommendations..."
    )
    with EventProducer(
        rt.settings.infra.kafka_url, rt.settings.topic_events, rt.settings.topic_content
    ) as producer:
        sent = time.perf_counter()
        producer.send_content(demo.new_movie)
        producer.flush()
        found: dict[str, object] | None = None
        while found is None and time.perf_counter() - sent < 15:
            found = next(
                (i for i in _recs(http, user) if i["item_id"] == demo.new_movie.item_id), None
            )
            time.sleep(0.05)
        if found is None:
            print("  not in the top 10 within 15 s")
        else:
            rank = [i["item_id"] for i in _recs(http, user)].index(demo.new_movie.item_id) + 1
            print(
                f"  #{rank} in user {user}'s top 10, {(time.perf_counter() - sent) * 1000:.0f} ms "
                f'after its content event: "{found["reason"]}"'
            )

        visitor, popular = "demo-visitor", demo.popular
        now = int(time.time() * 1000)
        for n, movie in enumerate(popular[:3]):
            producer.send_event(
                EventV1(
                    event_id=f"demo-visit-{n}",
                    user_id=visitor,
                    item_id=movie.item_id,
                    type="rating",
                    value=5.0,
                    ts=now + n,
                )
            )
        producer.flush()
        _until_folded_in(http, visitor, now + 2)
        before = [str(i["title"]) for i in _recs(http, visitor, 5)]
        rated = ", ".join(m.title for m in popular[:3])
        print(
            f"\nReviews move recommendations. A new visitor rated {rated}; "
            f"their top 5: {'; '.join(before)}.\n"
            "Pairing, said plainly: no movie reviews tied to MovieLens users ship offline, so the "
            "visitor now 'reviews' two movies with real fine-food review texts:"
        )
        train, _ = fine_food_reviews()
        liked = next(i for i, y in enumerate(train.positive) if y and len(train.text[i]) < 160)
        disliked = next(
            i for i, y in enumerate(train.positive) if not y and len(train.text[i]) < 160
        )
        picks = demo.review_targets
        now = int(time.time() * 1000)
        for n, (pick, text_i) in enumerate(zip(picks, (liked, disliked), strict=True)):
            producer.send_event(
                EventV1(
                    event_id=f"demo-visit-review-{n}",
                    user_id=visitor,
                    item_id=pick.item_id,
                    type="review",
                    text=train.text[text_i],
                    ts=now + n,
                )
            )
            print(f'  {pick.title}: "{" ".join(train.text[text_i].split())[:90]}"')
        producer.flush()
    _until_folded_in(http, visitor, now + 1)
    p = keys.pseudonymize(rt.settings.pseudonym_secret, visitor)
    weights = {str(k): float(v) for k, v in client.hgetall(keys.user_items(p)).items()}
    for pick in picks:
        print(
            f"  -> weight {weights.get(pick.item_id, 0):.2f} for {pick.title} (a surely positive "
            f"review weighs {rt.settings.review_positive_weight:g}, a negative one 0)"
        )
    after = [str(i["title"]) for i in _recs(http, visitor, 5)]
    print(f"  their top 5 now: {'; '.join(after)}")
    http.close()
    client.close()
