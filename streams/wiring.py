"""How the worker's parts are built (`streams.composition.WorkerParts.open` calls these): the
stores, the CF trainer and its fit process, the content models, and the record handler with the
listeners and enrichers on the event path."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from models.errors import ModelError
from recommender.cf.refits import Trainer
from recommender.content.cold_start import ColdStartPlacer
from recommender.content.features import (
    CategoryPredictor,
    ContentExamples,
    SentimentScorer,
    ServedContentModels,
)
from recommender.lifecycle.families import TEXT, cf_registry, model_registry
from recommender.lifecycle.state import ModelState
from recommender.monitoring.attribution import Attributor
from recommender.monitoring.impressions import ImpressionStore
from recommender.monitoring.metrics import MetricsWindow
from recommender.privacy.crypto import UserDataCipher, master_cipher
from recommender.privacy.reviews import ReviewStore
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from recommender.store.keys import CF
from streams.handlers import RecordHandler
from streams.processes import background_child

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> tuple[aioredis.Redis, FeatureStore]:
    _, redis_url = settings.require_infrastructure()
    redis = redis_async(redis_url)
    return redis, FeatureStore(redis, settings)


def build_trainer(
    settings: Settings, redis: aioredis.Redis, store: FeatureStore
) -> tuple[Trainer, ProcessPoolExecutor]:
    """The CF trainer, whose refits run in their own process (spawned: this one has threads),
    off the worker's GIL, at background priority, dying with the worker."""
    fit_pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=background_child,
    )
    registry = model_registry(settings)

    async def served_text() -> tuple[str, Path] | None:
        served = await ModelState(redis, TEXT).current()
        if served is None:
            return None
        try:  # a local copy: the fit's process opens it by path (downloaded once from S3)
            path = await asyncio.to_thread(registry.family(TEXT).artifact, served.version)
        except ModelError:
            log.warning("text model %s unreadable; fitting without it", served.version)
            return None
        return served.version, path

    trainer = Trainer(
        store,
        ModelState(redis, CF),
        cf_registry(registry.store),  # one store, one read cache
        settings,
        fit_pool,
        text_model=served_text if settings.content_models else None,
    )
    return trainer, fit_pool


@dataclass(frozen=True)
class ContentParts:
    """The served content models and what the event path does with them."""

    models: ServedContentModels
    predictor: CategoryPredictor
    placer: ColdStartPlacer
    examples: ContentExamples

    @classmethod
    def build(
        cls, settings: Settings, redis: aioredis.Redis, store: FeatureStore, trainer: Trainer
    ) -> ContentParts | None:
        if not settings.content_models:
            return None
        registry = model_registry(settings)
        models = ServedContentModels(redis, registry)
        return cls(
            models,
            CategoryPredictor(models, settings.predicted_category_min_p),
            ColdStartPlacer(store, trainer.updater, trainer.vectors, registry.family(TEXT)),
            ContentExamples(redis),
        )


def build_handler(
    settings: Settings,
    redis: aioredis.Redis,
    store: FeatureStore,
    trainer: Trainer,
    content: ContentParts | None,
    metrics: MetricsWindow,
    dead_letter: Callable[..., Awaitable[Any]],
) -> tuple[RecordHandler, Attributor]:
    """The record handler, and the attributor it tells of every applied batch."""
    master = master_cipher(settings.require_master_keys())
    reviews = ReviewStore(
        redis,
        UserDataCipher(redis, master),
        store.pseudonym_of,
        settings.user_ttl_s,
        settings.content_models,
    )
    attributor = Attributor(
        ImpressionStore(redis, settings.attribution_window_s),
        store.pseudonym_of,
        metrics,
        settings.attribution_hit_k,
    )

    async def send_dead_letter(key: bytes | None, value: bytes) -> None:
        await dead_letter(key=key, value=value)

    handler = RecordHandler(
        store,
        # The CF updater first: attribution must not delay the recommendations' freshness.
        listeners=[trainer.updater, attributor],
        dead_letters=send_dead_letter,
        recorders=[reviews],
        enrichers=[SentimentScorer(content.models)] if content else [],
        content_listeners=[content.examples, content.placer] if content else [],
        content_enrichers=[content.predictor] if content else [],
        metrics=metrics,
    )
    return handler, attributor
