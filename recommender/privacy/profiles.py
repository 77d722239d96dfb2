"""Personal data: encrypted profiles, the right of access (export) and erasure.

Profiles are stored only as Fernet tokens under the user's own data key (`crypto.py`). Behaviour
(the items a user touched) lives under the user's pseudonym, in clear, because ranking needs it;
erasure removes both, and destroys the data key so that any copy of a profile token left anywhere
(a backup, a replica lagging behind) can no longer be read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from recommender.listeners import Forgetter
from recommender.privacy.crypto import DataKeyMissingError, UserDataCipher
from recommender.privacy.reviews import ReviewStore
from recommender.store import keys
from recommender.store.features import FeatureStore


@dataclass(frozen=True, slots=True)
class Erasure:
    """What `erase` removed; all zero/False when there was nothing left (idempotent)."""

    data_key_destroyed: bool
    keys_deleted: int
    model_vectors_removed: int


class UserDataService:
    """Reads and writes one user's personal data; exports and erases everything about them.

    Parameters
    ----------
    redis, store, cipher
        The client, the feature store (pseudonyms, behaviour) and the user's data-key cipher.
    reviews
        The user's encrypted review texts.
    vectors
        The CF model's user vectors.
    others
        Further stores of per-user data (the impressions served to the user).

    Erasure asks every one of these stores to `forget` the user. A per-user key family that no
    store forgets is caught by `tests/integration/test_privacy.py`, which derives the families
    from `recommender.store.keys`.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        store: FeatureStore,
        cipher: UserDataCipher,
        reviews: ReviewStore,
        vectors: Forgetter,
        others: Sequence[Forgetter] = (),
        tombstone_s: int = 30 * 86400,
    ) -> None:
        self._redis = redis
        self._store = store
        self._cipher = cipher
        self._reviews = reviews
        self._vectors = vectors
        self._others = list(others)
        self._tombstone_s = tombstone_s

    async def put_profile(self, user_id: str, profile: dict[str, Any]) -> None:
        p = self._store.pseudonym(user_id)
        token = await self._cipher.encrypt(p, json.dumps(profile, sort_keys=True).encode())
        await self._redis.set(keys.user_profile(p), token.decode())

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """The decrypted profile, or None when there is none (or it was erased)."""
        p = self._store.pseudonym(user_id)
        token = await self._redis.get(keys.user_profile(p))
        if token is None:
            return None
        try:
            plain = await self._cipher.decrypt(p, str(token).encode())
        except DataKeyMissingError:
            return None
        profile: dict[str, Any] = json.loads(plain)
        return profile

    async def forget(self, pseudonym: str) -> int:
        """The profile, which this service owns."""
        return int(await self._redis.delete(keys.user_profile(pseudonym)))

    async def export(self, user_id: str) -> dict[str, Any] | None:
        """Everything streamrec holds about the user, decrypted; None when it holds nothing."""
        profile = await self.get_profile(user_id)
        p = self._store.pseudonym(user_id)
        (interactions,) = await self._store.users.histories([p])
        reviews = await self._reviews.reviews(p)
        if profile is None and not interactions and not reviews:
            return None
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.user_counts(p))
        pipe.exists(keys.data_key(p))
        counts, has_key = await pipe.execute()
        recent = await self._store.users.recent(user_id, n=1000)
        return {
            "user_id": user_id,
            "profile": profile,
            "interactions": interactions,
            "recent": [{"type": r.type, "item_id": r.item_id, "ts": r.ts} for r in recent],
            "event_counts": {str(k): int(float(v)) for k, v in counts.items()},
            "category_affinity": await self._store.users.category_affinity(user_id),
            "reviews": [asdict(r) for r in reviews],
            "has_data_key": bool(has_key),
        }

    async def erase(self, user_id: str) -> Erasure:
        """Leave the user's tombstone, crypto-shred the data key, then have every store forget
        the user. What happened before now stays gone: every writer honours the tombstone."""
        p = self._store.pseudonym(user_id)
        await self._store.users.leave_tombstone(p, int(time.time() * 1000), self._tombstone_s)
        destroyed = await self._cipher.shred(p)
        deleted = 0
        owners: list[Forgetter] = [self._store.users, self, self._reviews, *self._others]
        for owner in owners:
            deleted += await owner.forget(p)
        removed = await self._vectors.forget(p)
        if destroyed or deleted or removed:
            await self._store.stats.note_erasure()
        return Erasure(destroyed, deleted, removed)
