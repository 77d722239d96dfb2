"""Test data with a known answer: two taste clusters that ALS must tell apart."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from models.data import InteractionMatrix
from recommender.serving.config import ServingConfig
from recommender.types import Interaction

SCI_FI = [f"scifi-{i}" for i in range(20)]
ROMANCE = [f"romance-{i}" for i in range(20)]


def clustered_interactions(
    users_per_cluster: int = 30, per_user: int = 10, seed: int = 7
) -> list[Interaction]:
    """Users 'a*' touch only sci-fi items, users 'b*' only romance; deterministic."""
    rng = random.Random(seed)
    events: list[Interaction] = []
    ts = 1_700_000_000_000
    for prefix, items in (("a", SCI_FI), ("b", ROMANCE)):
        for u in range(users_per_cluster):
            for item in rng.sample(items, per_user):
                ts += 1000
                events.append(
                    Interaction(f"{prefix}{u}-{item}", f"{prefix}{u}", item, "purchase", ts)
                )
    return events


def fan_of_scifi(user_id: str = "alice", n: int = 6) -> list[Interaction]:
    return [
        Interaction(f"{user_id}-{item}", user_id, item, "purchase", 1_780_000_000_000 + i)
        for i, item in enumerate(SCI_FI[:n])
    ]


def clustered_matrix() -> InteractionMatrix:
    """`clustered_interactions` as a binary user x item matrix (60 x 40)."""
    histories: dict[str, dict[str, float]] = {}
    for e in clustered_interactions():
        histories.setdefault(e.user_id, {})[e.item_id] = 1.0
    users = sorted(histories)
    return InteractionMatrix.from_histories(users, [histories[u] for u in users])


#: Serving as the plain chain: no caches, no neighbours of recent items, no new-item places.
PLAIN_SERVING = ServingConfig(
    pointer_check_s=0,
    title_ttl_s=0,
    knn_weight=0,
    recent_items=0,
    new_item_slots=0,
    candidates=0,
)


T = TypeVar("T")


async def landed(
    read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within_s: float = 5
) -> T:
    """What ``read`` returns once ``ok`` holds of it (or when ``within_s`` is up): for writes
    serving makes without the answer waiting on them, such as a user's cached candidates."""
    deadline = time.monotonic() + within_s
    value = await read()
    while not ok(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        value = await read()
    return value
