"""Popularity in Redis: all-time, in time windows ending at the stream's clock, and trending."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

import redis.asyncio as aioredis

from recommender.store import keys


def _top(scores: Mapping[str, float], k: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
    """The k best (item, score), best first, ties by item id, skipping ``exclude``."""
    excluded = set(exclude)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(item, score) for item, score in ranked if item not in excluded][:k]


class Popularity:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def popular(
        self, k: int, exclude: Iterable[str] = (), category: str | None = None
    ) -> list[tuple[str, float]]:
        """The k most interacted-with items that are not in ``exclude`` (and in ``category``)."""
        excluded = set(exclude)
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

    async def clock(self) -> int:
        """The stream's clock: the newest event time applied (epoch ms)."""
        return int(float(await self._redis.hget(keys.STATS, "clock") or 0))

    async def popular_in(
        self, window: str, k: int, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """The k items with most interactions in the window (`1h`, `24h`, `7d`) ending at the
        stream clock, skipping ``exclude``."""
        counts = await self._window_counts(keys.WINDOWS[window], await self.clock())
        return _top(counts, k, exclude)

    async def _window_counts(self, window: keys.Window, clock: int) -> dict[str, float]:
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
