"""Which model version is served, and the per-user vectors of that version, kept in Redis.

The pointer lives in Redis rather than on disk so that every worker and API replica agrees on it
and a restart serves the same version.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from models.als import ALSModel
from models.registry import ModelRegistry
from recommender import keys


@dataclass(frozen=True, slots=True)
class ServedModel:
    version: str
    watermark: int  # events applied to the feature store when the model was fitted
    pinned: bool = False  # chosen by an operator: refits do not replace it
    items_written: int = 0  # item vectors folded in since the fit (see `write_item_vectors`)

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> ServedModel | None:
        """From the `model:current` hash; None when no model is served yet."""
        if not raw.get("version"):
            return None
        version = str(raw["version"])
        return cls(
            version,
            int(raw.get("watermark", 0)),
            str(raw.get("pinned")) == "1",
            int(raw.get(keys.items_written_field(version), 0)),
        )


class ModelState:
    """The served-version pointer and the user vectors of each version (one hash per version).

    Promoting a version retires the previous one's vectors after a short grace, so memory holds
    about one version's vectors however often the model is refitted.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def current(self) -> ServedModel | None:
        return ServedModel.from_hash(await self._redis.hgetall(keys.MODEL_CURRENT))

    async def promote(self, version: str, watermark: int, pinned: bool = False) -> None:
        """Point serving at ``version``. Readers check the pointer (see `ServedModelCache`); the
        notification on `MODEL_CHANNEL` is for listeners that prefer to be told."""
        previous = await self.current()
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(keys.MODEL_CURRENT)  # no field of the previous version survives
        pipe.hset(
            keys.MODEL_CURRENT,
            mapping={"version": version, "watermark": watermark, "pinned": int(pinned)},
        )
        pipe.lpush(keys.MODEL_HISTORY, version)
        pipe.ltrim(keys.MODEL_HISTORY, 0, keys.MODEL_HISTORY_LEN - 1)
        pipe.persist(keys.user_vectors(version))
        pipe.persist(keys.item_vectors(version))
        if previous is not None and previous.version != version:
            pipe.expire(keys.user_vectors(previous.version), keys.RETIRED_MODEL_TTL_S)
            pipe.expire(keys.item_vectors(previous.version), keys.RETIRED_MODEL_TTL_S)
        pipe.publish(keys.MODEL_CHANNEL, version)
        await pipe.execute()

    async def set_pinned(self, pinned: bool) -> None:
        await self._redis.hset(keys.MODEL_CURRENT, "pinned", int(pinned))

    async def history(self) -> list[str]:
        """Promoted versions, newest first."""
        return [str(v) for v in await self._redis.lrange(keys.MODEL_HISTORY, 0, -1)]

    async def record_challenger(self, version: str, details: Mapping[str, Any]) -> None:
        """The newest refit that was kept but not served, and why."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(keys.MODEL_CHALLENGER)
        fields: dict[str | bytes, str] = {"version": version}
        fields.update({k: str(v) for k, v in details.items()})
        pipe.hset(keys.MODEL_CHALLENGER, mapping=fields)  # type: ignore[arg-type]
        pipe.hincrby(keys.STATS, "models_held_back", 1)
        await pipe.execute()

    async def challenger(self) -> dict[str, str]:
        return {
            str(k): str(v) for k, v in (await self._redis.hgetall(keys.MODEL_CHALLENGER)).items()
        }

    async def has_vectors(self, version: str) -> bool:
        return bool(await self._redis.exists(keys.user_vectors(version)))

    async def write_item_vectors(
        self, version: str, vectors: Mapping[str, npt.NDArray[np.float32]]
    ) -> None:
        """Factors of items newer than ``version``'s fit; readers pick them up (`items_written`)."""
        if not vectors:
            return
        encoded = {
            item: base64.b64encode(vec.astype(np.float32).tobytes()).decode()
            for item, vec in vectors.items()
        }
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(keys.item_vectors(version), mapping=encoded)  # type: ignore[arg-type]
        pipe.hincrby(keys.MODEL_CURRENT, keys.items_written_field(version), len(encoded))
        await pipe.execute()

    async def item_vectors(self, version: str) -> dict[str, npt.NDArray[np.float32]]:
        raw = await self._redis.hgetall(keys.item_vectors(version))
        return {
            str(item): np.frombuffer(base64.b64decode(b64), dtype=np.float32)
            for item, b64 in raw.items()
        }

    async def user_vectors_of(
        self, version: str, pseudonyms: Sequence[str]
    ) -> list[UserVector | None]:
        if not pseudonyms:
            return []
        rows = await self._redis.hmget(keys.user_vectors(version), list(pseudonyms))
        return [decode_vector(r) for r in rows]

    async def write_user_vectors(
        self,
        version: str,
        vectors: Mapping[str, npt.NDArray[np.float32]],
        as_of: Mapping[str, int],
    ) -> None:
        """Each user's vector with ``as_of``: the time of the newest event it was computed from
        (what the API reports as `user_event_ms`, and the freshness benchmark waits for)."""
        if not vectors:
            return
        # base64 keeps one decode_responses=True client for every key.
        encoded = {
            p: f"{as_of.get(p, 0)}:{base64.b64encode(vec.astype(np.float32).tobytes()).decode()}"
            for p, vec in vectors.items()
        }
        await self._redis.hset(keys.user_vectors(version), mapping=encoded)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class UserVector:
    vector: npt.NDArray[np.float32]
    as_of: int  # epoch ms of the newest event folded in


