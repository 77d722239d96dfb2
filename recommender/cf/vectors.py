"""The collaborative-filtering family's vectors in Redis: each user's vector per served version,
the candidates serving cached for it, and the factors of items newer than a version's fit. The
one owner of those keys."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from recommender.cf.codec import (  # re-exported: the family's vectors are read through here
    CachedCandidates as CachedCandidates,
    Raw as Raw,
    UserVector as UserVector,
    b64,
    decode_candidates as decode_candidates,
    decode_vector as decode_vector,
    encode_candidates as encode_candidates,
)
from recommender.lifecycle.state import ModelState, ServedModel
from recommender.store import keys, scripts
from recommender.store.cluster import by_primary, is_cluster
from recommender.store.coalesce import ReadCoalescer

#: A `ServingRead`'s vector when it still has the `as_of` the caller named (the candidates are
#: then None): the caller's answer from them still stands.
UNCHANGED = "="

#: User vectors encoded and written per round trip (see `CFVectors.write_user_vectors`).
WRITE_CHUNK = 2000
#: Users' candidates written per round trip: ~2.3 KB each, so that one write holds Valkey (and
#: every event and request behind it) for well under a millisecond.
CANDIDATES_CHUNK = 250


@dataclass(frozen=True, slots=True)
class ServingRead:
    """One user's part of a serving read (`CFVectors.serving_read`)."""

    vector: Raw  # as stored (`decode_vector`), or `UNCHANGED`
    candidates: Raw  # as stored (`decode_candidates`)
    pointer: ServedModel | None  # the family's pointer, read in the same call
    # (their items, their latest recent entries as stored) when the candidates were missing or
    # older than the vector; else None.
    state: tuple[set[str], list[str]] | None
    # Whether `pointer` was read in the same call (on one node); a cluster's read leaves it
    # out: it is one slot, the family's, that every read would visit (the caller's pointer
    # check, every `STREAMREC_API_MODEL_CHECK_S`, follows a promotion instead).
    pointer_read: bool = True


