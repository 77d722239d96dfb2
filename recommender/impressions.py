"""Impressions: every recommendation list served, kept for the attribution window so that what
the user did next can be credited to the list, the model version and the A/B bucket behind it.

The one owner of `imp:{id}`, `u:{p}:shown` and `u:{p}:imps`. The API buffers impressions and
writes them every 0.1 s or so, off the request path, in script calls of a bounded size: a request
pays no extra round trip, and a replica that dies loses at most one flush of impressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from recommender import keys

#: Lists kept per user for attribution and erasure (the newest).
MAX_IMPRESSIONS_PER_USER = 200
#: A flush writes in calls of at most this many lists, or items shown: Valkey runs one script
#: call at a time, so the requests in flight wait out each call, never the whole flush.
LISTS_PER_CALL = 100
ITEMS_PER_CALL = 2_000


@dataclass(frozen=True, slots=True)
class Impression:
    recommendation_id: str
    pseudonym: str
    items: tuple[str, ...]
    model_version: str
    bucket: str
    ts_ms: int


class ImpressionStore:
    def __init__(self, redis: aioredis.Redis, window_s: int) -> None:
        self._redis = redis
        self.window_s = window_s
        self._pending: list[Impression] = []
        self._record = redis.register_script(keys.RECORD_IMPRESSIONS_LUA)

    def record(self, impression: Impression) -> None:
        """Queue a served list for the next `flush`."""
        self._pending.append(impression)

    async def flush(self) -> int:
        """Write the queued impressions, `LISTS_PER_CALL` at a time; return how many."""
        pending, self._pending = self._pending, []
        head: list[str | int] = [self.window_s, MAX_IMPRESSIONS_PER_USER, keys.SHOWN_MAX_ITEMS]
        args, lists, items = list(head), 0, 0
        for imp in pending:
            if lists and (lists == LISTS_PER_CALL or items + len(imp.items) > ITEMS_PER_CALL):
                await self._record(args=args)
                args, lists, items = list(head), 0, 0
            args += [
                imp.recommendation_id,
                imp.pseudonym,
                " ".join(imp.items),
                imp.model_version,
                imp.bucket,
                imp.ts_ms,
            ]
            lists += 1
            items += len(imp.items)
        if lists:
            await self._record(args=args)
        return len(pending)

    async def shown_in(self, pairs: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each (pseudonym, item): the newest list in the window that showed the item."""
        if not pairs:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for p, item in pairs:
            pipe.hget(keys.user_shown(p), item)
        return [str(r) if r is not None else None for r in await pipe.execute()]

    async def impressions(self, ids: Sequence[str]) -> dict[str, Impression]:
        """The impressions still in the window among ``ids``."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(keys.impression(rid))
        out = {}
        for rid, row in zip(ids, await pipe.execute(), strict=True):
            if row:
                out[rid] = Impression(
                    rid,
                    str(row["u"]),
                    tuple(str(row["items"]).split()),
                    str(row["v"]),
                    str(row["b"]),
                    int(row["t"]),
                )
        return out

    async def mark_hit(self, ids: Sequence[str]) -> list[bool]:
        """Mark lists as hit; for each, whether this was its first hit."""
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for rid in ids:
            pipe.hsetnx(keys.impression(rid), "hit", 1)
            pipe.expire(keys.impression(rid), self.window_s, nx=True)  # if it expired meanwhile
        return [bool(r) for r in (await pipe.execute())[::2]]

    async def forget(self, pseudonym: str) -> int:
        """Every list served to the user, and what they were shown; the lists still waiting
        for a flush too (written after the erasure, they would bring the user back)."""
        self._pending = [imp for imp in self._pending if imp.pseudonym != pseudonym]
        try:
            listed = await self._redis.zrange(keys.user_impressions(pseudonym), 0, -1)
        except ResponseError:  # not a sorted set: not ours to read, but still ours to delete
            listed = []
        ids = [str(r) for r in listed]
        doomed = [keys.impression(r) for r in ids]
        doomed += [keys.user_impressions(pseudonym), keys.user_shown(pseudonym)]
        return int(await self._redis.delete(*doomed))
