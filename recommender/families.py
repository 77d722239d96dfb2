"""The model families streamrec keeps, registered in one place.

A family is one module in `models/` behind the `Artifact` contract (a name, one file, save and
load); adding one is a line in `MODEL_FAMILIES`. The registry, the served-version pointer and
`streamrec models --family` then know it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from models.als import ALSModel
from models.base import Artifact
from models.registry import FamilyRegistry, ModelRegistry
from recommender import keys
from recommender.cf_updater import CFUpdater
from recommender.cf_vectors import CFVectors
from recommender.feature_store import FeatureStore
from recommender.lifecycle import ModelLifecycle
from recommender.model_state import ModelState
from recommender.settings import Settings

#: Family name -> the class that stores its versions.
MODEL_FAMILIES: dict[str, type[Artifact]] = {keys.CF: ALSModel}


def model_registry(models_dir: Path) -> ModelRegistry:
    """Every family's versions under ``models_dir``."""
    return ModelRegistry(models_dir, MODEL_FAMILIES)


def cf_registry(models_dir: Path) -> FamilyRegistry[ALSModel]:
    """The collaborative-filtering family's versions."""
    registry: FamilyRegistry[ALSModel] = model_registry(models_dir).family(keys.CF)
    return registry


def lifecycle_for(family: str, redis: aioredis.Redis, settings: Settings) -> ModelLifecycle[Any]:
    """One family's lifecycle, as `streamrec models` drives it (CF: a promoted version gets
    every live user's vector first)."""
    registry = model_registry(settings.models_dir).family(family)
    state = ModelState(redis, family)
    store = FeatureStore(redis, settings)
    prepare = None
    if family == keys.CF:
        updater = CFUpdater(store, state, registry, CFVectors(redis, state))
        prepare = updater.prepare
    return ModelLifecycle(state, registry, prepare=prepare, count=store.incr_stat)