class CFVectors:
    """User vectors (`model:{cf}:<v>:users`, on a cluster spread over buckets: see
    `keys.vector_bucket`) and new items' factors (`model:{cf}:<v>:items`, on a cluster spread
    by the item: `keys.item_vector_bucket`)."""

    def __init__(self, redis: aioredis.Redis, state: ModelState) -> None:
        self._redis = redis
        self._state = state
        self._script = redis.register_script(scripts.SERVING_READ_LUA)
        self._cluster = is_cluster(redis)
        self._reads: ReadCoalescer[tuple[str, str, str, int], ServingRead] = ReadCoalescer(
            self._read
        )

    def _bucket(self, pseudonym: str) -> str:
        return keys.vector_bucket(pseudonym, self._cluster)

    def _by_bucket(self, pseudonyms: Iterable[str]) -> dict[str, list[str]]:
        """``pseudonyms`` by their `keys.vector_bucket` (one bucket, '', on one node)."""
        found: dict[str, list[str]] = defaultdict(list)
        for p in pseudonyms:
            found[self._bucket(p)].append(p)
        return found

    async def has_vectors(self, version: str) -> bool:
        names = [keys.user_vectors(version, b) for b in keys.vector_buckets(self._cluster)]
        return bool(await self._redis.exists(*names))

    async def write_user_vectors(
        self,
        version: str,
        vectors: Mapping[str, npt.NDArray[np.float32]],
        as_of: Mapping[str, int],
    ) -> None:
        """Each user's vector with ``as_of``: the time of the newest event it was computed from
        (what the API reports as `user_event_ms`, and the freshness benchmark waits for)."""
        items = list(vectors.items())
        # In chunks: a refit writes every live user, and encoding them all at once would hold
        # the worker's event loop (and the events behind it) for the whole encoding.
        for start in range(0, len(items), WRITE_CHUNK):
            chunk = items[start : start + WRITE_CHUNK]
            encoded = {p: f"{as_of.get(p, 0)}:{b64(vec)}" for p, vec in chunk}
            await self._hset_by_bucket(keys.user_vectors, version, encoded)

    async def _hset_by_bucket(
        self, key: Callable[[str, str], str], name: str, fields: Mapping[str, str]
    ) -> None:
        """HSET ``fields`` (pseudonym -> value) into ``key(name, bucket)`` of their buckets:
        one command on one node, one per bucket in a pipeline on a cluster."""
        pipe = self._redis.pipeline(transaction=False)
        for bucket, users in self._by_bucket(fields).items():
            pipe.hset(key(name, bucket), mapping={p: fields[p] for p in users})
        await pipe.execute()

    async def raw_user_vectors_of(self, version: str, pseudonyms: Sequence[str]) -> list[Raw]:
        """As stored (`decode_vector` reads one): for a caller that decodes off the loop."""
        if not pseudonyms:
            return []
        buckets = self._by_bucket(dict.fromkeys(pseudonyms))
        pipe = self._redis.pipeline(transaction=False)
        for bucket, users in buckets.items():
            pipe.hmget(keys.user_vectors(version, bucket), users)
        found: dict[str, Raw] = {}
        for users, rows in zip(buckets.values(), await pipe.execute(), strict=True):
            found.update(zip(users, rows, strict=True))
        return [found[p] for p in pseudonyms]

    def queue_user_vector(self, pipe: Pipeline, version: str, pseudonym: str) -> None:
        """Add the read of one user's vector to ``pipe`` (decode the reply with
        `decode_vector`): serving reads it in the same round trip as the user's features."""
        pipe.hget(keys.user_vectors(version, self._bucket(pseudonym)), pseudonym)

    async def serving_read(
        self, version: str, pseudonym: str, recent: int, held_as_of: int | None = None
    ) -> ServingRead:
        """What serving needs of one user (`ServingRead`): one script call shared with the
        other requests in flight. ``recent``: how many latest items the state holds. With
        ``held_as_of``, the `as_of` of what the caller computed before: if the vector still has
        it, the vector is `UNCHANGED` and nothing else travels."""
        held = "" if held_as_of is None else str(held_as_of)
        return await self._reads.get((version, pseudonym, held, recent))

    async def _read(self, wanted: Sequence[tuple[str, str, str, int]]) -> list[ServingRead]:
        found: dict[tuple[str, str, str, int], ServingRead] = {}
        for version, recent in dict.fromkeys((v, n) for v, _, _, n in wanted):
            asked = list(
                dict.fromkeys((p, held) for v, p, held, n in wanted if (v, n) == (version, recent))
            )
            if self._cluster:
                replies = await self._read_buckets(version, recent, asked)
            else:
                replies = await self._script(
                    keys=[keys.user_vectors(version), keys.user_recs(version), self._state.pointer],
                    args=[recent, *(x for pair in asked for x in pair)],
                )
            vectors, candidates, pointer, states = replies
            served = ServedModel.from_hash(dict(zip(pointer[::2], pointer[1::2], strict=True)))
            for i, (p, held) in enumerate(asked):
                state = (set(states[i][0]), list(states[i][1])) if states[i] else None
                found[(version, p, held, recent)] = ServingRead(
                    vectors[i], candidates[i], served, state, not self._cluster
                )
        return [found[w] for w in wanted]

    async def _read_buckets(
        self, version: str, recent: int, asked: list[tuple[str, str]]
    ) -> list[Any]:
        """The serving script's reply on a cluster: one call per primary over the vector buckets
        of the users asked, and the states due read from the users' own slots; no pointer
        (`ServingRead.pointer_read`). In the order of ``asked``."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (p, _) in enumerate(asked):
            groups[self._bucket(p)].append(i)
        members = list(groups.values())
        named = [(keys.user_vectors(version, b), keys.user_recs(version, b)) for b in groups]
        pairs = [[x for i in group for x in asked[i]] for group in members]
        entries = [
            (k[0], (*k, str(len(g)), *p)) for k, g, p in zip(named, members, pairs, strict=True)
        ]
        read = scripts.SERVING_READ_BUCKETS_LUA
        replies = await by_primary(self._redis, read, entries, [str(recent)])
        vectors: list[Any] = [None] * len(asked)
        candidates: list[Any] = [None] * len(asked)
        states: list[Any] = [None] * len(asked)
        for group, (v, c, st) in zip(members, replies, strict=True):
            for n, i in enumerate(group):
                vectors[i], candidates[i], states[i] = v[n], c[n], st[n]
        await self._read_states(states, [p for p, _ in asked], recent)
        return [vectors, candidates, [], states]

    async def _read_states(self, states: list[Any], users: list[str], recent: int) -> None:
        """On a cluster, the states the script flagged as due (the users' keys are in their own
        slots): one more round trip, only when some user's candidates are stale."""
        due = [i for i, state in enumerate(states) if state == 1]
        if not due:
            return
        pipe = self._redis.pipeline(transaction=False)
        for i in due:
            pipe.hkeys(keys.user_items(users[i]))
            pipe.lrange(keys.user_recent(users[i]), 0, max(recent, 1) - 1)
        found = await pipe.execute()
        for n, i in enumerate(due):
            states[i] = [found[2 * n], found[2 * n + 1]]

    async def write_candidates(self, version: str, found: Mapping[str, CachedCandidates]) -> None:
        """Cache what serving computed; a reader uses an entry only while its `as_of` is the
        user's vector's (the worker's next fold-in of the user makes it stale)."""
        if found:
            encoded = {p: encode_candidates(c) for p, c in found.items()}
            await self._hset_by_bucket(keys.user_recs, version, encoded)

    async def write_pending_candidates(
        self, token: str, found: Mapping[str, CachedCandidates]
    ) -> str:
        """Candidates computed for a version not yet named (`keys.pending_recs`); returns the
        key, for `adopt_candidates` or `discard_candidates`."""
        key = keys.pending_recs(token)
        await self._redis.sadd(keys.PENDING_RECS_INDEX, key)
        users = list(found)
        # CANDIDATES_CHUNK users a round trip, whatever their buckets: a cluster's 1,024 buckets
        # would otherwise cost a round trip each.
        for start in range(0, len(users), CANDIDATES_CHUNK):
            pipe = self._redis.pipeline(transaction=False)
            for bucket, mine in self._by_bucket(users[start : start + CANDIDATES_CHUNK]).items():
                named = keys.in_bucket(key, bucket)
                pipe.hset(named, mapping={p: encode_candidates(found[p]) for p in mine})
                pipe.expire(named, keys.PENDING_RECS_TTL_S)
            await pipe.execute()
        return key

    async def adopt_candidates(self, pending: str, version: str) -> None:
        """``version``'s cached candidates are the pending ones (before it serves; promoting
        it keeps them as long as its vectors)."""
        buckets = keys.vector_buckets(self._cluster)
        named = [keys.in_bucket(pending, b) for b in buckets]
        pipe = self._redis.pipeline(transaction=False)
        for name in named:
            pipe.exists(name)
        present = await pipe.execute()
        pipe = self._redis.pipeline(transaction=False)
        for name, bucket, there in zip(named, buckets, present, strict=True):
            if there:
                # (A cluster's pipeline refuses `rename`; both names are in one slot.)
                pipe.execute_command("RENAME", name, keys.user_recs(version, bucket))
        await pipe.execute()
        await self._redis.srem(keys.PENDING_RECS_INDEX, pending)

    async def discard_candidates(self, pending: str) -> None:
        names = [keys.in_bucket(pending, b) for b in keys.vector_buckets(self._cluster)]
        await self._redis.delete(*names)
        await self._redis.srem(keys.PENDING_RECS_INDEX, pending)

    async def write_item_vectors(
        self, version: str, vectors: Mapping[str, npt.NDArray[np.float32]]
    ) -> None:
        """Factors of items newer than ``version``'s fit; readers pick them up (the served
        version's update count moves in the same transaction)."""
        if not vectors:
            return
        encoded = {item: b64(vec) for item, vec in vectors.items()}
        if self._cluster:  # the factors in their buckets first, then their order and count
            pipe = self._redis.pipeline()
            for bucket, items in self._items_by_bucket(encoded).items():
                pipe.hset(
                    keys.item_vectors(version, bucket), mapping={i: encoded[i] for i in items}
                )
            await pipe.execute()
        pipe = self._redis.pipeline(transaction=True)
        if not self._cluster:
            pipe.hset(keys.item_vectors(version), mapping=encoded)  # type: ignore[arg-type]
        pipe.rpush(keys.item_vectors_order(version), *encoded)
        self._state.queue_update(pipe, version, len(encoded))
        await pipe.execute()

    def _items_by_bucket(self, items: Iterable[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for item in items:
            found[keys.item_vector_bucket(item, self._cluster)].append(item)
        return found

    async def item_vectors(
        self, version: str, since: int = 0, until: int = 0
    ) -> dict[str, npt.NDArray[np.float32]] | None:
        """The factors of items folded into ``version`` since its fit, or (``until`` > 0) only
        the writes from the ``since``-th to the ``until``-th; None when their order does not
        have them (written before the order was kept: read them all). Every API process reads
        them again when they change, and the whole hash grows with every new item."""
        raw: dict[str, Raw] = {}
        if not until and not self._cluster:
            everything = await self._redis.hgetall(keys.item_vectors(version))
            raw = {str(item): b64 for item, b64 in everything.items()}
        else:  # (on a cluster, all of them: from the order's start to its end)
            order = await self._redis.lrange(keys.item_vectors_order(version), since, until - 1)
            if until and len(order) != until - since:
                return None
            by_bucket = self._items_by_bucket(str(i) for i in dict.fromkeys(order))
            pipe = self._redis.pipeline(transaction=False)
            for bucket, ids in by_bucket.items():
                pipe.hmget(keys.item_vectors(version, bucket), ids)
            for ids, found in zip(by_bucket.values(), await pipe.execute(), strict=True):
                raw.update(zip(ids, found, strict=True))
        return {
            str(item): np.frombuffer(base64.b64decode(b64), dtype=np.float32)
            for item, b64 in raw.items()
            if b64 is not None
        }

    async def forget(self, pseudonym: str) -> int:
        """Remove the user's vector and cached candidates from every version that can hold
        them (the served one, those served before: a rollback's, the challenger, and refits'
        pending candidates), in one round trip whatever the size of the keyspace; returns how
        many vectors were removed."""
        served = await self._state.current()
        versions = set(await self._state.history())
        versions.add((await self._state.challenger()).get("version", ""))
        versions.add(served.version if served is not None else "")
        live = sorted(v for v in versions if v)
        pending = await self._redis.smembers(keys.PENDING_RECS_INDEX)
        bucket = self._bucket(pseudonym)
        pipe = self._redis.pipeline(transaction=False)
        for version in live:
            pipe.hdel(keys.user_vectors(version, bucket), pseudonym)
            pipe.hdel(keys.user_recs(version, bucket), pseudonym)
        for key in pending:
            pipe.hdel(keys.in_bucket(str(key), bucket), pseudonym)
        done = await pipe.execute()
        return sum(int(x) for x in done[: 2 * len(live) : 2])
