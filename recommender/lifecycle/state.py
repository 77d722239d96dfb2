"""Which version of a model family is served, the versions served before it, the challenger, and
the lifecycle's decisions, kept in Redis per family (`model:{family}:...`).

The pointer lives in Redis rather than on disk so that every worker and API replica agrees on it
and a restart serves the same version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from recommender.store import keys
from recommender.store.cluster import is_cluster


@dataclass(frozen=True, slots=True)
class ServedModel:
    version: str
    watermark: int  # events applied to the feature store when the model was fitted
    pinned: bool = False  # chosen by an operator: refits do not replace it
    updates: int = 0  # updates folded into this version since its fit (readers reload them)

    @property
    def items_written(self) -> int:
        """CF: item vectors folded in since the fit (the family's `updates`)."""
        return self.updates

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> ServedModel | None:
        """From a `model:{family}:current` hash; None when nothing is served yet."""
        if not raw.get("version"):
            return None
        version = str(raw["version"])
        return cls(
            version,
            int(raw.get("watermark", 0)),
            str(raw.get("pinned")) == "1",
            int(raw.get(keys.items_written_field(version), 0)),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """One lifecycle decision, as `streamrec models list` shows it."""

    at_ms: int
    version: str
    action: str  # served, held, rolled back, pinned, unpinned
    by: str  # refit, operator, monitor
    reason: str = ""

    def encode(self) -> str:
        return json.dumps(
            {"at": self.at_ms, "version": self.version, "action": self.action, "by": self.by}
            | ({"reason": self.reason} if self.reason else {})
        )

    @classmethod
    def decode(cls, raw: str) -> Decision:
        d = json.loads(raw)
        return cls(
            int(d["at"]), str(d["version"]), str(d["action"]), str(d["by"]), d.get("reason", "")
        )


class ModelState:
    """One family's served-version pointer, its history (a stack `rollback` walks down), its
    challenger and its decision log.

    A version's own keys (`keys.version_keys`, e.g. CF's user vectors) are kept while it is
    served and expire `keys.RETIRED_MODEL_TTL_S` after it is replaced, so memory holds about one
    version's worth however often the model is refitted.
    """

    def __init__(self, redis: aioredis.Redis, family: str = keys.CF) -> None:
        self._redis = redis
        self.family = family
        self.pointer = keys.model_current(family)
        self._history = keys.model_history(family)
        self._log = keys.model_log(family)

    async def current(self) -> ServedModel | None:
        return ServedModel.from_hash(await self._redis.hgetall(self.pointer))

    def queue_log(self, pipe: Pipeline, decision: Decision) -> None:
        pipe.lpush(self._log, decision.encode())
        pipe.ltrim(self._log, 0, keys.MODEL_LOG_LEN - 1)

    async def promote(
        self,
        version: str,
        watermark: int,
        pinned: bool = False,
        *,
        by: str = "refit",
        reason: str = "",
        rollback: bool = False,
    ) -> None:
        """Point serving at ``version``. Readers check the pointer (see `ServedModelCache`); the
        notification on the family's channel is for listeners that prefer to be told.

        ``rollback``: the served version leaves the history instead of ``version`` being pushed
        on it, so rolling back again goes further back."""
        previous = await self.current()
        cluster = is_cluster(self._redis)
        mine = keys.version_keys(self.family, version, cluster)
        retired = (
            keys.version_keys(self.family, previous.version, cluster)
            if previous is not None and previous.version != version
            else []
        )
        if cluster:  # the vectors' buckets are in other slots than the pointer's transaction
            await self._each_key("persist", mine)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self.pointer)  # no field of the previous version survives
        pipe.hset(
            self.pointer,
            mapping={"version": version, "watermark": watermark, "pinned": int(pinned)},
        )
        if rollback:
            pipe.lrem(self._history, 1, previous.version if previous else version)
        else:
            pipe.lpush(self._history, version)
            pipe.ltrim(self._history, 0, keys.MODEL_HISTORY_LEN - 1)
        for key in [] if cluster else mine:
            pipe.persist(key)
        for key in [] if cluster else retired:
            pipe.expire(key, keys.RETIRED_MODEL_TTL_S)
        action = "rolled back" if rollback else "served"
        self.queue_log(pipe, Decision(_now_ms(), version, action, by, reason))
        await pipe.execute()
        # After the transaction, not in it: a cluster's pipeline refuses PUBLISH.
        await self._redis.publish(keys.model_channel(self.family), version)
        if cluster:  # after the pointer moved: the retired version serves no new reader
            await self._each_key("expire", retired, keys.RETIRED_MODEL_TTL_S)

    async def _each_key(self, command: str, names: list[str], *args: int) -> None:
        """``command`` on each of ``names`` in one pipeline (a cluster's spans its nodes). A
        worker that dies between the pointer's move and the expiry leaves the retired
        version's buckets without an expiry: memory, never a wrong answer."""
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            getattr(pipe, command)(name, *args)
        await pipe.execute()

    async def set_pinned(self, pinned: bool, by: str = "operator") -> None:
        served = await self.current()
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self.pointer, "pinned", int(pinned))
        if served is not None:
            action = "pinned" if pinned else "unpinned"
            self.queue_log(pipe, Decision(_now_ms(), served.version, action, by))
        await pipe.execute()

    def queue_update(self, pipe: Pipeline, version: str, n: int) -> None:
        """Count ``n`` updates folded into ``version`` since its fit (readers reload them)."""
        pipe.hincrby(self.pointer, keys.items_written_field(version), n)

    async def history(self) -> list[str]:
        """Served versions, newest first (the served one at the head)."""
        return [str(v) for v in await self._redis.lrange(self._history, 0, -1)]

    async def record_challenger(
        self, version: str, details: Mapping[str, Any], by: str = "refit"
    ) -> None:
        """The newest version that was kept but not served, and why."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(keys.model_challenger(self.family))
        fields: dict[str | bytes, str] = {"version": version}
        fields.update({k: str(v) for k, v in details.items()})
        pipe.hset(keys.model_challenger(self.family), mapping=fields)  # type: ignore[arg-type]
        self.queue_log(
            pipe, Decision(_now_ms(), version, "held", by, str(details.get("reason", "")))
        )
        await pipe.execute()

    async def challenger(self) -> dict[str, str]:
        raw = await self._redis.hgetall(keys.model_challenger(self.family))
        return {str(k): str(v) for k, v in raw.items()}

    async def log(self, decision: Decision) -> None:
        """Record a decision that moves nothing (a monitor asked for a refit)."""
        pipe = self._redis.pipeline(transaction=False)
        self.queue_log(pipe, decision)
        await pipe.execute()

    async def decisions(self, n: int = keys.MODEL_LOG_LEN) -> list[Decision]:
        """The newest ``n`` decisions, newest first."""
        return [Decision.decode(str(r)) for r in await self._redis.lrange(self._log, 0, n - 1)]


def _now_ms() -> int:
    return int(time.time() * 1000)
