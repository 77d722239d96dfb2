"""The Faust worker: app, topics, agents and timers, declared once in `create_app`; the parts they
call are wired in `streams.composition`.

State lives in Redis (the feature store), not in Faust tables: the embedded broker's end offsets
can be too low, which made table recovery lose records after a kill.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust

from recommender.settings import Settings
from streams.composition import WorkerParts
from streams.faust_transport import set_fetch_max_wait
from streams.handlers import RawRecord
from streams.kafka import faust_broker

log = logging.getLogger(__name__)


def _raw(events: Sequence[Any]) -> list[RawRecord]:
    out = []
    for e in events:
        m = e.message
        out.append(RawRecord(m.topic, m.partition, m.offset, m.key, m.value or b""))
    return out


def create_app(settings: Settings) -> faust.App:
    """Build the worker app; nothing connects until the worker starts it."""
    kafka_url, _ = settings.require_infrastructure()
    settings.require_secrets()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = faust.App(
        settings.worker_id,
        broker=faust_broker(kafka_url),
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
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

    def raw_topic(name: str) -> faust.TopicT:
        # Raw bytes in and out: decoding is ours, so a bad record is a dead letter, not a crash.
        return app.topic(
            name, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw"
        )

    events_topic = raw_topic(settings.topic_events)
    content_topic = raw_topic(settings.topic_content)
    dead_letter_topic = raw_topic(settings.topic_dead_letter)

    async def send_dead_letter(key: bytes | None, value: bytes) -> None:
        await dead_letter_topic.send(key=key, value=value)

    parts = WorkerParts.open(settings, send_dead_letter)
    handler, trainer = parts.handler, parts.trainer

    async def close_parts(sender: Any, **kwargs: Any) -> None:
        await parts.aclose()

    app.on_before_shutdown.connect(close_parts)  # type: ignore[arg-type]

    @app.task
    async def start_content_trainer() -> None:
        parts.start()

    @app.agent(events_topic)
    async def apply_events(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_window_s):
            await handler.handle_events(_raw(batch))

    @app.agent(content_topic)
    async def apply_content(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_window_s):
            await handler.handle_content(_raw(batch))

    refits: set[asyncio.Task[None]] = set()

    async def refit_guarded() -> None:
        try:
            await trainer.maybe_refit()
        except Exception:
            log.exception("model refit failed; serving the previous version")

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

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in this process until it is stopped."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
