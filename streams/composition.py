"""The worker's parts, wired once: the Redis client, the stores, the listeners and enrichers on
the event path, the CF trainer and its fit process, the content models and their trainer's
process; and `aclose`, which closes what was opened when the worker stops."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

import redis.asyncio as aioredis

from recommender.cf.refits import Trainer
from recommender.content.cold_start import ColdStartPlacer
from recommender.content.features import (
    CategoryPredictor,
    ContentExamples,
    SentimentScorer,
    ServedContentModels,
    repredict,
)
from recommender.lifecycle.families import IMAGE, TEXT, cf_registry, model_registry
from recommender.lifecycle.state import ModelState
from recommender.listeners import ContentListener
from recommender.monitoring.attribution import Attributor
from recommender.monitoring.impressions import ImpressionStore
from recommender.monitoring.metrics import MetricsWindow
from recommender.privacy.crypto import UserDataCipher, master_cipher
from recommender.privacy.reviews import ReviewStore
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from recommender.store.keys import CF
from streams import content_process
from streams.handlers import DeadLetterSink, RecordHandler
from streams.processes import background_child


@dataclass
class WorkerParts:
    settings: Settings
    redis: aioredis.Redis
    store: FeatureStore
    trainer: Trainer
    handler: RecordHandler
    fit_pool: ProcessPoolExecutor
    metrics: MetricsWindow
    attributor: Attributor
    content: ServedContentModels | None = None
    predictor: CategoryPredictor | None = None
    placer: ColdStartPlacer | None = None
    content_trainer: BaseProcess | None = None
    _placed_for: str | None = None  # the CF version whose unknown items were placed

    @classmethod
    def open(cls, settings: Settings, dead_letters: DeadLetterSink) -> WorkerParts:
        """Build every part; nothing connects until first used."""
        _, redis_url = settings.require_infrastructure()
        master = master_cipher(settings.require_master_keys())
        redis = redis_async(redis_url)
        store = FeatureStore(redis, settings)
        metrics = MetricsWindow(settings.metrics_window_ms)
        # Refits run in their own process (spawned: this one has threads), off the worker's
        # GIL, at background priority, and die with the worker.
        fit_pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=background_child,
        )
        cf_state = ModelState(redis, CF)
        registry = model_registry(settings.models_dir)
        learn = settings.content_models

        async def served_text() -> tuple[str, Path] | None:
            served = await ModelState(redis, TEXT).current()
            if served is None:
                return None
            return served.version, registry.family(TEXT).artifact(served.version)

        trainer = Trainer(
            store,
            cf_state,
            cf_registry(settings.models_dir),
            settings,
            fit_pool,
            text_model=served_text if learn else None,
        )
        reviews = ReviewStore(
            redis, UserDataCipher(redis, master), store.pseudonym, settings.user_ttl_s, learn
        )
        content = ServedContentModels(redis, registry) if learn else None
        content_listeners: list[ContentListener] = []
        predictor = placer = None
        if content is not None:
            placer = ColdStartPlacer(store, trainer.updater, trainer.vectors, registry.family(TEXT))
            predictor = CategoryPredictor(content, settings.predicted_category_min_p)
            content_listeners = [ContentExamples(redis), placer]
        attributor = Attributor(
            ImpressionStore(redis, settings.attribution_window_s),
            store.pseudonym,
            metrics,
            settings.attribution_hit_k,
        )
        handler = RecordHandler(
            store,
            # The CF updater first: attribution must not delay the recommendations' freshness.
            listeners=[trainer.updater, attributor],
            dead_letters=dead_letters,
            recorders=[reviews],
            enrichers=[SentimentScorer(content)] if content else [],
            content_listeners=content_listeners,
            content_enrichers=[predictor] if predictor else [],
            metrics=metrics,
        )
        return cls(
            settings,
            redis,
            store,
            trainer,
            handler,
            fit_pool,
            metrics,
            attributor,
            content,
            predictor,
            placer,
        )

    async def sample_gauges(self) -> None:
        """Set the gauges only this process can read: the served version of every family and
        Redis's memory."""
        m = self.metrics
        m.clear("streamrec_served_version")
        served = {CF: self.trainer.version}
        if self.content is not None:
            served |= {family: cache.version for family, cache in self.content.cache.items()}
        for family, version in served.items():
            if version is not None:
                m.set("streamrec_served_version", 1, family=family, version=version)
        info = await self.redis.info("memory")
        m.set("streamrec_redis_memory", float(info.get("used_memory", 0)))

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
        """Follow the served versions of every family this worker uses: a new text or image
        model predicts again the categories of the items that came without any; a new CF
        version places the items it does not know from their content."""
        served = await self.trainer.sync()
        if self.content is None or self.predictor is None or self.placer is None:
            return
        if await self.content.sync() & {TEXT, IMAGE}:
            await repredict(self.store, self.predictor)
        if served is not None and served.version != self._placed_for:
            self._placed_for = served.version
            await self.placer.place_unknown()

    async def aclose(self) -> None:
        """Stop the fit process (a fit in flight is abandoned: the next refit redoes it) and
        close the Redis client."""
        self.fit_pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.terminate()  # the fit process and the content trainer
        await self.redis.aclose()
