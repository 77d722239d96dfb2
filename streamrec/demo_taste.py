"""`streamrec demo`'s change of taste: a user watches, one at a time, five films of a genre they
had never rated; their list is shown after each (it follows them from the event, not from a
refit), then what a visitor with no account is offered from the same five films (a session)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence

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
    in_genre = {m.item_id for m in catalogue if genre in m.categories}
    print(
        f"\nA change of taste: user {user_id} has rated almost no {genre} film; they watch {FILMS}"
    )
    s = rt.settings
    headers = {"X-API-Key": token}
    with (
        EventProducer(s.infra.kafka_url, s.topic_events, s.topic_content) as producer,
        httpx.Client(base_url=rt.api_url, timeout=10, headers=headers) as client,
    ):
        before = rt.progress().applied
        share = _share(client, user_id, in_genre, 0)[0]
        print(f"  before: {share}/10 of their list is {genre}")
        for n, film in enumerate(films, 1):
            ts = int(time.time() * 1000)
            producer.send_event(
                EventV1(event_id=f"demo-taste-{user_id}-{n}", user_id=user_id, item_id=film,
                        type="rating", value=5.0, ts=ts)
            )  # fmt: skip
            producer.flush()
            rt.wait_for(applied_at_least(before + n), FOLDED_IN_S)
            share, top = _share(client, user_id, in_genre, ts)
            first = titles.get(top, top)
            print(f"  after {titles.get(film, film)}: {share}/10 {genre}; first: {first}")
        resp = client.get("/v1/sessions/recommendations", params={"items": ",".join(films), "k": 5})
        resp.raise_for_status()
        print(f"  a visitor who viewed the same {FILMS} films (no user id) is offered:")
        for item in resp.json()["items"]:
            print(f"    - {item['title'] or item['item_id']}  [{item['reason']}]")


def _share(
    client: httpx.Client, user_id: str, in_genre: set[str], event_ms: int
) -> tuple[int, str]:
    """(items of the genre in the user's top 10, the first item), once the list reflects the
    event at ``event_ms``."""
    deadline = time.monotonic() + FOLDED_IN_S
    while True:
        resp = client.get(f"/v1/users/{user_id}/recommendations", params={"k": 10})
        resp.raise_for_status()
        body = resp.json()
        if (body.get("user_event_ms") or 0) >= event_ms or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    ids = [i["item_id"] for i in body["items"]]
    return sum(i in in_genre for i in ids), ids[0] if ids else ""
