"""Applying a batch on a Redis/Valkey Cluster, where one script may only touch one slot.

On one node a batch is one script call per 500 events (`FeatureStore.apply_interactions`). On a
cluster it is three pipelined steps, each safe to repeat:

1. per user, `APPLY_USER_LUA` under the user's hash tag: their features and dedupe markers,
   atomically (the categories of the items, which live in other slots, are read first and
   passed in);
2. per popularity shard (`keys.item_shard`), `APPLY_SHARD_LUA`: popularity, windows, the clock
   and the counters, once per event by the shard's own marker, for every event the user's side
   applied now or before (so a worker killed between the steps loses nothing on replay);
3. the indexes that are idempotent by nature: an item's distinct users (PFADD) and the active
   users (ZADD with the time).

redis-py's cluster pipeline sends each step's commands to their nodes together, at about 20 us
of the client's CPU a command: for a batch of MovieLens events in time order (a few users,
hundreds of items) the items' PFADDs and category reads were most of them. Those go as one
script call per primary over the keys it serves (`by_primary`; they may run twice): the
cluster's bare apply of such batches went from 14,800 to 18,300-21,900 events/s (one node:
34,500-42,400; ad hoc, docs/benchmark-history.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from recommender.memo import ExpiringMemo
from recommender.settings import Settings
from recommender.store import keys, scripts
from recommender.types import Interaction

log = logging.getLogger(__name__)

#: How long an item's categories are remembered between batches (see `ClusterApply`).
CATEGORIES_MEMO_S = 2.0

#: One script call: the script's body, its keys and its arguments.
Call = tuple[str, Sequence[str], Sequence[str | int | float]]


async def pipelined_scripts(
    redis: aioredis.Redis,
    calls: Sequence[Call],
    also: Sequence[Sequence[str | int | float]] = (),
) -> list[Any]:
    """The replies of ``calls`` sent in one cluster pipeline (with the commands in ``also``,
    whose replies are dropped: idempotent ones, that ride along to save a round trip). A cluster
    pipeline sends EVALSHA without loading the script first (a single node's pipeline loads
    them), and a replica promoted by a failover has none: the calls a node answers NOSCRIPT are
    sent again once their scripts are loaded on every primary, and only those (the others ran:
    sending them again would count their events as duplicates)."""
    replies: list[Any] = [NoScriptError()] * len(calls)
    failure: Exception | None = None  # the first of ``also``'s commands that failed
    for attempt in range(2):
        todo = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if attempt:
            if not todo:
                break
            for body in dict.fromkeys(calls[i][0] for i in todo):
                await redis.script_load(body)
        pipe: Any = redis.pipeline()
        for i in todo:
            body, script_keys, args = calls[i]
            pipe.evalsha(_sha(body), len(script_keys), *script_keys, *args)
        for command in () if attempt else also:
            pipe.execute_command(*command)
        answered = await pipe.execute(raise_on_error=False)
        for i, reply in zip(todo, answered[: len(todo)], strict=True):
            replies[i] = reply
        if not attempt:
            failure = next((r for r in answered[len(todo) :] if isinstance(r, Exception)), None)
    for reply in [*replies, failure]:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def by_primary(
    redis: aioredis.Redis,
    body: str,
    entries: Sequence[tuple[str, Sequence[str | int]]],
    head: Sequence[str | int] = (),
) -> list[Any]:
    """``body``, a script flagged `allow-cross-slot-keys` (`scripts.NODE_PFADD_LUA`), run once
    per primary, all at once, with ARGV = ``head`` and the parts of the entries (a key, and
    its parts) whose key the primary serves; its reply has one value per entry, and so does
    this. A primary that refuses the call (a slot moved away or migrating, a failover) gets its
    entries one call each, the entry's key declared to route it (`pipelined_scripts`: the
    client follows MOVED and ASK). Only for scripts that may run twice: a call can fail half
    done."""
    if not entries:
        return []
    replies = await _per_primary(redis, body, entries, head)
    again = [i for i, reply in enumerate(replies) if reply is None]
    if again:
        calls: list[Call] = [(body, [entries[i][0]], [*head, *entries[i][1]]) for i in again]
        for i, reply in zip(again, await pipelined_scripts(redis, calls), strict=True):
            replies[i] = reply[0]
    return replies


async def _per_primary(
    redis: aioredis.Redis,
    body: str,
    entries: Sequence[tuple[str, Sequence[str | int]]],
    head: Sequence[str | int],
) -> list[Any]:
    """`by_primary`'s calls, one per primary: None for the entries of a call that failed."""
    cluster: Any = redis
    groups: dict[str, tuple[Any, list[int]]] = {}
    try:
        await cluster.initialize()  # (at once, once the client has its map of slots)
        for i, (key, _) in enumerate(entries):
            node = cluster.get_node_from_key(key)
            groups.setdefault(node.name, (node, []))[1].append(i)
    except (RedisError, RedisClusterException):  # no map of the slots now
        return [None] * len(entries)
    replies: list[Any] = [None] * len(entries)

    async def call(node: Any, mine: list[int]) -> None:
        argv = [*head, *(part for i in mine for part in entries[i][1])]
        command = ("EVALSHA", _sha(body), 0, *argv)
        try:
            try:
                got = await cluster.execute_command(*command, target_nodes=node)
            except NoScriptError:  # a new primary (a failover): load it there
                await cluster.execute_command("SCRIPT", "LOAD", body, target_nodes=node)
                got = await cluster.execute_command(*command, target_nodes=node)
        except RedisError as exc:
            log.info("a call over %s's slots failed, sent entry by entry: %s", node.name, exc)
            return
        for i, value in zip(mine, got, strict=True):
            replies[i] = value

    await asyncio.gather(*(call(node, mine) for node, mine in groups.values()))
    return replies


