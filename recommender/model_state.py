"""Which model version is served, and the per-user vectors of that version, kept in Redis.

The pointer lives in Redis rather than on disk so that every worker and API replica agrees on it
and a restart serves the same version.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from recommender import keys


@dataclass(frozen=True, slots=True)
class ServedModel:
    version: str
    watermark: int  # events applied to the feature store when the model was fitted


class ModelState:
    def __init__(self, redis: aioredis.Redis, user_ttl_s: int) -> None:
        self._redis = redis
        self._user_ttl_s = user_ttl_s

    async def current(self) -> ServedModel | None:
        raw = await self._redis.hgetall(keys.MODEL_CURRENT)
        if not raw.get("version"):
            return None
        return ServedModel(str(raw["version"]), int(raw.get("watermark", 0)))

    async def promote(self, version: str, watermark: int) -> None:
        """Point serving at ``version`` and tell listeners (the API swaps without a restart)."""
        await self._redis.hset(
            keys.MODEL_CURRENT, mapping={"version": version, "watermark": watermark}
        )
        await self._redis.publish(keys.MODEL_CHANNEL, version)

    async def write_user_vectors(
        self, version: str, vectors: Mapping[str, npt.NDArray[np.float32]]
    ) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for pseudonym, vec in vectors.items():
            # base64 keeps one decode_responses=True client for every key.
            encoded = base64.b64encode(vec.astype(np.float32).tobytes()).decode()
            pipe.set(keys.user_vector(version, pseudonym), encoded, ex=self._user_ttl_s)
        await pipe.execute()

    async def user_vector(self, version: str, pseudonym: str) -> npt.NDArray[np.float32] | None:
        raw = await self._redis.get(keys.user_vector(version, pseudonym))
        if raw is None:
            return None
        return np.frombuffer(base64.b64decode(raw), dtype=np.float32)