def decode_vector(raw: str | bytes | None) -> UserVector | None:
    """A user vector as `write_user_vectors` stored it (`as_of:base64 float32`), or None."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    as_of, _, b64 = text.partition(":")
    return UserVector(np.frombuffer(base64.b64decode(b64), dtype=np.float32), int(as_of))


class ServedModelCache:
    """The served model, loaded once per version: what the API and every worker hold in memory.

    `current` reads the pointer and loads a newer version from the registry when it moved, so a
    promoted model is picked up without a restart. `adopt` installs a model this process has just
    fitted and promoted, without reading it back from disk.
    """

    def __init__(
        self, state: ModelState, registry: ModelRegistry, check_every_s: float = 0.0
    ) -> None:
        self._state = state
        self._registry = registry
        self._lock = asyncio.Lock()
        self._check_every_s = check_every_s
        self._checked: tuple[float, ServedModel | None] | None = None
        self.version: str | None = None
        self.model: ALSModel | None = None
        self._base: ALSModel | None = None  # as loaded: without the items folded in since
        self._items_seen = 0

    async def _pointer(self) -> ServedModel | None:
        # A hot API need not read the pointer on every request: a promotion reaches it within
        # `check_every_s`, and the read it saves is a fifth of a request's Redis round trips.
        now = time.monotonic()
        if self._checked is not None and now - self._checked[0] < self._check_every_s:
            return self._checked[1]
        served = await self._state.current()
        self._checked = (now, served)
        return served

    async def current(self) -> tuple[ServedModel | None, ALSModel | None]:
        served = await self._pointer()
        if served is not None and (
            served.version != self.version or served.items_written != self._items_seen
        ):
            async with self._lock:
                if served.version != self.version:
                    loaded = await asyncio.to_thread(self._registry.load, served.version)
                    self.adopt(served.version, loaded)
                if served.items_written != self._items_seen and self._base is not None:
                    extra = await self._state.item_vectors(served.version)
                    self.model = self._base
                    if extra:
                        factors = np.asarray(list(extra.values()), dtype=np.float32)
                        self.model = self._base.with_items(list(extra), factors)
                    self._items_seen = served.items_written
        return served, self.model

    @property
    def fitted(self) -> ALSModel | None:
        """The served version as fitted, without the items folded in since."""
        return self._base

    def fitted_knows(self, item_id: str) -> bool:
        """Whether the served version's fit (not a fold-in since) has the item."""
        return self._base is not None and self._base.knows(item_id)

    def adopt(self, version: str, model: ALSModel) -> None:
        self.version, self.model, self._base = version, model, model
        self._items_seen = 0

    def extend(self, items: Sequence[str], factors: npt.NDArray[np.float32]) -> None:
        """Serve ``items`` too, as this process has just written them (no read back)."""
        if self.model is not None:
            self.model = self.model.with_items(items, factors)
            self._items_seen += len(items)
