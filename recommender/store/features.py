"""The feature store: per-event updates in Redis, applied by one script per batch, and the reads
that training and serving need, by concern: a user's features (`users`), the catalogue
(`catalogue`), popularity and the stream's clock (`popularity`), counters (`stats`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from recommender.settings import Settings
from recommender.store import keys, scripts
from recommender.store.catalogue import Catalogue
from recommender.store.cluster import ClusterApply, is_cluster
from recommender.store.popularity import Popularity
from recommender.store.stats import Stats
from recommender.store.users import UserFeatures
from recommender.store.verification import FeatureSnapshot
from recommender.types import Interaction
from recommender.weights import event_weight


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What a batch did: the events that were new, and the ones Redis refused (with why)."""

    applied: list[Interaction]
    failed: list[tuple[Interaction, str]]


PSEUDONYM_CACHE_SIZE = 100_000
#: Events per call of the apply script: one call is atomic, and blocks every other client of
#: Valkey while it runs (about 50 us an event on the 2-core machine).
APPLY_CHUNK = 500


def _ahead_reason(ts: int, now: int, allowed_s: int) -> str:
    return (
        f"ts {ts} is {(ts - now) / 1000:,.0f} s ahead of the worker's clock (more than "
        f"STREAMREC_MAX_EVENT_AHEAD_S={allowed_s}): a producer's clock is wrong"
    )


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
        self._cluster = ClusterApply(redis, settings) if is_cluster(redis) else None
        #: The shards of the global aggregates: one unsharded copy on a single node.
        shards = self._cluster.shards if self._cluster else None
        self._pseudonyms: dict[str, str] = {}
        self.popularity = Popularity(redis, shards)
        self.users = UserFeatures(
            redis, self.pseudonym, self.popularity.clock, shards, settings.recency_half_life_s
        )
        self.catalogue = Catalogue(redis, shards)
        self.stats = Stats(redis, shards)

    def pseudonym(self, user_id: str) -> str:
        # Memoised: one HMAC per user rather than per event (bounded, cleared when full).
        p = self._pseudonyms.get(user_id)
        if p is None:
            if len(self._pseudonyms) >= PSEUDONYM_CACHE_SIZE:
                self._pseudonyms.clear()
            secret = self._settings.pseudonym_secret  # only what needs it asks for the key
            p = self._pseudonyms[user_id] = keys.pseudonymize(secret, user_id)
        return p

    def pseudonym_of(self, event: Interaction) -> str:
        """The pseudonym ``event`` carries from its decoding, or computed for one made
        elsewhere (an import, a test)."""
        return event.pseudonym or self.pseudonym(event.user_id)

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
        # Event time is the producer's clock: bounded by ours before it moves the stream clock
        # (Kafka's record time is the producer's too, unless a topic uses LogAppendTime).
        ahead = now + s.max_event_ahead_s * 1000
        future = [
            (e, _ahead_reason(e.ts, now, s.max_event_ahead_s)) for e in events if e.ts > ahead
        ]
        if future:
            events = [e for e in events if e.ts <= ahead]
            result = await self.apply_interactions(events, now)
            return ApplyResult(result.applied, result.failed + future)
        weights = [
            event_weight(e, s.event_weights, s.rating_scale, s.review_positive_weight)
            for e in events
        ]
        pseudonyms = [self.pseudonym_of(e) for e in events]
        if self._cluster is not None:
            ok, refused, _ = await self._cluster.apply(events, weights, pseudonyms, now)
            return ApplyResult([events[i] for i in ok], [(events[i], why) for i, why in refused])
        head: list[str | int | float] = [now, s.dedupe_ttl_s, s.user_ttl_s, s.recent_items]
        head.append("1" if s.recency_half_life_s > 0 else "0")
        lines = [
            f"{e.event_id}|{p}|{e.item_id}|{e.type}|{w!r}|{e.ts}|{e.recommendation_id or ''}"
            for e, p, w in zip(events, pseudonyms, weights, strict=True)
        ]
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

    @property
    def redis(self) -> aioredis.Redis:
        """The client, for stores that share this one's connection pool."""
        return self._redis

    async def snapshot(self) -> FeatureSnapshot:
        """Every live user's item weights and type counts, and item popularity."""
        users = await self.users.active()
        histories = await self.users.histories(users)
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
        snap.popular = await self.popularity.all_counts()
        return snap
