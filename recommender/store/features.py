"""The feature store: per-event updates in Redis, and the reads that training and serving need."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from recommender.settings import Settings
from recommender.store import keys, scripts
from recommender.store.verification import FeatureSnapshot
from recommender.types import Interaction, ItemMeta
from recommender.weights import event_weight


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What a batch did: the events that were new, and the ones Redis refused (with why)."""

    applied: list[Interaction]
    failed: list[tuple[Interaction, str]]


@dataclass(frozen=True, slots=True)
class ItemCard:
    title: str | None
    predicted: dict[str, float] | None = None
    placed_like: str | None = None


@dataclass(frozen=True, slots=True)
class ItemContent:
    title: str
    text: str | None
    categories: dict[str, float]  # label -> 1, or the confidence of a predicted one


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


PSEUDONYM_CACHE_SIZE = 100_000
#: Users whose histories are read per round trip (see `histories_and_last_seen`).
HISTORY_CHUNK = 100
#: Events per call of the apply script: one call is atomic, and blocks every other client of
#: Valkey while it runs (about 50 us an event on the 2-core machine).
APPLY_CHUNK = 500
#: Items whose content is read per round trip.
CONTENT_CHUNK = 1000


def parse_stats(raw: Mapping[Any, Any]) -> dict[str, int]:
    """The `stats` hash as integers (Lua writes some counters as floats)."""
    return {str(k): int(float(v)) for k, v in raw.items()}


def _top(scores: Mapping[str, float], k: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
    """The k best (item, score), best first, ties by item id, skipping ``exclude``."""
    excluded = set(exclude)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(item, score) for item, score in ranked if item not in excluded][:k]


def _latest_items(recent_rows: Sequence[Any], n: int) -> list[str]:
    """The ``n`` latest distinct items of a user's `recent` list (`type|item|ts...`, newest
    first)."""
    return list(dict.fromkeys(str(r).split("|", 2)[1] for r in recent_rows))[:n]


