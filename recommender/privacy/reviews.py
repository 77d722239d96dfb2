"""Review text, kept for the models that learn from it, as *personal data*: encrypted under the
user's own data key (`crypto.py`), so that erasure by crypto-shredding also takes it out of every
future training set, and bounded per user.

Written before the event is applied and keyed by the event, so a redelivery writes the same
entry again and a worker killed mid-batch loses nothing (see `listeners.EventRecorder`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from recommender.privacy.crypto import DataKeyMissingError, UserDataCipher
from recommender.store import keys
from recommender.types import Interaction

#: Reviews kept per user, the newest ones.
MAX_REVIEWS_PER_USER = 200


@dataclass(frozen=True, slots=True)
class Review:
    event_id: str
    item_id: str
    type: str
    value: float | None
    ts: int
    text: str


def _field(e: Interaction) -> str:
    # Sortable by time, unique per event.
    return f"{e.ts:013d}:{e.event_id}"


class ReviewStore:
    """The one owner of `u:{p}:reviews`."""

    def __init__(
        self,
        redis: aioredis.Redis,
        cipher: UserDataCipher,
        pseudonym_of: Callable[[Interaction], str],
        user_ttl_s: int,
        train: bool = False,
    ) -> None:
        """``train``: also queue each review for the sentiment model (`keys.REVIEW_EXAMPLES`)."""
        self._redis = redis
        self._cipher = cipher
        self._pseudonym_of = pseudonym_of  # an event's pseudonym, as it carries it
        self._ttl = user_ttl_s
        self._train = train

    async def record(self, events: Sequence[Interaction]) -> None:
        """Encrypt and keep the text of every event that carries one."""
        with_text = [e for e in events if e.text]
        if not with_text:
            return
        pipe = self._redis.pipeline(transaction=False)
        users: set[str] = set()
        for e in with_text:
            p = self._pseudonym_of(e)
            plain = json.dumps(
                {
                    "event_id": e.event_id,
                    "item_id": e.item_id,
                    "type": e.type,
                    "value": e.value,
                    "ts": e.ts,
                    "text": e.text,
                }
            )
            token = await self._cipher.encrypt(p, plain.encode())
            pipe.hset(keys.user_reviews(p), _field(e), token.decode())
            if self._train:
                pipe.xadd(
                    keys.REVIEW_EXAMPLES,
                    {"p": p, "review": _field(e)},
                    maxlen=keys.TRAIN_STREAM_MAXLEN,
                    approximate=True,
                )
            users.add(p)
        for p in users:
            pipe.expire(keys.user_reviews(p), self._ttl)
        await pipe.execute()
        for p in users:
            await self._trim(p)

    async def _trim(self, pseudonym: str) -> None:
        name = keys.user_reviews(pseudonym)
        if await self._redis.hlen(name) <= MAX_REVIEWS_PER_USER:
            return
        fields = sorted(str(f) for f in await self._redis.hkeys(name))
        await self._redis.hdel(name, *fields[:-MAX_REVIEWS_PER_USER])

    async def reviews(self, pseudonym: str, fields: Sequence[str] | None = None) -> list[Review]:
        """The user's reviews (those named by ``fields``, else all), oldest first, decrypted;
        [] after erasure."""
        name = keys.user_reviews(pseudonym)
        if fields is None:
            raw = await self._redis.hgetall(name)
        else:
            got = await self._redis.hmget(name, list(fields))
            raw = {f: v for f, v in zip(fields, got, strict=True) if v is not None}
        out = []
        for field in sorted(raw):
            try:
                plain = await self._cipher.decrypt(pseudonym, str(raw[field]).encode())
            except DataKeyMissingError:
                return []
            d = json.loads(plain)
            out.append(
                Review(d["event_id"], d["item_id"], d["type"], d["value"], d["ts"], d["text"])
            )
        return out

    async def forget(self, pseudonym: str) -> int:
        """The user's reviews. Their entries still waiting for the sentiment trainer (the
        pseudonym and a review's field, no text) are left to it: they point at nothing now,
        and it skips them (reading the whole queue made erasure cost its length)."""
        return int(await self._redis.delete(keys.user_reviews(pseudonym)))
