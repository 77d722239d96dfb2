"""The `stats` hash: counters every process adds to, and the store's sizes."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from recommender.store import keys
from recommender.store.faults import write_refusal


def parse_stats(raw: Mapping[Any, Any]) -> dict[str, int]:
    """The `stats` hash as integers (Lua writes some counters as floats)."""
    return {str(k): int(float(v)) for k, v in raw.items()}


def merged_counters(hashes: Sequence[Mapping[Any, Any]]) -> dict[str, int]:
    """`stats` and its shards' counters as one: sums, but the times (the clock, the last apply,
    the last erasure), which are the newest."""
    out: dict[str, int] = {}
    for raw in hashes:
        for name, v in parse_stats(raw).items():
            newest = name in ("clock", "applied_at", "last_erasure_ms")
            out[name] = max(out.get(name, 0), v) if newest else out.get(name, 0) + v
    return out


class Stats:
    """``shards``: on a cluster, the apply scripts' counters are split into that many shards
    (`keys.stats_key`), which reads merge; None on one node."""

    def __init__(self, redis: aioredis.Redis, shards: int | None = None) -> None:
        self._redis = redis
        self._shards = shards

    async def all(self) -> dict[str, int]:
        if self._shards is None:
            return parse_stats(await self._redis.hgetall(keys.STATS))
        pipe = self._redis.pipeline(transaction=False)
        for name in keys.counter_keys(self._shards):
            pipe.hgetall(name)
        return merged_counters(await pipe.execute())

    async def counts(self) -> tuple[int, int]:
        """(users with live features, items in the catalogue or with interactions)."""
        shards = [None] if self._shards is None else list(range(self._shards))
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(keys.ITEMS_CATALOGUE)
        for shard in shards:  # a user (an item) is in one shard: the sums are exact
            pipe.zcard(keys.users_active(shard))
            pipe.zcard(keys.items_popular(shard))
        catalogue, *sizes = await pipe.execute()
        return sum(sizes[0::2]), max(int(catalogue), sum(sizes[1::2]))

    async def report_worker(self, instance: str, lag: int, at_ms: int) -> None:
        """A worker's consumer lag now; entries an hour old go (workers that stopped)."""
        raw = await self._redis.hgetall(keys.WORKERS)
        stale = [w for w, v in raw.items() if at_ms - int(str(v).split("|")[1]) > 3_600_000]
        pipe = self._redis.pipeline(transaction=False)
        if stale:
            pipe.hdel(keys.WORKERS, *stale)
        pipe.hset(keys.WORKERS, instance, f"{lag}|{at_ms}")
        await pipe.execute()

    async def workers(self) -> dict[str, tuple[int, int]]:
        """Worker instance -> (consumer lag, when it was reported, epoch ms)."""
        raw = await self._redis.hgetall(keys.WORKERS)
        out = {}
        for worker, value in raw.items():
            lag, _, at = str(value).partition("|")
            out[str(worker)] = (int(lag), int(at))
        return out

    async def write_refusal(self) -> str | None:
        """Why Redis refuses writes now, by its `INFO` (None: it takes them)."""
        return write_refusal(await self._redis.info())

    async def note_erasure(self) -> None:
        """Count an erasure and when it was (model versions fitted before it say so)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(keys.STATS, "erasures", 1)
        pipe.hset(keys.STATS, "last_erasure_ms", int(time.time() * 1000))
        await pipe.execute()

    async def incr(self, name: str, amount: int = 1) -> None:
        await self._redis.hincrby(keys.STATS, name, amount)