class FeatureStore:
    """Reads and writes every feature streamrec keeps in Redis.

    Parameters
    ----------
    redis
        An asyncio Redis client created by the caller's lifespan (``decode_responses=True``).
    settings
        Weights, TTLs and caps; the pseudonym key.
    """

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._apply = redis.register_script(scripts.APPLY_EVENTS_LUA)
        self._pseudonyms: dict[str, str] = {}

    def pseudonym(self, user_id: str) -> str:
        # Memoised: one HMAC per user rather than per event (bounded, cleared when full).
        p = self._pseudonyms.get(user_id)
        if p is None:
            if len(self._pseudonyms) >= PSEUDONYM_CACHE_SIZE:
                self._pseudonyms.clear()
            secret = self._settings.pseudonym_secret  # only what needs it asks for the key
            p = self._pseudonyms[user_id] = keys.pseudonymize(secret, user_id)
        return p

    async def apply_interactions(
        self, events: Sequence[Interaction], now_ms: int | None = None
    ) -> ApplyResult:
        """Apply a batch in one round trip, APPLY_CHUNK events per atomic script call (Valkey
        serves other clients between calls); replays are skipped, a failing event does not
        stop the rest."""
        if not events:
            return ApplyResult([], [])
        s = self._settings
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        head: list[str | int | float] = [now, s.dedupe_ttl_s, s.user_ttl_s, s.recent_items]
        lines = []
        for e in events:
            weight = event_weight(e, s.event_weights, s.rating_scale, s.review_positive_weight)
            lines.append(
                f"{e.event_id}|{self.pseudonym(e.user_id)}|{e.item_id}|{e.type}|{weight!r}|{e.ts}"
                f"|{e.recommendation_id or ''}"
            )
        script_keys = [keys.USERS_ACTIVE, keys.ITEMS_POPULAR, keys.STATS]
        pipe = self._redis.pipeline(transaction=False)
        starts = range(0, len(lines), APPLY_CHUNK)
        for start in starts:
            args = head + lines[start : start + APPLY_CHUNK]
            await self._apply(keys=script_keys, args=args, client=pipe)
        done: list[Interaction] = []
        failed: list[tuple[Interaction, str]] = []
        for start, (applied, rejected) in zip(starts, await pipe.execute(), strict=True):
            done += [events[start + int(i)] for i in applied]
            failed += [
                (events[start + int(i)], str(why))
                for i, why in zip(rejected[::2], rejected[1::2], strict=True)
            ]
        return ApplyResult(done, failed)

    async def upsert_items(self, items: Sequence[ItemMeta]) -> None:
        """Write item metadata and add the items to the catalogue (keeps the first-seen ts)."""
        if not items:
            return
        previous = await self.categories([it.item_id for it in items])
        pipe = self._redis.pipeline(transaction=False)
        for it, before in zip(items, previous, strict=True):
            # The category index follows an item whose categories changed.
            for c in set(before) - set(it.categories):
                pipe.srem(keys.category_items(c), it.item_id)
            for c in it.categories:
                pipe.sadd(keys.category_items(c), it.item_id)
            fields: Mapping[Any, Any] = {
                "title": it.title,
                "text": it.text or "",
                "categories": json.dumps(list(it.categories)),
                # Predicted categories and their confidence; empty when the publisher gave them.
                "predicted": json.dumps(it.predicted) if it.predicted else "",
            }
            pipe.hset(keys.item_meta(it.item_id), mapping=fields)
            if it.image is not None:  # kept for the image model; an update without one keeps it
                pipe.set(keys.item_image(it.item_id), it.image)
            pipe.zadd(keys.ITEMS_CATALOGUE, {it.item_id: it.ts}, nx=True)
            if it.predicted or not it.categories:
                pipe.sadd(keys.ITEMS_UNCATEGORISED, it.item_id)
            else:
                pipe.srem(keys.ITEMS_UNCATEGORISED, it.item_id)
        pipe.hincrby(keys.STATS, "items_upserted", len(items))
        await pipe.execute()

    async def images(self, item_ids: Sequence[str]) -> list[str | None]:
        """Each item's image (base64), or None."""
        pipe = self._redis.pipeline(transaction=False)
        for item in item_ids:
            pipe.get(keys.item_image(item))
        return [None if i is None else str(i) for i in await pipe.execute()]

    async def uncategorised(self) -> list[str]:
        """Items that came without categories (predicted ones or none yet)."""
        return sorted(str(i) for i in await self._redis.smembers(keys.ITEMS_UNCATEGORISED))

    async def catalogue(self) -> list[str]:
        """Every item that has content."""
        return [str(i) for i in await self._redis.zrange(keys.ITEMS_CATALOGUE, 0, -1)]

    async def set_predicted(self, predicted: Mapping[str, dict[str, float]]) -> None:
        """New predicted categories of items that came without any (a newer model read them);
        the category index follows."""
        items = list(predicted)
        before = await self.categories(items)
        pipe = self._redis.pipeline(transaction=False)
        for item, old in zip(items, before, strict=True):
            new = predicted[item]
            for c in set(old) - set(new):
                pipe.srem(keys.category_items(c), item)
            for c in new:
                pipe.sadd(keys.category_items(c), item)
            pipe.hset(
                keys.item_meta(item),
                mapping={"categories": json.dumps(list(new)), "predicted": json.dumps(new)},
            )
        await pipe.execute()

    async def user_histories(self, pseudonyms: Sequence[str]) -> list[dict[str, float]]:
        """Each user's full weighted interaction set (item -> confidence weight)."""
        pipe = self._redis.pipeline(transaction=False)
        for p in pseudonyms:
            pipe.hgetall(keys.user_items(p))
        rows = await pipe.execute()
        return [{item: float(w) for item, w in row.items()} for row in rows]

    async def active_users(self) -> list[str]:
        """Pseudonyms of every user with live features."""
        return [str(p) for p in await self._redis.zrange(keys.USERS_ACTIVE, 0, -1)]

    @property
    def redis(self) -> aioredis.Redis:
        """The client, for stores that share this one's connection pool."""
        return self._redis

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
        self, pseudonyms: Sequence[str]
    ) -> tuple[list[dict[str, float]], dict[str, int]]:
        """`user_histories`, and each user's newest event time (the as-of of their vector).

        Read HISTORY_CHUNK users per round trip: a refit reads every live user, and one reply
        would hold the worker's event loop (and every event behind it) for the whole parse
        (about a second of reading for 200,000 events' users in an ad-hoc run, chunked)."""
        histories: list[dict[str, float]] = []
        last_seen: dict[str, int] = {}
        for start in range(0, len(pseudonyms), HISTORY_CHUNK):
            chunk = pseudonyms[start : start + HISTORY_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for p in chunk:
                pipe.hgetall(keys.user_items(p))
                pipe.hget(keys.user_counts(p), "last_seen")
            rows = await pipe.execute()
            histories += [{item: float(w) for item, w in row.items()} for row in rows[::2]]
            last_seen.update(
                (p, int(float(t or 0))) for p, t in zip(chunk, rows[1::2], strict=True)
            )
        return histories, last_seen

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

    async def categories(self, item_ids: Sequence[str]) -> list[list[str]]:
        """Each item's categories ([] for an item with no metadata)."""
        pipe = self._redis.pipeline(transaction=False)
        for item in item_ids:
            pipe.hget(keys.item_meta(item), "categories")
        return [json.loads(raw) if raw else [] for raw in await pipe.execute()]

    async def item_contents(self, item_ids: Sequence[str]) -> list[ItemContent | None]:
        """Each item's title, text and categories (confidence 1 for a category the publisher
        gave, the model's confidence for a predicted one); None for an item without content."""
        rows: list[list[str | None]] = []
        for start in range(0, len(item_ids), CONTENT_CHUNK):  # a refit reads the catalogue
            pipe = self._redis.pipeline(transaction=False)
            for item in item_ids[start : start + CONTENT_CHUNK]:
                pipe.hmget(keys.item_meta(item), ["title", "text", "categories", "predicted"])
            rows += await pipe.execute()
        out: list[ItemContent | None] = []
        for title, text, cats, predicted in rows:
            if title is None:
                out.append(None)
                continue
            confidence = json.loads(predicted) if predicted else {}
            categories = {c: float(confidence.get(c, 1.0)) for c in json.loads(cats or "[]")}
            out.append(ItemContent(str(title), str(text or "") or None, categories))
        return out

    async def mark_placed(self, placed: Mapping[str, str]) -> None:
        """Items placed in the CF model from their content, each with the known item it was
        placed nearest to (serving says "new, like X")."""
        pipe = self._redis.pipeline(transaction=False)
        for item, like in placed.items():
            pipe.hset(keys.item_meta(item), "placed_like", like)
        await pipe.execute()

    async def items_in(self, category: str) -> set[str]:
        return {str(i) for i in await self._redis.smembers(keys.category_items(category))}

    async def known_item(self, item_id: str) -> bool:
        """In the catalogue, or interacted with."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.exists(keys.item_meta(item_id))
        pipe.zscore(keys.ITEMS_POPULAR, item_id)
        meta, score = await pipe.execute()
        return bool(meta) or score is not None

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

    async def distinct_users(self, item_id: str) -> int:
        """Approximate (HyperLogLog, ~0.8% error) number of users who touched the item."""
        return int(await self._redis.pfcount(keys.item_users(item_id)))

    async def category_affinity(self, user_id: str) -> dict[str, float]:
        """Category -> the user's affinity, decayed to the stream clock (tau = 30 days)."""
        raw = await self._redis.hgetall(keys.user_categories(self.pseudonym(user_id)))
        base = float(raw.pop("_base", 0) or 0)
        if not raw:
            return {}
        factor = math.exp((base - await self.clock()) / keys.AFFINITY_TAU_MS)
        return {str(c): float(v) * factor for c, v in raw.items()}

    async def titles(self, item_ids: Sequence[str]) -> list[str | None]:
        return [c.title for c in await self.cards(item_ids)]

    async def cards(self, item_ids: Sequence[str]) -> list[ItemCard]:
        """What an answer shows of each item: its title, its predicted categories (with their
        confidence) when it came without any, and the item it was placed near when new."""
        pipe = self._redis.pipeline(transaction=False)
        for item in item_ids:
            pipe.hmget(keys.item_meta(item), ["title", "predicted", "placed_like"])
        return [
            ItemCard(title, json.loads(predicted) if predicted else None, like or None)
            for title, predicted, like in await pipe.execute()
        ]

    async def stats(self) -> dict[str, int]:
        return parse_stats(await self._redis.hgetall(keys.STATS))

    async def counts(self) -> tuple[int, int]:
        """(users with live features, items in the catalogue or with interactions)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(keys.USERS_ACTIVE)
        pipe.zcard(keys.ITEMS_CATALOGUE)
        pipe.zcard(keys.ITEMS_POPULAR)
        users, catalogue, popular = await pipe.execute()
        return int(users), max(int(catalogue), int(popular))

    async def snapshot(self) -> FeatureSnapshot:
        """Every live user's item weights and type counts, and item popularity."""
        users = await self.active_users()
        histories = await self.user_histories(users)
        pipe = self._redis.pipeline(transaction=False)
        for p in users:
            pipe.hgetall(keys.user_counts(p))
        counts = await pipe.execute()
        snap = FeatureSnapshot()
        for p, items, type_counts in zip(users, histories, counts, strict=True):
            snap.user_items.update({(p, i): w for i, w in items.items()})
            snap.user_counts.update(
                {(p, str(t)): float(c) for t, c in type_counts.items() if t != "last_seen"}
            )
        popular = cast(
            list[tuple[str, float]],
            await self._redis.zrange(keys.ITEMS_POPULAR, 0, -1, withscores=True),
        )
        snap.popular = {str(i): float(c) for i, c in popular}
        return snap

    async def forget(self, pseudonym: str) -> int:
        """Delete the user's features and their place among the active users; returns how many
        keys went (erasure)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(
            keys.user_items(pseudonym),
            keys.user_recent(pseudonym),
            keys.user_counts(pseudonym),
            keys.user_categories(pseudonym),
        )
        pipe.zrem(keys.USERS_ACTIVE, pseudonym)
        deleted, _ = await pipe.execute()
        return int(deleted)

    async def note_erasure(self) -> None:
        """Count an erasure and when it was (model versions fitted before it say so)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(keys.STATS, "erasures", 1)
        pipe.hset(keys.STATS, "last_erasure_ms", int(time.time() * 1000))
        await pipe.execute()

    async def incr_stat(self, name: str, amount: int = 1) -> None:
        await self._redis.hincrby(keys.STATS, name, amount)
