"""A user's features in Redis: their weighted items, latest interactions, type counts and
category affinity; the reads serving and training make of them, and their erasure."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from recommender.store import keys
from recommender.weights import with_recency

#: Users whose histories are read per round trip (see `histories_and_last_seen`).
HISTORY_CHUNK = 100


@dataclass(frozen=True, slots=True)
class RecentInteraction:
    type: str
    item_id: str
    ts: int
    recommendation_id: str | None = None

    @classmethod
    def parse(cls, raw: object) -> RecentInteraction:
        """An entry of `u:{p}:recent`: `type|item|ts`, then `|recommendation_id` if any."""
        etype, item, ts, *rest = str(raw).split("|")
        return cls(etype, item, int(ts), rest[0] if rest else None)


def _latest_items(recent_rows: Sequence[Any], n: int) -> list[str]:
    """The ``n`` latest distinct items of a user's `recent` list (`type|item|ts...`, newest
    first)."""
    return list(dict.fromkeys(str(r).split("|", 2)[1] for r in recent_rows))[:n]


@dataclass
class ActiveCursor:
    """Where a reader of the active-users index is (`UserFeatures.active_since`)."""

    ms: int = 0
    read_at: dict[str, int] = field(default_factory=dict)  # index -> its users at `ms` read


def in_window(
    history: dict[str, float], recent_rows: Sequence[Any], window_s: float
) -> dict[str, float]:
    """The part of ``history`` whose items the user touched in the last ``window_s`` seconds
    before their newest event, as their recent list (`type|item|ts...`) dates them; the whole
    history when the list dates none of its items."""
    dated = [RecentInteraction.parse(r) for r in recent_rows]
    if not dated:
        return history
    newest = max(r.ts for r in dated)
    recent = {r.item_id for r in dated if r.ts >= newest - window_s * 1000}
    kept = {i: w for i, w in history.items() if i in recent}
    return kept or history


class UserFeatures:
    """Reads of every user's features, and their erasure. The apply script writes them
    (`FeatureStore.apply_interactions`)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        pseudonym: Callable[[str], str],
        clock: Callable[[], Awaitable[int]],
        shards: int | None = None,
        half_life_s: float = 0.0,
    ) -> None:
        self._redis = redis
        self._half_life_s = half_life_s  # of a fit's confidences (`weights.with_recency`)
        self._shards = shards  # of the active-users index, on a cluster (`keys.user_shard`)
        self.pseudonym = pseudonym
        self._clock = clock  # the stream's clock, which affinity decays to
        self._window_read = (-math.inf, 0.0)  # (when, `drift_window_s`) as last read

    async def histories(self, pseudonyms: Sequence[str]) -> list[dict[str, float]]:
        """Each user's full weighted interaction set (item -> confidence weight)."""
        pipe = self._redis.pipeline(transaction=False)
        for p in pseudonyms:
            pipe.hgetall(keys.user_items(p))
        rows = await pipe.execute()
        return [{item: float(w) for item, w in row.items()} for row in rows]

    async def active(self) -> list[str]:
        """Pseudonyms of every user with live features."""
        if self._shards is None:
            return [str(p) for p in await self._redis.zrange(keys.USERS_ACTIVE, 0, -1)]
        pipe = self._redis.pipeline(transaction=False)
        for shard in range(self._shards):
            pipe.zrange(keys.users_active(shard), 0, -1)
        return [str(p) for rows in await pipe.execute() for p in rows]

    async def active_since(self, cursor: ActiveCursor, limit: int) -> list[tuple[str, int]]:
        """(pseudonym, when their latest events were applied) of the next ``limit`` users in
        the active-users index after ``cursor``, oldest first; ``cursor`` moves past them.

        A batch's users share its time, so the cursor is that time and how many of each index's
        users at it were read (an index orders users of one time by name)."""
        indexes = (
            [keys.USERS_ACTIVE]
            if self._shards is None
            else [keys.users_active(shard) for shard in range(self._shards)]
        )
        pipe = self._redis.pipeline(transaction=False)
        for index in indexes:
            skip = cursor.read_at.get(index, 0)
            pipe.zrangebyscore(index, cursor.ms, "+inf", skip, limit, withscores=True)
        rows = await pipe.execute()
        found = sorted(
            ((int(t), index, str(p)) for index, got in zip(indexes, rows, strict=True)
             for p, t in got),
        )[:limit]  # fmt: skip
        if found:
            last = found[-1][0]
            at = {i: cursor.read_at.get(i, 0) for i in indexes} if last == cursor.ms else {}
            for t, index, _ in found:
                if t == last:
                    at[index] = at.get(index, 0) + 1
            cursor.ms, cursor.read_at = last, {i: n for i, n in at.items() if n}
        return [(p, t) for t, _, p in found]

    def queue_serving_state(self, pipe: Pipeline, pseudonym: str, recent: int) -> None:
        """Add to ``pipe`` the reads serving needs of a user (their items, their latest ones):
        serving sends them with another store's reads in one round trip."""
        pipe.hkeys(keys.user_items(pseudonym))
        pipe.lrange(keys.user_recent(pseudonym), 0, max(recent, 1) - 1)

    @staticmethod
    def parse_serving_state(rows: Sequence[Any], recent: int) -> tuple[set[str], list[str]]:
        """The replies of `queue_serving_state`: (items touched, the ``recent`` latest items,
        newest first)."""
        return {str(i) for i in rows[0]}, _latest_items(rows[1], recent)

    async def serving_state(self, user_id: str, recent: int) -> tuple[set[str], list[str]]:
        """`queue_serving_state` for one user, on its own."""
        pipe = self._redis.pipeline(transaction=False)
        self.queue_serving_state(pipe, self.pseudonym(user_id), recent)
        return self.parse_serving_state(await pipe.execute(), recent)

    async def histories_and_last_seen(
        self, pseudonyms: Sequence[str], window_s: float = 0.0
    ) -> tuple[list[dict[str, float]], dict[str, int]]:
        """`histories` as a fit weighs them (decayed by recency: `weights.with_recency`), and
        each user's newest event time (the as-of of their vector). With ``window_s`` (after a
        drift: `drift_window_s`), only the items of each user's last ``window_s`` seconds, as
        their recent list dates them (`in_window`).

        Read HISTORY_CHUNK users per round trip: a refit reads every live user, and one reply
        would hold the worker's event loop (and every event behind it) for the whole parse
        (about a second of reading for 200,000 events' users in an ad-hoc run, chunked)."""
        histories: list[dict[str, float]] = []
        last_seen: dict[str, int] = {}
        timed, windowed = self._half_life_s > 0, window_s > 0
        step = 2 + timed + windowed
        for start in range(0, len(pseudonyms), HISTORY_CHUNK):
            chunk = pseudonyms[start : start + HISTORY_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for p in chunk:
                pipe.hgetall(keys.user_items(p))
                pipe.hget(keys.user_counts(p), "last_seen")
                if timed:
                    pipe.hgetall(keys.user_item_times(p))
                if windowed:
                    pipe.lrange(keys.user_recent(p), 0, -1)
            rows = await pipe.execute()
            for n in range(len(chunk)):
                got = rows[step * n : step * (n + 1)]
                history = {item: float(w) for item, w in got[0].items()}
                if timed:
                    times = {str(i): int(t) for i, t in got[2].items()}
                    history = with_recency(history, times, self._half_life_s)
                if windowed:
                    history = in_window(history, got[-1], window_s)
                histories.append(history)
            last_seen.update(
                (p, int(float(t or 0))) for p, t in zip(chunk, rows[1::step], strict=True)
            )
        return histories, last_seen

    async def drift_window_s(self) -> float:
        """The window users are folded in from after a detected drift (0: none holds now),
        read at most once a second (the worker asks on every batch)."""
        now = time.monotonic()
        if now - self._window_read[0] >= 1.0:
            raw = await self._redis.get(keys.DRIFT_WINDOW)
            self._window_read = (now, float(raw or 0.0))
        return self._window_read[1]

    async def hold_drift_window(self, window_s: float, hold_s: float) -> None:
        """From now on for ``hold_s``, fold users in from their last ``window_s`` seconds."""
        await self._redis.set(keys.DRIFT_WINDOW, window_s, px=max(int(hold_s * 1000), 1))
        self._window_read = (time.monotonic(), window_s)

    async def recent_items_of(self, pseudonyms: Sequence[str], n: int) -> list[list[str]]:
        """Each user's ``n`` latest items, newest first (as `parse_serving_state` reads them),
        HISTORY_CHUNK users per round trip."""
        found: list[list[str]] = []
        for start in range(0, len(pseudonyms), HISTORY_CHUNK):
            pipe = self._redis.pipeline(transaction=False)
            for p in pseudonyms[start : start + HISTORY_CHUNK]:
                pipe.lrange(keys.user_recent(p), 0, max(n, 1) - 1)
            found += [_latest_items(rows, n) for rows in await pipe.execute()]
        return found

    async def recent(self, user_id: str, n: int = 10) -> list[RecentInteraction]:
        rows = await self._redis.lrange(keys.user_recent(self.pseudonym(user_id)), 0, n - 1)
        return [RecentInteraction.parse(row) for row in rows]

    async def items_since(self, pseudonyms: Sequence[str], ts: int) -> dict[str, set[str]]:
        """Each user's items with an event newer than ``ts`` (among their recent interactions),
        for users that have any."""
        pipe = self._redis.pipeline(transaction=False)
        for p in pseudonyms:
            pipe.lrange(keys.user_recent(p), 0, -1)
        found: dict[str, set[str]] = {}
        for p, rows in zip(pseudonyms, await pipe.execute(), strict=True):
            new = {r.item_id for r in map(RecentInteraction.parse, rows) if r.ts > ts}
            if new:
                found[p] = new
        return found

    async def category_affinity(self, user_id: str) -> dict[str, float]:
        """Category -> the user's affinity, decayed to the stream clock (tau = 30 days)."""
        raw = await self._redis.hgetall(keys.user_categories(self.pseudonym(user_id)))
        base = float(raw.pop("_base", 0) or 0)
        if not raw:
            return {}
        factor = math.exp((base - await self._clock()) / keys.AFFINITY_TAU_MS)
        return {str(c): float(v) * factor for c, v in raw.items()}

    async def erased_at(self, pseudonyms: Iterable[str]) -> dict[str, int]:
        """When each of ``pseudonyms`` that was erased was (epoch ms); the others are absent."""
        wanted = list(dict.fromkeys(pseudonyms))
        if not wanted:
            return {}
        if self._shards is None:
            found = await self._redis.mget([keys.erased(p) for p in wanted])
        else:  # a cluster: each tombstone is in its user's slot
            pipe = self._redis.pipeline(transaction=False)
            for p in wanted:
                pipe.get(keys.erased(p))
            found = await pipe.execute()
        return {p: int(at) for p, at in zip(wanted, found, strict=True) if at is not None}

    async def leave_tombstone(self, pseudonym: str, at_ms: int, ttl_s: int) -> None:
        """Mark the user erased at ``at_ms`` (first, before their data goes: a batch applying
        meanwhile sees it in its script)."""
        await self._redis.set(keys.erased(pseudonym), at_ms, ex=ttl_s)

    async def forget(self, pseudonym: str) -> int:
        """Delete the user's features and their place among the active users; returns how many
        keys went (erasure)."""
        # One transaction on one node; on a cluster the index is in another slot than the user.
        pipe = self._redis.pipeline(transaction=self._shards is None)
        pipe.delete(
            keys.user_items(pseudonym),
            keys.user_recent(pseudonym),
            keys.user_counts(pseudonym),
            keys.user_categories(pseudonym),
            keys.user_item_times(pseudonym),
        )
        shard = None if self._shards is None else keys.user_shard(pseudonym, self._shards)
        pipe.zrem(keys.users_active(shard), pseudonym)
        deleted, _ = await pipe.execute()
        return int(deleted)
