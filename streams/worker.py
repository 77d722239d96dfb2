"""The Faust worker: the app, its topics, agents, timers and tasks, declared in `create_app`.
Each only calls the worker's parts (`streams.composition.WorkerParts`), where what they do lives.

State lives in Redis (the feature store), not in Faust tables: the embedded broker's end offsets
can be too low, which made table recovery lose records after a kill.
"""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

import faust

from recommender.monitoring.monitor import preload_detector
from recommender.settings import Settings
from recommender.store.connections import prepare_store
from streams.batch_intake import INBOX_ATTR, BatchInbox
from streams.composition import Outlets, WorkerParts
from streams.faust_transport import (
    NoTablesManager,
    consumer_lag,
    logs_replaced,
    rewind_logs_past_end as rewind_past_end,
    set_fetch_max_wait,
)
from streams.kafka import faust_broker, faust_credentials

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """Declare the worker app; nothing connects, binds a port or starts a thread until the
    worker starts it."""
    kafka_url, _ = settings.require_infrastructure()
    settings.require_secrets()
    app = _faust_app(settings, kafka_url)
    # Events and content reach their agents a fetch at a time (streams.batch_intake).
    inbox = BatchInbox([settings.topic_events, settings.topic_content])
    setattr(app, INBOX_ATTR, inbox)

    def raw_topic(name: str) -> faust.TopicT:
        # Raw bytes in and out: decoding is ours, so a bad record is a dead letter, not a crash.
        return app.topic(
            name, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw"
        )

    events, content = raw_topic(settings.topic_events), raw_topic(settings.topic_content)
    dead_letters, metrics = raw_topic(settings.topic_dead_letter), raw_topic(settings.topic_metrics)
    parts = WorkerParts.open(settings, _outlets(app, dead_letters, metrics))
    app.on_before_shutdown.connect(parts.close)  # type: ignore[arg-type]

    @app.task
    async def start() -> None:
        parts.start()

    # The agents subscribe their topics; their streams stay empty, as the consumer hands these
    # topics' records to the inbox, a list per fetch.
    @app.agent(events)
    async def apply_events(stream: Any) -> None:
        await parts.apply_events(app, inbox)

    @app.agent(content)
    async def apply_content(stream: Any) -> None:
        await parts.apply_content(app, inbox)

    @app.timer(interval=0.5, on_leader=True)
    async def refit_when_due() -> None:
        parts.refit_when_due()

    @app.timer(interval=1.0)
    async def follow_served_models() -> None:
        await parts.follow_served_models()

    @app.timer(interval=2.0)
    async def rewind_logs_past_end() -> None:
        await rewind_past_end(app)

    @app.timer(interval=0.1)
    async def publish_metrics() -> None:
        await parts.publish_metrics()

    if settings.monitor:

        @app.task
        async def run_monitor() -> None:
            await parts.run_monitor()

    return app


def _outlets(app: faust.App, dead_letters: faust.TopicT, metrics: faust.TopicT) -> Outlets:
    return Outlets(
        dead_letters.send,
        metrics.send,
        lambda: consumer_lag(app),
        app.is_leader,
        lambda: logs_replaced(app),
    )


def _faust_app(settings: Settings, kafka_url: str) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = faust.App(
        settings.worker_id,
        broker=faust_broker(kafka_url),
        broker_credentials=faust_credentials(settings),
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
    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in this process until it is stopped."""
    # An evicting memory policy would lose features and count replays twice: refuse to start.
    renamed = prepare_store(settings.require_infrastructure()[1])
    if renamed:
        log.warning("renamed %d keys to the current key schema (hash tags)", renamed)
    app = create_app(settings)
    if settings.monitor:
        # River's import (most of a second) overlaps the consumer group join, when the worker
        # waits anyway; in a task, which Faust starts once partitions are assigned, it would take
        # the first second of consuming.
        threading.Thread(target=preload_detector, name="preload-river", daemon=True).start()
    # What the worker holds for its life (modules, the app, the stores) leaves the collector's
    # sight, and the youngest generation is collected every 5,000 allocations, not 700: each
    # event allocates dozens of short-lived objects (`bench ingest`: 4,662-4,708 events/s with
    # the default thresholds, 5,647 with these).
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 20)
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
