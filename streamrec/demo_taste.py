"""`streamrec demo`'s change of taste: a user watches, one at a time, five films of a genre they
had never rated; their list is shown after each (it follows them from the event, not from a
refit), then what a visitor with no account is offered from the same five films (a session)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from streamrec.progress import applied_at_least
from streamrec.runtime import Runtime
from streams.producer import EventProducer
from streams.records import ContentV1, EventV1

#: Films of the new genre the user watches.
FILMS = 5
#: How long a list may take to reflect an event (it usually takes a few milliseconds).
FOLDED_IN_S = 10.0


def _new_genre(
    catalogue: Sequence[ContentV1], rated: set[str], popularity: Mapping[str, int]
) -> tuple[str, list[str]]:
    """The genre with the most films the user rated the fewest of (relative to its size), and
    its most popular films they have not rated."""
    genre_of = {m.item_id: m.categories for m in catalogue}
    sizes = Counter(g for m in catalogue for g in m.categories)
    mine = Counter(g for i in rated for g in genre_of.get(i, []))
    common = [g for g, n in sizes.items() if n >= 100] or [
        g for g, n in sizes.items() if n >= 2 * FILMS
    ]
    genre = min(common, key=lambda g: (mine[g] / sizes[g], -sizes[g], g))
    films = sorted(
        (m.item_id for m in catalogue if genre in m.categories and m.item_id not in rated),
        key=lambda i: (-popularity.get(i, 0), i),
    )
    return genre, films[:FILMS]


def show_taste_change(
    rt: Runtime,
    token: str,
    user_id: str,
    catalogue: Sequence[ContentV1],
    rated: set[str],
    popularity: Mapping[str, int],
) -> None:
    genre, films = _new_genre(catalogue, rated, popularity)
    titles = {m.item_id: m.title for m in catalogue}
    s = rt.settings
    days = s.recency_half_life_s / 86_400
    weighting = (
        f"recency half-life {days:g} days: their ratings are years old"
        if days
        else "no recency half-life: their years-old ratings weigh as much as these"
    )
    print(
        f"\nA change of taste: user {user_id} has rated almost no {genre} film; they watch {FILMS}"
        f" ({weighting})"
    )
    headers = {"X-API-Key": token}
    with (
        EventProducer(s.infra.kafka_url, s.topic_events, s.topic_content) as producer,
        httpx.Client(base_url=rt.api_url, timeout=10, headers=headers) as client,
    ):
        before = rt.progress().applied
        top = _top10(client, user_id, 0)
        print("  before, their top 5:")
        _print_items(top[:5])
        was = {i["item_id"] for i in top}
        for n, film in enumerate(films, 1):
            ts = int(time.time() * 1000)
            producer.send_event(
                EventV1(event_id=f"demo-taste-{user_id}-{n}", user_id=user_id, item_id=film,
                        type="rating", value=5.0, ts=ts)
            )  # fmt: skip
            producer.flush()
            rt.wait_for(applied_at_least(before + n), FOLDED_IN_S)
            top = _top10(client, user_id, ts)
            new = sum(i["item_id"] not in was for i in top)
            share = sum(i.get("because_item_id") in films[:n] for i in top)
            print(
                f"  after {titles.get(film, film)}: {new}/10 new in the list, {share}/10 "
                "there because of the films just watched"
            )
        print("  after, their top 5:")
        _print_items(top[:5])
        resp = client.get("/v1/sessions/recommendations", params={"items": ",".join(films), "k": 5})
        resp.raise_for_status()
        print(f"  a visitor who viewed the same {FILMS} films (no user id) is offered:")
        _print_items(resp.json()["items"])


def _print_items(items: Sequence[Mapping[str, Any]]) -> None:
    for item in items:
        print(f"    - {item['title'] or item['item_id']}  [{item['reason']}]")


def _top10(client: httpx.Client, user_id: str, event_ms: int) -> list[dict[str, Any]]:
    """The user's top 10, explained, once the list reflects the event at ``event_ms``."""
    deadline = time.monotonic() + FOLDED_IN_S
    while True:
        resp = client.get(
            f"/v1/users/{user_id}/recommendations", params={"k": 10, "explain": "true"}
        )
        resp.raise_for_status()
        body = resp.json()
        if (body.get("user_event_ms") or 0) >= event_ms or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    items: list[dict[str, Any]] = body["items"]
    return items
