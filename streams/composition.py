"""The worker's parts, wired once, and what the worker's agents, timers and tasks do with them.

`WorkerParts.open` builds the Redis client, the stores, the listeners and enrichers on the event
path, the CF trainer and its fit process, the content models; `start` starts what runs beside the
worker (the content trainer's process, the Prometheus endpoint); `close` stops it all.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.process import BaseProcess
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, start_http_server

from recommender.cf.lifecycle import lifecycle_for
from recommender.cf.refits import Trainer
from recommender.content.features import repredict
from recommender.lifecycle.families import IMAGE, TEXT
from recommender.lifecycle.state import ModelState
from recommender.monitoring.attribution import Attributor
from recommender.monitoring.metrics import MetricsWindow
from recommender.settings import Settings
from recommender.store.features import FeatureStore
from recommender.store.keys import CF
from streams import content_process
from streams.batch_intake import BatchInbox, run_batches
from streams.handlers import AppliedBatch, RawRecord, RecordHandler
from streams.metrics import MetricsPublisher, WindowCollector, now_ms
from streams.monitor_loop import MonitorLoop
from streams.signing import metrics_key, signed
from streams.wiring import ContentParts, build_handler, build_trainer, open_store

log = logging.getLogger(__name__)

#: Sends one record (key, value) to a topic.
Send = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Outlets:
    """What the parts reach of the Faust app: its dead-letter and metrics topics, the consumer's
    lag per partition, and whether this worker leads."""

    dead_letter: Send  # called with key=, value=
    metric: Send
    consumer_lag: Callable[[], dict[tuple[str, int], int]]
    is_leader: Callable[[], bool]
    logs_replaced: Callable[[], int] = lambda: 0


@dataclass
class WorkerParts:
    settings: Settings
    outlets: Outlets
    redis: aioredis.Redis
    store: FeatureStore
    trainer: Trainer
    handler: RecordHandler
    fit_pool: ProcessPoolExecutor
    metrics: MetricsWindow
    attributor: Attributor
    publisher: MetricsPublisher
    content: ContentParts | None = None
    content_trainer: BaseProcess | None = None
    _placed_for: str | None = None  # the CF version whose unknown items were placed
    _refits: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def open(cls, settings: Settings, outlets: Outlets) -> WorkerParts:
        """Build every part; nothing connects until first used."""
        redis, store = open_store(settings)
        metrics = MetricsWindow(settings.metrics_window_ms)
        trainer, fit_pool = build_trainer(settings, redis, store)
        content = ContentParts.build(settings, redis, store, trainer)
        handler, attributor = build_handler(
            settings, redis, store, trainer, content, metrics, outlets.dead_letter
        )

        async def send_metrics(records: list[tuple[str, bytes]]) -> None:
            for key, value in records:
                await outlets.metric(key=key.encode(), value=value)

        instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        key = metrics_key(settings.pseudonym_secret)
        publisher = MetricsPublisher(
            metrics, send_metrics, f"/streamrec/worker/{instance}", partial(signed, key=key)
        )
        return cls(
            settings,
            outlets,
            redis,
            store,
            trainer,
            handler,
            fit_pool,
            metrics,
            attributor,
            publisher,
            content,
        )

    def start(self) -> None:
        """Start what runs beside the worker: the content trainer's process (when the content
        models are on) and the Prometheus endpoint (when a port is set)."""
        if self.settings.worker_metrics_port is not None:
            registry = CollectorRegistry()
            registry.register(WindowCollector(self.metrics))
            start_http_server(
                self.settings.worker_metrics_port,
                self.settings.worker_metrics_host,
                registry=registry,
            )
        if self.content is not None and self.content_trainer is None:
            proc = multiprocessing.get_context("spawn").Process(
                target=content_process.run,
                args=(self.settings.as_env(),),
                name="streamrec-content-trainer",
                daemon=True,
            )
            proc.start()
            self.content_trainer = proc

    async def apply_events(self, app: Any, inbox: BatchInbox) -> None:
        """The events agent: each fetch's records, applied as one batch, acked after."""

        async def apply(batch: list[Any]) -> AppliedBatch:
            return await self.handler.apply_events(_raw(batch))

        s = self.settings
        await run_batches(
            app, inbox, s.topic_events, s.batch_size, apply, self.handler.tell_listeners
        )

    async def apply_content(self, app: Any, inbox: BatchInbox) -> None:
        async def apply(batch: list[Any]) -> None:
            await self.handler.handle_content(_raw(batch))

        await run_batches(app, inbox, self.settings.topic_content, self.settings.batch_size, apply)

    def refit_when_due(self) -> None:
        """The check is the timer's; the refit runs as a task of its own, so a fit that takes
        seconds neither delays the timer nor trips Faust's "timer is overlapping" warning."""
        if not self._refits:
            task = asyncio.create_task(self._refit())
            self._refits.add(task)
            task.add_done_callback(self._refits.discard)

    async def _refit(self) -> None:
        started = time.perf_counter()
        try:
            version = await self.trainer.maybe_refit()
        except Exception:
            log.exception("model refit failed; serving the previous version")
            outcome = "failed"
        else:
            if version is None:
                return  # not due
            outcome = "promoted" if self.trainer.version == version else "held"
        self.metrics.observe("streamrec_refit", [time.perf_counter() - started], outcome=outcome)

    async def follow_served_models(self) -> None:
        """Each second: the served versions of every family, the items newer than the CF fit,
        and the outcomes waiting for their list; one failing does not stop the others."""
        steps = (
            (self._sync_models, "could not load a served model version"),
            (self.trainer.updater.fold_in_new_items, "could not fold in new items; later"),
            (self.attributor.retry, "could not credit the outcomes waiting for their list"),
        )
        for step, failed in steps:
            try:
                await step()
            except Exception:
                log.exception(failed)

    async def _sync_models(self) -> None:
        """A new text or image model predicts again the categories of the items that came
        without any; a new CF version places the items it does not know from their content."""
        served = await self.trainer.sync()
        if self.content is None:
            return
        if await self.content.models.sync() & {TEXT, IMAGE}:
            await repredict(self.store, self.content.predictor)
        if served is not None and served.version != self._placed_for:
            self._placed_for = served.version
            await self.content.placer.place_unknown()

    async def publish_metrics(self) -> None:
        """Checked often, published once per window: a record leaves within ~0.1 s of its
        window closing. Every worker publishes its own (the envelope's source tells them
        apart)."""
        if self.settings.metrics_publish and self.publisher.window.due(now_ms()):
            await self._sample_gauges()
            await self.publisher.publish_due()

    async def _sample_gauges(self) -> None:
        """The gauges only this process can read: consumer lag, the served version of every
        family and Redis's memory."""
        try:
            m = self.metrics
            m.clear("streamrec_consumer_lag")
            lags = self.outlets.consumer_lag()
            for (topic, partition), lag in lags.items():
                m.set("streamrec_consumer_lag", lag, topic=topic, partition=str(partition))
            instance = self.publisher.source.rsplit("/", 1)[-1]
            await self.store.stats.report_worker(instance, sum(lags.values()), now_ms())
            m.clear("streamrec_served_version")
            served = {CF: self.trainer.version}
            if self.content is not None:
                served |= {f: cache.version for f, cache in self.content.models.cache.items()}
            for family, version in served.items():
                if version is not None:
                    m.set("streamrec_served_version", 1, family=family, version=version)
            m.set("streamrec_logs_replaced", float(self.outlets.logs_replaced()))
            stall = self.handler.stall
            m.set("streamrec_redis_stalled_seconds", stall.stalled_s)
            m.set("streamrec_redis_stalls", float(stall.stalls))
            info = await self.redis.info("memory")
            m.set("streamrec_redis_memory", float(info.get("used_memory", 0)))
        except Exception:
            log.exception("could not sample the worker's gauges")

    async def run_monitor(self) -> None:
        """The monitor, restarted 5 s after it fails (`streams.monitor_loop`)."""

        async def send_decision(key: bytes, value: bytes) -> None:
            await self.outlets.metric(key=key, value=value)

        monitor = MonitorLoop(
            self.settings,
            self.trainer,
            ModelState(self.redis, CF),
            lifecycle_for(CF, self.redis, self.settings),
            self.metrics,
            self.outlets.is_leader,
            send_decision,
            self.publisher.source,
        )
        while True:
            try:
                await monitor.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the monitor stopped; restarting it in 5 s")
                await asyncio.sleep(5)

    async def close(self, sender: Any = None, **kwargs: Any) -> None:
        """Publish the last, partial metrics window; stop the fit process (a fit in flight is
        abandoned: the next refit redoes it) and the content trainer; close Redis."""
        if self.settings.metrics_publish:
            await self._sample_gauges()
            await self.publisher.flush()
        self.fit_pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.terminate()  # the fit process and the content trainer
        await self.redis.aclose()


def _raw(messages: list[Any]) -> list[RawRecord]:
    out = []
    for m in messages:
        ts = int(m.timestamp * 1000) if m.timestamp else None
        out.append(RawRecord(m.topic, m.partition, m.offset, m.key, m.value or b"", ts))
    return out