def _sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


def _user_apply_keys(pseudonym: str) -> list[str]:
    """What applying an event writes of a user on a cluster (`scripts.APPLY_USER_LUA`'s
    declared keys, with the events' markers): tombstone, items, recent, counts, cats, times."""
    return [
        keys.erased(pseudonym),
        keys.user_items(pseudonym),
        keys.user_recent(pseudonym),
        keys.user_counts(pseudonym),
        keys.user_categories(pseudonym),
        keys.user_item_times(pseudonym),
    ]


def is_cluster(redis: object) -> bool:
    """Whether ``redis`` is a cluster client (`connections.redis_async` of a cluster URL)."""
    return isinstance(redis, aioredis.RedisCluster)


class ClusterApply:
    """The cluster's way of `FeatureStore.apply_interactions` (see the module's docstring)."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        # ``redis`` is a `RedisCluster` (`connections.redis_async` types it as the common one).
        self._redis = redis
        self._settings = settings
        self.shards = settings.redis_cluster_shards
        self._known: ExpiringMemo[str, str] = ExpiringMemo(CATEGORIES_MEMO_S, 200_000)

    async def apply(
        self,
        events: Sequence[Interaction],
        weights: Sequence[float],
        pseudonyms: Sequence[str],
        now: int,
    ) -> tuple[list[int], list[tuple[int, str]], int]:
        """(indexes applied now, (index, reason) refused, how many were erased users')."""
        s = self._settings
        categories = await self._categories({e.item_id for e in events})
        by_user: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(pseudonyms):
            by_user[p].append(i)
        calls: list[Call] = []
        for p, mine in by_user.items():
            args: list[str | int | float] = [s.dedupe_ttl_s, s.user_ttl_s, s.recent_items]
            args.append("1" if s.recency_half_life_s > 0 else "0")
            declared = _user_apply_keys(p) + [keys.seen(p, events[i].event_id) for i in mine]
            for i in mine:
                e = events[i]
                args.append(
                    f"{e.event_id}|{e.item_id}|{e.type}|{weights[i]!r}|{e.ts}"
                    f"|{e.recommendation_id or ''}"
                )
                args.append(categories.get(e.item_id, ""))
            calls.append((scripts.APPLY_USER_LUA, declared, args))
        applied: list[int] = []
        failed: list[tuple[int, str]] = []
        counted: list[int] = []  # applied now or before: the shards' side is due for each
        erased = 0
        for mine, (done, refused, duplicates, skipped) in zip(
            by_user.values(), await pipelined_scripts(self._redis, calls), strict=True
        ):
            applied += [mine[int(i)] for i in done]
            counted += [mine[int(i)] for i in [*done, *duplicates]]
            failed += [
                (mine[int(i)], str(why)) for i, why in zip(refused[::2], refused[1::2], strict=True)
            ]
            erased += int(skipped)
        await self._count(events, pseudonyms, sorted(counted), now, erased)
        return sorted(applied), failed, erased

    async def _categories(self, items: set[str]) -> dict[str, str]:
        """Each item's categories (JSON; '' for none), remembered for CATEGORIES_MEMO_S: on one
        node the apply script reads them in its own call, here they cost a round trip a batch
        (a change of an item's categories reaches the users' affinity that much later)."""
        found = {item: self._known.get(item) for item in items}
        missing = sorted(item for item, cats in found.items() if cats is None)
        metas = [(meta, [meta]) for meta in map(keys.item_meta, missing)]
        read = await by_primary(self._redis, scripts.NODE_HGET_LUA, metas, ["categories"])
        for item, cats in zip(missing, read, strict=True):
            value = str(cats or "")
            found[item] = value
            self._known.put(item, value)
        return {item: cats for item, cats in found.items() if cats}

    async def _count(
        self,
        events: Sequence[Interaction],
        pseudonyms: Sequence[str],
        counted: list[int],
        now: int,
        erased: int,
    ) -> None:
        s = self._settings
        by_shard: dict[int, list[int]] = defaultdict(list)
        for i in counted:
            by_shard[keys.item_shard(events[i].item_id, self.shards)].append(i)
        calls: list[Call] = []
        for shard, mine in by_shard.items():
            markers = [keys.shard_seen(shard, events[i].event_id) for i in mine]
            # (A batch's events share a few buckets: each is named once.)
            spans = {(w, events[i].ts // w.bucket_ms) for i in mine for w in keys.WINDOWS.values()}
            windows = sorted({w.keys_ending_at(b * w.bucket_ms, shard, 1)[0] for w, b in spans})
            lines = [f"{e.event_id}|{e.item_id}|{e.type}|{e.ts}" for e in (events[i] for i in mine)]
            calls.append((
                scripts.APPLY_SHARD_LUA,
                [keys.stats_key(shard), keys.items_popular(shard), *markers, *windows],
                [now, s.dedupe_ttl_s, keys.shard_tag(shard), *lines],
            ))  # fmt: skip
        # The indexes ride in the same pipeline: idempotent (PFADD, ZADD of a time), they may be
        # written before or after the shards' side, and again on a replay.
        also: list[list[str | int | float]] = []
        active: dict[int, dict[str, int]] = defaultdict(dict)
        for i in counted:
            active[keys.user_shard(pseudonyms[i], self.shards)][pseudonyms[i]] = now
        for shard, users in active.items():
            also.append(["ZADD", keys.users_active(shard), *(x for p in users for x in (now, p))])
            also.append(["ZREMRANGEBYSCORE", keys.users_active(shard), "-inf",
                         f"({now - s.user_ttl_s * 1000}"])  # fmt: skip
        if erased:
            also.append(["HINCRBY", keys.STATS, "erased_suppressed", erased])
        users_of = [keys.item_users(events[i].item_id) for i in counted]
        distinct = [(k, (k, pseudonyms[i])) for k, i in zip(users_of, counted, strict=True)]
        await asyncio.gather(
            pipelined_scripts(self._redis, calls, also),
            by_primary(self._redis, scripts.NODE_PFADD_LUA, distinct),
        )
