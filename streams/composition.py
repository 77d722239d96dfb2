"""The worker's parts, wired once: the Redis client, the stores, the listeners and enrichers on
the event path, the CF trainer and its fit process, the content models and their trainer's
process; and `aclose`, which closes what was opened when the worker stops."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import redis.asyncio as aioredis

from recommender.connections import redis_async
from recommender.content_features import (
    CategoryPredictor,
    ContentExamples,
    SentimentScorer,
    ServedContentModels,
)
from recommender.crypto import UserDataCipher, master_cipher
from recommender.families import cf_registry, model_registry
from recommender.feature_store import FeatureStore
from recommender.keys import CF
from recommender.model_state import ModelState
from recommender.reviews import ReviewStore
from recommender.settings import Settings
from recommender.training import Trainer
from streams import content_process
from streams.handlers import DeadLetterSink, RecordHandler

#: Full fits run at this niceness: background training takes only the CPU ingestion leaves.
FIT_NICENESS = 10


@dataclass
class WorkerParts:
    settings: Settings
    redis: aioredis.Redis
    store: FeatureStore
    trainer: Trainer
    handler: RecordHandler
    fit_pool: ProcessPoolExecutor
    content: ServedContentModels | None = None
    content_trainer: BaseProcess | None = None

    @classmethod
    def open(cls, settings: Settings, dead_letters: DeadLetterSink) -> WorkerParts:
        """Build every part; nothing connects until first used."""
        _, redis_url = settings.require_infrastructure()
        master = master_cipher(settings.require_master_keys())
        redis = redis_async(redis_url)
        store = FeatureStore(redis, settings)
        # Full fits run in their own process (spawned: this one has threads), off the worker's
        # GIL, at low priority.
        fit_pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=os.nice,
            initargs=(FIT_NICENESS,),
        )
        cf_state = ModelState(redis, CF)
        trainer = Trainer(store, cf_state, cf_registry(settings.models_dir), settings, fit_pool)
        learn = settings.content_models
        reviews = ReviewStore(
            redis, UserDataCipher(redis, master), store.pseudonym, settings.user_ttl_s, learn
        )
        content = ServedContentModels(redis, model_registry(settings.models_dir)) if learn else None
        handler = RecordHandler(
            store,
            listeners=[trainer.updater],
            dead_letters=dead_letters,
            recorders=[reviews],
            enrichers=[SentimentScorer(content)] if content else [],
            content_listeners=[ContentExamples(redis)] if content else [],
            content_enrichers=(
                [CategoryPredictor(content, settings.predicted_category_min_p)] if content else []
            ),
        )
        return cls(settings, redis, store, trainer, handler, fit_pool, content)

    def start(self) -> None:
        """Start the content trainer's process (when the content models are on)."""
        if self.content is None or self.content_trainer is not None:
            return
        proc = multiprocessing.get_context("spawn").Process(
            target=content_process.run,
            args=(self.settings.as_env(),),
            name="streamrec-content-trainer",
            daemon=True,
        )
        proc.start()
        self.content_trainer = proc

    async def sync_models(self) -> None:
        """Follow the served versions of every family this worker uses."""
        await self.trainer.sync()
        if self.content is not None:
            await self.content.sync()

    async def aclose(self) -> None:
        """Stop the fit process (a fit in flight is abandoned: the next refit redoes it) and
        close the Redis client."""
        self.fit_pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.terminate()  # the fit process and the content trainer
        await self.redis.aclose()
