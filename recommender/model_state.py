"""Which model version is served, and the per-user vectors of that version, kept in Redis.

The pointer lives in Redis rather than on disk so that every worker and API replica agrees on it
and a restart serves the same version.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
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

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> ServedModel | None:
        """From the `model:current` hash; None when no model is served yet."""
        if not raw.get("version"):
            return None
        return cls(str(raw["version"]), int(raw.get("watermark", 0)))


class ModelState:
    """The served-version pointer and the user vectors of each version (one hash per version).

    Promoting a version retires the previous one's vectors after a short grace, so memory holds
    about one version's vectors however often the model is refitted.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def current(self) -> ServedModel | None:
        return ServedModel.from_hash(await self._redis.hgetall(keys.MODEL_CURRENT))

    async def promote(self, version: str, watermark: int) -> None:
        """Point serving at ``version``. Readers check the pointer (see `ServedModelCache`); the
        notification on `MODEL_CHANNEL` is for listeners that prefer to be told."""
        previous = await self.current()
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(keys.MODEL_CURRENT, mapping={"version": version, "watermark": watermark})
        pipe.persist(keys.user_vectors(version))
        if previous is not None and previous.version != version:
            pipe.expire(keys.user_vectors(previous.version), keys.RETIRED_MODEL_TTL_S)
        pipe.publish(keys.MODEL_CHANNEL, version)
        await pipe.execute()

    async def write_user_vectors(
        self, version: str, vectors: Mapping[str, npt.NDArray[np.float32]]
    ) -> None:
        if not vectors:
            return
        # base64 keeps one decode_responses=True client for every key.
        encoded = {
            p: base64.b64encode(vec.astype(np.float32).tobytes()).decode()
            for p, vec in vectors.items()
        }
        await self._redis.hset(keys.user_vectors(version), mapping=encoded)  # type: ignore[arg-type]

    async def user_vector(self, version: str, pseudonym: str) -> npt.NDArray[np.float32] | None:
        return decode_vector(await self._redis.hget(keys.user_vectors(version), pseudonym))


def decode_vector(raw: str | bytes | None) -> npt.NDArray[np.float32] | None:
    """A user vector as `write_user_vectors` stored it (base64 float32), or None."""
    if raw is None:
        return None
    return np.frombuffer(base64.b64decode(raw), dtype=np.float32)


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
        if served is not None and served.version != self.version:
            async with self._lock:
                if served.version != self.version:
                    loaded = await asyncio.to_thread(self._registry.load, served.version)
                    self.adopt(served.version, loaded)
        return served, self.model

    def adopt(self, version: str, model: ALSModel) -> None:
        self.version, self.model = version, model
