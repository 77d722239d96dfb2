"""Popularity in Redis: all-time, in time windows ending at the stream's clock, and trending."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import redis.asyncio as aioredis

from recommender.store import keys


def _top(scores: Mapping[str, float], k: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
    """The k best (item, score), best first, ties by item id, skipping ``exclude``."""
    excluded = set(exclude)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(item, score) for item, score in ranked if item not in excluded][:k]


class Popularity:
    """``shards``: on a cluster, how many shards the counts are split into (`keys.shard_tag`;
    each item's counts are in one, so the top k of all is among the shards' top k); None on one
    node."""

    def __init__(self, redis: aioredis.Redis, shards: int | None = None) -> None:
        self._redis = redis
        self._shards = shards

    async def _each_shard(self, read: Callable[[Any, int], object]) -> list[Any]:
        """``read(pipe, shard)`` for every shard, in one round trip; the replies in order."""
        assert self._shards is not None
        pipe = self._redis.pipeline(transaction=False)
        for shard in range(self._shards):
            read(pipe, shard)
        return list(await pipe.execute())

    async def popular(
        self, k: int, exclude: Iterable[str] = (), category: str | None = None
    ) -> list[tuple[str, float]]:
        """The k most interacted-with items that are not in ``exclude`` (and in ``category``)."""
        excluded = set(exclude)
        if self._shards is not None:
            return await self._popular_sharded(k, excluded, category)
        if category is not None:
            rows = cast(
                list[tuple[str, float]],
                await self._redis.zinter(
                    {keys.ITEMS_POPULAR: 1, keys.category_items(category): 0}, withscores=True
                ),
            )
            return _top(dict(rows), k, excluded)
        rows = cast(
            list[tuple[str, float]],
            await self._redis.zrevrange(
                keys.ITEMS_POPULAR, 0, k + len(excluded) - 1, withscores=True
            ),
        )
        return [(item, float(score)) for item, score in rows if item not in excluded][:k]

    async def _popular_sharded(
        self, k: int, excluded: set[str], category: str | None
    ) -> list[tuple[str, float]]:
        if category is None:
            depth = k + len(excluded)
            found = await self._each_shard(
                lambda pipe, s: pipe.zrevrange(keys.items_popular(s), 0, depth - 1, withscores=True)
            )
            return _top({str(i): float(c) for rows in found for i, c in rows}, k, excluded)
        members = sorted(str(i) for i in await self._redis.smembers(keys.category_items(category)))
        assert self._shards is not None
        pipe = self._redis.pipeline(transaction=False)
        for item in members:
            pipe.zscore(keys.items_popular(keys.item_shard(item, self._shards)), item)
        scores = await pipe.execute()
        counts = {i: float(c) for i, c in zip(members, scores, strict=True) if c is not None}
        return _top(counts, k, excluded)

    async def all_counts(self) -> dict[str, float]:
        """Every item's all-time count."""
        if self._shards is None:
            rows: Any = await self._redis.zrange(keys.ITEMS_POPULAR, 0, -1, withscores=True)
            return {str(i): float(c) for i, c in rows}
        found = await self._each_shard(
            lambda pipe, s: pipe.zrange(keys.items_popular(s), 0, -1, withscores=True)
        )
        return {str(i): float(c) for rows in found for i, c in rows}

    async def clock(self) -> int:
        """The stream's clock: the newest event time applied (epoch ms)."""
        if self._shards is None:
            return int(float(await self._redis.hget(keys.STATS, "clock") or 0))
        found = await self._each_shard(lambda pipe, s: pipe.hget(keys.stats_key(s), "clock"))
        return max((int(float(c)) for c in found if c is not None), default=0)

    async def popular_in(
        self, window: str, k: int, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """The k items with most interactions in the window (`1h`, `24h`, `7d`) ending at the
        stream clock, skipping ``exclude``."""
        counts = await self._window_counts(keys.WINDOWS[window], await self.clock())
        return _top(counts, k, exclude)

    async def _window_counts(self, window: keys.Window, clock: int) -> dict[str, float]:
        if self._shards is not None:  # a ZUNION per shard: its buckets share its slot
            found = await self._each_shard(
                lambda pipe, s: pipe.zunion(window.keys_ending_at(clock, s), withscores=True)
            )
            return {str(i): float(c) for rows in found for i, c in rows}
        rows = cast(
            list[tuple[str, float]],
            await self._redis.zunion(window.keys_ending_at(clock), withscores=True),
        )
        return {str(item): float(score) for item, score in rows}

    async def trending(self, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """Items whose last-hour rate most exceeds their average hourly rate over 24 h.

        Score = count_1h / (count_24h / 24 + 1): the +1 keeps a first-ever interaction from
        looking like an infinite surge.
        """
        clock = await self.clock()
        short = await self._window_counts(keys.WINDOWS["1h"], clock)
        long = await self._window_counts(keys.WINDOWS["24h"], clock)
        scores = {item: c / (long.get(item, c) / 24 + 1) for item, c in short.items()}
        return _top(scores, k, exclude)
