"""A family's lifecycle as the operator's `streamrec models` and the content trainer drive it;
CF's adds its preparation (a promoted version gets every live user's vector first)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from recommender.cf.updater import CFUpdater
from recommender.cf.vectors import CFVectors
from recommender.lifecycle.families import model_registry
from recommender.lifecycle.publishing import ModelLifecycle
from recommender.lifecycle.state import ModelState
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.features import FeatureStore


def lifecycle_for(family: str, redis: aioredis.Redis, settings: Settings) -> ModelLifecycle[Any]:
    """One family's lifecycle, as `streamrec models` drives it (CF: a promoted version gets
    every live user's vector first)."""
    registry = model_registry(settings).family(family)
    state = ModelState(redis, family)
    store = FeatureStore(redis, settings)
    prepare = None
    if family == keys.CF:
        updater = CFUpdater(store, state, registry, CFVectors(redis, state))
        prepare = updater.prepare
    return ModelLifecycle(
        state, registry, prepare=prepare, count=store.stats.incr, kept=settings.models_kept
    )
