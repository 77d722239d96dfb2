"""The sequential family's examples, read from the feature store: what each user touched next.

The trainer asks which users' events were applied since it last looked (the active-users index
keeps the time), reads their latest items (the recent list the feature store keeps, as serving
reads it) and turns each of the newest `NEW_PER_USER` into an example: the items before it
(oldest first) and the item. A user who did more than that between two reads gives their newest
ones only: the replay buffer is a sample either way. Nothing is written on the event path for it.
"""

from __future__ import annotations

from recommender.content.learning import Example
from recommender.store.users import ActiveCursor, UserFeatures

#: Examples per user per read, from their newest item back.
NEW_PER_USER = 5
#: Items read per user: the encoder's window and the newest examples' targets.
READ_ITEMS = 56
#: Users read per step (the rest on the next): 2,500 examples, whose test-then-train scores are
#: 2,500 rows over the catalogue (90 MB for MovieLens' 9,066 items).
USERS_PER_READ = 500


def examples_of(pseudonym: str, latest: list[str], window: int = READ_ITEMS) -> list[Example]:
    """Examples from a user's latest distinct items (newest first)."""
    out = []
    for n in range(min(NEW_PER_USER, len(latest) - 1)):
        before = latest[n + 1 : n + 1 + window][::-1]
        key = f"seq:{pseudonym}|{before[-1]}|{latest[n]}"  # a re-read yields the same keys
        out.append(Example(key, before, latest[n], owner=pseudonym))
    return out


async def read_examples(users: UserFeatures, cursor: ActiveCursor) -> list[Example]:
    """The examples of the next users whose events were applied after ``cursor`` (which moves
    past them)."""
    active = await users.active_since(cursor, USERS_PER_READ)
    if not active:
        return []
    pseudonyms = [p for p, _ in active]
    latest = await users.recent_items_of(pseudonyms, READ_ITEMS)
    pairs = zip(pseudonyms, latest, strict=True)
    return [ex for p, items in pairs for ex in examples_of(p, items)]
