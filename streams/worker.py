"""The Faust worker: app, topics, agents and timers, declared once in `create_app`; the parts they
call are wired in `streams.composition`.

State lives in Redis (the feature store), not in Faust tables: the embedded broker's end offsets
can be too low, which made table recovery lose records after a kill.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import faust
from prometheus_client import CollectorRegistry, start_http_server

from recommender.cf.lifecycle import lifecycle_for
from recommender.lifecycle.state import ModelState
from recommender.monitoring.monitor import preload_detector
from recommender.settings import Settings
from recommender.store.keys import CF
from streams.batch_intake import INBOX_ATTR, BatchInbox, run_batches
from streams.composition import WorkerParts
from streams.faust_transport import NoTablesManager, set_fetch_max_wait
from streams.handlers import AppliedBatch, RawRecord
from streams.kafka import faust_broker
from streams.metrics import MetricsPublisher, WindowCollector, now_ms
from streams.monitor_loop import MonitorLoop

log = logging.getLogger(__name__)


def _raw(messages: Sequence[Any]) -> list[RawRecord]:
    out = []
    for m in messages:
        ts = int(m.timestamp * 1000) if m.timestamp else None
        out.append(RawRecord(m.topic, m.partition, m.offset, m.key, m.value or b"", ts))
    return out


def _consumer_lag(app: faust.App) -> dict[tuple[str, int], int]:
    """Records not yet read per assigned partition: the high watermark from the last fetch
    less the next offset to read (Faust keeps the last offset read, privately)."""
    consumer: Any = app.consumer  # the base type declares no offsets
    lag = {}
    for tp in consumer.assignment():
        read = consumer._read_offset.get(tp)  # private: no public accessor
        committed = consumer._committed_offset.get(tp)
        highwater = consumer.highwater(tp)  # None until the first fetch answered
        if highwater is None:
            continue
        # Nothing read or committed yet: the worker starts from the earliest offset (0 unless
        # retention removed the head, when this overstates the lag until the first read).
        position = read + 1 if read is not None else committed if committed is not None else 0
        lag[(tp.topic, tp.partition)] = max(0, highwater - position)
    return lag


def create_app(settings: Settings) -> faust.App:
    """Build the worker app; nothing connects until the worker starts it."""
    kafka_url, _ = settings.require_infrastructure()
    settings.require_secrets()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = faust.App(
        settings.worker_id,
        broker=faust_broker(kafka_url),
        store="memory://",
        TableManager=NoTablesManager,
        autodiscover=False,
        web_enabled=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=settings.worker_session_timeout_s / 6,
        broker_commit_every=100,
        producer_acks=-1,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=False,
        # Faust makes this directory even with memory stores; by default in the working
        # directory, which a production image does not let it write to.
        datadir=str(settings.data_dir / "faust"),
    )
    set_fetch_max_wait(app, settings.consumer_fetch_max_wait_ms)
    # Events and content reach their agents a fetch at a time (streams.batch_intake).
    inbox = BatchInbox([settings.topic_events, settings.topic_content])
    setattr(app, INBOX_ATTR, inbox)

    def raw_topic(name: str) -> faust.TopicT:
        # Raw bytes in and out: decoding is ours, so a bad record is a dead letter, not a crash.
        return app.topic(
            name, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw"
        )

    events_topic = raw_topic(settings.topic_events)
    content_topic = raw_topic(settings.topic_content)
    dead_letter_topic = raw_topic(settings.topic_dead_letter)
    metrics_topic = raw_topic(settings.topic_metrics)

    async def send_dead_letter(key: bytes | None, value: bytes) -> None:
        await dead_letter_topic.send(key=key, value=value)

    parts = WorkerParts.open(settings, send_dead_letter)
    handler, trainer = parts.handler, parts.trainer

    async def close_parts(sender: Any, **kwargs: Any) -> None:
        if settings.metrics_publish:
            await sample_gauges()
            await publisher.flush()  # the last, partial window
        await parts.aclose()

    app.on_before_shutdown.connect(close_parts)  # type: ignore[arg-type]

    @app.task
    async def start_content_trainer() -> None:
        parts.start()

    # The agents subscribe their topics; their streams stay empty, as the consumer hands these
    # topics' records to the inbox, a list per fetch.
    @app.agent(events_topic)
    async def apply_events(stream: Any) -> None:
        async def apply(batch: list[Any]) -> AppliedBatch:
            return await handler.apply_events(_raw(batch))

        await run_batches(
            app, inbox, settings.topic_events, settings.batch_size, apply, handler.tell_listeners
        )

    @app.agent(content_topic)
    async def apply_content(stream: Any) -> None:
        async def apply(batch: list[Any]) -> None:
            await handler.handle_content(_raw(batch))

        await run_batches(app, inbox, settings.topic_content, settings.batch_size, apply)

    refits: set[asyncio.Task[None]] = set()

    async def refit_guarded() -> None:
        started = time.perf_counter()
        try:
            version = await trainer.maybe_refit()
        except Exception:
            log.exception("model refit failed; serving the previous version")
            outcome = "failed"
        else:
            if version is None:
                return  # not due
            outcome = "promoted" if trainer.version == version else "held"
        parts.metrics.observe("streamrec_refit", [time.perf_counter() - started], outcome=outcome)

    @app.timer(interval=0.5, on_leader=True)
    async def refit_when_due() -> None:
        # The check is the timer's; the refit runs as a task of its own, so a fit that takes
        # seconds neither delays the timer nor trips Faust's "timer is overlapping" warning.
        if not refits:
            task = asyncio.create_task(refit_guarded())
            refits.add(task)
            task.add_done_callback(refits.discard)

    @app.timer(interval=1.0)
    async def follow_served_models() -> None:
        try:
            await parts.sync_models()
        except Exception:
            log.exception("could not load a served model version")
        try:
            await trainer.updater.fold_in_new_items()
        except Exception:
            log.exception("could not fold in new items; they wait for the next refit")
        try:
            await parts.attributor.retry()
        except Exception:
            log.exception("could not credit the outcomes waiting for their list")

    async def send_metrics(records: list[tuple[str, bytes]]) -> None:
        for key, value in records:
            await metrics_topic.send(key=key.encode(), value=value)

    instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    publisher = MetricsPublisher(parts.metrics, send_metrics, f"/streamrec/worker/{instance}")

    @app.timer(interval=0.1)
    async def publish_metrics() -> None:
        # Checked often, published once per window: a record leaves within ~0.1 s of its
        # window closing. Every worker publishes its own (the envelope's source tells them apart).
        if not settings.metrics_publish or not publisher.window.due(now_ms()):
            return
        await sample_gauges()
        await publisher.publish_due()

    async def sample_gauges() -> None:
        try:
            metrics = parts.metrics
            metrics.clear("streamrec_consumer_lag")
            for (topic, partition), lag in _consumer_lag(app).items():
                metrics.set("streamrec_consumer_lag", lag, topic=topic, partition=str(partition))
            await parts.sample_gauges()
        except Exception:
            log.exception("could not sample the worker's gauges")

    if settings.monitor:
        # River's import (most of a second) overlaps the consumer group join, when the worker
        # waits anyway, rather than the first seconds of consuming (see `MonitorLoop.run`).
        threading.Thread(target=preload_detector, name="preload-river", daemon=True).start()

        async def send_decision(key: bytes, value: bytes) -> None:
            await metrics_topic.send(key=key, value=value)

        monitor = MonitorLoop(
            settings,
            trainer,
            ModelState(parts.redis, CF),
            lifecycle_for(CF, parts.redis, settings),
            parts.metrics,
            app.is_leader,
            send_decision,
            publisher.source,
        )

        @app.task
        async def run_monitor() -> None:
            while True:
                try:
                    await monitor.run()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("the monitor stopped; restarting it in 5 s")
                    await asyncio.sleep(5)

    if settings.worker_metrics_port is not None:
        registry = CollectorRegistry()
        registry.register(WindowCollector(parts.metrics))
        start_http_server(
            settings.worker_metrics_port, settings.worker_metrics_host, registry=registry
        )

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in this process until it is stopped."""
    app = create_app(settings)
    # What the worker holds for its life (modules, the app, the stores) leaves the collector's
    # sight, and the youngest generation is collected every 5,000 allocations, not 700: each
    # event allocates dozens of short-lived objects. `bench ingest` printed 4,662-4,708
    # events/s in three runs with the default thresholds, 5,647 with these (since
    # torch, River and pandas are no longer imported at start, the collector has fewer old
    # objects to pace it, and ran more often than before).
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 20)
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
