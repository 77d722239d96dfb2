"""The API's services, opened once in the lifespan and closed with it (as
`streams.composition.WorkerParts` is for the worker): what every route and the fast path reach,
typed, through `request.state.services`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from cryptography.fernet import MultiFernet

from api.metrics_feed import MetricsFeed
from api.publisher import Publisher
from api.telemetry import ApiMetrics
from recommender.cf.vectors import CFVectors
from recommender.lifecycle.families import SEQUENTIAL, cf_registry, model_registry
from recommender.lifecycle.served import ServedModelCache
from recommender.lifecycle.state import ModelState
from recommender.monitoring.impressions import ImpressionStore
from recommender.privacy.access import ApiKeyStore, RateLimiter
from recommender.privacy.crypto import UserDataCipher, check_master_keys
from recommender.privacy.profiles import UserDataService
from recommender.privacy.reviews import ReviewStore
from recommender.serving.config import ServingConfig
from recommender.serving.service import RecommendationService
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from recommender.store.keys import CF
from streams.kafka import kafka_security
from streams.metrics import MetricsPublisher, now_ms
from streams.signing import metrics_key, signed

log = logging.getLogger(__name__)


async def _torch_on_one_thread() -> None:
    """Import the sequential family's module (torch: seconds) off the event loop, then run
    torch on one thread in the loop's own thread, where lists are scored (torch's setting is
    per thread): with two, its threads and BLAS's fight over two cores (a list's sequential
    scores took 12.7 ms against 1.0 ms in an ad-hoc timing, 9,066 items, on a machine busy with
    a benchmark: the direction, not the figure; `bench freshness` did not move with it)."""
    await asyncio.to_thread(importlib.import_module, "models.next_item")
    import torch

    torch.set_num_threads(1)
    # What torch's import left (~150,000 objects) joins what start-up froze
    # (`streamrec.gc_tuning`): unfrozen, every full collection walks it (41 ms on an idle
    # machine). `bench freshness`'s p99 after a fold-in did not move with it, one run each.
    gc.freeze()


def _sequential(redis: aioredis.Redis, settings: Settings) -> ServedModelCache[Any] | None:
    """The served sequential family, when on (its class, and torch, load with a version)."""
    if settings.sequential_weight <= 0:
        return None
    registry = model_registry(settings).family(SEQUENTIAL)
    return ServedModelCache(ModelState(redis, SEQUENTIAL), registry, settings.api_model_check_s)


@dataclass
class ApiServices:
    settings: Settings
    redis: aioredis.Redis
    store: FeatureStore
    service: RecommendationService
    privacy: UserDataService
    impressions: ImpressionStore
    feed: MetricsFeed
    api_keys: ApiKeyStore
    limiter: RateLimiter
    publisher: Publisher
    telemetry: ApiMetrics
    metrics_out: MetricsPublisher
    _background: asyncio.Task[None] | None = None
    _torch: asyncio.Task[None] | None = None  # the sequential family's torch, when on
    #: `/v1/metrics/stream` connections open in this process, per API key id.
    streams_open: dict[str, int] = field(default_factory=dict)

    @classmethod
    async def open(
        cls, settings: Settings, master: MultiFernet, telemetry: ApiMetrics
    ) -> ApiServices:
        """Connect and build every service; the master keys are checked against Redis first,
        so a wrong key fails the start, not the first request."""
        kafka_url, redis_url = settings.require_infrastructure()
        redis = redis_async(redis_url)
        security = kafka_security(settings)
        publisher = Publisher(kafka_url, settings.topic_events, settings.topic_content, security)
        try:
            await check_master_keys(redis, master)
        except BaseException:
            publisher.close()
            await redis.aclose()
            raise
        store = FeatureStore(redis, settings)
        cipher = UserDataCipher(redis, master)
        cf_state = ModelState(redis, CF)
        reviews = ReviewStore(redis, cipher, store.pseudonym_of, settings.user_ttl_s)
        impressions = ImpressionStore(redis, settings.attribution_window_s)
        service = RecommendationService(
            store,
            cf_state,
            cf_registry(settings),
            ServingConfig.of(settings),
            _sequential(redis, settings),
        )
        vectors = CFVectors(redis, cf_state)
        privacy = UserDataService(
            redis,
            store,
            cipher,
            reviews,
            vectors,
            [impressions, service],
            tombstone_s=settings.erasure_tombstone_s,
        )
        services = cls(
            settings,
            redis,
            store,
            service,
            privacy,
            impressions,
            MetricsFeed(kafka_url, settings.topic_metrics, security),
            ApiKeyStore(redis, cache_s=settings.api_key_cache_s),
            RateLimiter(
                redis,
                settings.api_rate_per_s,
                settings.api_rate_burst,
                (settings.api_ingest_per_s, settings.api_ingest_burst),
            ),
            publisher,
            telemetry,
            _metrics_publisher(settings, publisher, telemetry),
        )
        services._background = asyncio.create_task(services._run_background())
        if settings.sequential_weight > 0:
            services._torch = asyncio.create_task(_torch_on_one_thread())
        return services

    async def aclose(self) -> None:
        """Stop the background loop, write the impressions and the last, partial metrics
        window, and close the clients."""
        if self._torch is not None:
            with contextlib.suppress(Exception):
                await self._torch  # an import cannot be cancelled
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
            with contextlib.suppress(Exception):
                await self.impressions.flush()
            if self.settings.metrics_publish:
                await self._sample_gauges()
                await self.metrics_out.flush()
        await self.feed.aclose()
        self.publisher.close()
        await self.redis.aclose()

    async def _sample_gauges(self) -> None:
        """The gauges this replica sets as a window closes: coverage and the served version."""
        try:
            _, catalogue = await self.store.stats.counts()
            self.telemetry.close_coverage(catalogue)
            self.telemetry.window.clear("streamrec_served_version")
            version = await self.service.served_version()
            if version is not None:
                self.telemetry.window.set("streamrec_served_version", 1, family=CF, version=version)
        except Exception as exc:
            log.warning("could not sample the API's gauges: %s", exc)

    async def _run_background(self) -> None:
        """Every 0.1 s the impressions served since; once per window this replica's metric
        records. The window rolls even when nothing is published: coverage counts the items
        served in one window, and would otherwise grow for as long as the process runs."""
        out = self.metrics_out
        while True:
            await asyncio.sleep(0.1)
            try:
                await self.impressions.flush()
            except Exception as exc:
                log.warning("could not write impressions (attribution misses them): %s", exc)
            if not out.window.due(now_ms()):
                continue
            with contextlib.suppress(Exception):  # kept as it was while Redis cannot be read
                await self.service.fallback.refresh()
            await self._sample_gauges()
            if self.settings.metrics_publish:
                await out.publish_due()
            else:
                out.window.close(now_ms())  # Prometheus reads the running totals


def _metrics_publisher(
    settings: Settings, publisher: Publisher, telemetry: ApiMetrics
) -> MetricsPublisher:
    async def send(records: list[tuple[str, bytes]]) -> None:
        await publisher.publish(settings.topic_metrics, records)

    source = f"/streamrec/api/{settings.instance_id}"
    if settings.api_processes > 1:  # the processes share the instance id: one source each
        source += f"/{os.getpid()}"
    key = metrics_key(settings.pseudonym_secret)
    return MetricsPublisher(telemetry.window, send, source, partial(signed, key=key))


def services_of(state: Any) -> ApiServices:
    """The services from a request's state (`request.state`) or an ASGI scope's (a dict)."""
    found: ApiServices = state["services"] if isinstance(state, dict) else state.services
    return found
