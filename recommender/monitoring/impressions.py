"""Impressions: every recommendation list served, kept for the attribution window so that what
the user did next can be credited to the list, the model version and the A/B bucket behind it.

The one owner of `u:{p}:lists` and `u:{p}:hits`. Lists are written far more often than they are
read (every request writes one; only clicks, carts and purchases read), so a list is one element
of its user's own list, and a read searches that user's lists inside Valkey. The API buffers
impressions and writes them every 0.1 s or so, off the request path, in script calls of a
bounded size: a request pays no extra round trip, and a replica that dies loses at most one flush
of impressions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from recommender.store import keys, scripts
from recommender.store.cluster import Call, by_primary, is_cluster, pipelined_scripts

#: Lists kept per user for attribution and erasure (the newest).
MAX_IMPRESSIONS_PER_USER = 200
#: A flush writes in script calls of at most this many lists: Valkey runs one call at a time, so
#: the requests in flight wait out a call, never the whole flush.
LISTS_PER_CALL = 200


@dataclass(frozen=True, slots=True)
class Impression:
    recommendation_id: str
    pseudonym: str
    items: tuple[str, ...]
    model_version: str
    bucket: str
    ts_ms: int

    def encode(self) -> str:
        """As `keys.user_lists` keeps it."""
        items = " ".join(self.items)
        return f"{self.recommendation_id}|{self.ts_ms}|{self.model_version}|{self.bucket}| {items} "

    @classmethod
    def decode(cls, pseudonym: str, entry: str) -> Impression:
        rid, ts, version, bucket, items = entry.split("|", 4)
        return cls(rid, pseudonym, tuple(items.split()), version, bucket, int(ts))


class ImpressionStore:
    def __init__(self, redis: aioredis.Redis, window_s: int) -> None:
        self._redis = redis
        self.window_s = window_s
        self._pending: list[Impression] = []
        self._record = redis.register_script(scripts.RECORD_IMPRESSIONS_LUA)
        self._find = redis.register_script(scripts.FIND_LISTS_LUA)
        # On a cluster each user's lists are in their own slot: lists are recorded in one call
        # per primary (`by_primary`), found in one call per user, pipelined, routed by the
        # user's key (the scripts build the names; the key only routes the call).
        self._cluster = is_cluster(redis)

    def _window_start_ms(self) -> int:
        """Lists older than this are out of the attribution window."""
        return int(time.time() * 1000) - self.window_s * 1000

    def record(self, impression: Impression) -> None:
        """Queue a served list for the next `flush`."""
        self._pending.append(impression)

    async def flush(self) -> int:
        """Write the queued impressions, `LISTS_PER_CALL` at a time; return how many."""
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), LISTS_PER_CALL):
            by_user: dict[str, list[str]] = {}
            for imp in pending[start : start + LISTS_PER_CALL]:
                by_user.setdefault(imp.pseudonym, []).append(imp.encode())
            head: list[str | int] = [self.window_s, MAX_IMPRESSIONS_PER_USER]
            if self._cluster:  # one call per primary
                users: list[tuple[str, list[str | int]]] = [
                    (keys.user_base(p), [p, len(e), *e]) for p, e in by_user.items()
                ]
                await by_primary(self._redis, scripts.RECORD_IMPRESSIONS_NODE_LUA, users, head)
                continue
            args = list(head)
            for pseudonym, entries in by_user.items():
                args += [pseudonym, len(entries), *entries]
            await self._record(args=args)
        return len(pending)

    async def served_lists(
        self, outcomes: Sequence[tuple[str, str | None, str]]
    ) -> list[Impression | None]:
        """For each (pseudonym, quoted recommendation id or None, item): the user's list with
        that id, or else the newest that showed the item; None if there is none in the
        attribution window. Only the user's own lists are searched."""
        if not outcomes:
            return []
        if self._cluster:
            calls: list[Call] = [
                (scripts.FIND_LISTS_LUA, [keys.user_base(p)], [p, rid or "", item])
                for p, rid, item in outcomes
            ]
            found = [answer[0] for answer in await pipelined_scripts(self._redis, calls)]
        else:
            args = [x for p, rid, item in outcomes for x in (p, rid or "", item)]
            found = await self._find(args=args)
        oldest = self._window_start_ms()
        out: list[Impression | None] = []
        for (p, _, _), entry in zip(outcomes, found, strict=True):
            imp = Impression.decode(p, str(entry)) if entry else None
            out.append(imp if imp is not None and imp.ts_ms >= oldest else None)
        return out

    async def mark_hit(self, lists: Sequence[Impression]) -> list[bool]:
        """Mark lists as hit; for each, whether this was its first hit."""
        if not lists:
            return []
        oldest = self._window_start_ms()
        pipe = self._redis.pipeline(transaction=False)
        for imp in lists:
            hits = keys.user_hits(imp.pseudonym)
            pipe.zadd(hits, {imp.recommendation_id: imp.ts_ms}, nx=True)
            pipe.zremrangebyscore(hits, "-inf", f"({oldest}")  # lists out of the window
            pipe.expire(hits, self.window_s)
        return [bool(r) for r in (await pipe.execute())[::3]]

    async def forget(self, pseudonym: str) -> int:
        """Every list served to the user, and which were hit; the lists still waiting for a
        flush too (written after the erasure, they would bring the user back); and what a
        version before 2026-12-05 kept of them, until that expires."""
        self._pending = [imp for imp in self._pending if imp.pseudonym != pseudonym]
        try:
            old = await self._redis.zrange(keys.legacy_user_impressions(pseudonym), 0, -1)
        except ResponseError:  # not a sorted set: not ours to read, but still ours to delete
            old = []
        doomed = [keys.user_lists(pseudonym), keys.user_hits(pseudonym)]
        doomed += [keys.legacy_user_impressions(pseudonym), keys.legacy_user_shown(pseudonym)]
        doomed += [keys.LEGACY_IMPRESSION_PREFIX + str(rid) for rid in old]
        return int(await self._redis.delete(*doomed))
