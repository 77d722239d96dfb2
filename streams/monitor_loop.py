"""The worker's side of the monitor: it reads the metrics topic like any consumer, feeds
`recommender.monitoring.monitor.Monitor`, and on the leader carries out what it decides.

Every worker reads (aiokafka, no consumer group, from the newest records), so a worker that
becomes the leader already knows the recent windows; only the leader acts. A decision is applied
through the lifecycle (so `streamrec models list` shows it, `by monitor`), and published on the
metrics topic as a `DecisionV1` record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from recommender.cf.refits import Trainer
from recommender.errors import InvalidRecordError
from recommender.lifecycle.publishing import ModelLifecycle
from recommender.lifecycle.state import Decision, ModelState
from recommender.monitoring.metrics import MetricsWindow
from recommender.monitoring.monitor import FED_BY, Action, Monitor, MonitorConfig, preload_detector
from recommender.settings import Settings
from recommender.store.keys import CF
from streams.kafka import bootstrap_servers, kafka_security
from streams.records import DecisionDataV1, DecisionV1, MetricV1, decode_metrics_record
from streams.signing import is_signed, metrics_key, signed

log = logging.getLogger(__name__)

#: Sends one decision record (key, value) to the metrics topic.
DecisionSink = Callable[[bytes, bytes], Awaitable[None]]


def monitor_config(settings: Settings) -> MonitorConfig:
    return MonitorConfig(
        min_lists=settings.monitor_min_lists,
        z=settings.monitor_z,
        drift_drop=settings.monitor_drift_drop,
    )


class MonitorLoop:
    def __init__(
        self,
        settings: Settings,
        trainer: Trainer,
        state: ModelState,
        lifecycle: ModelLifecycle[Any],
        metrics: MetricsWindow,
        is_leader: Callable[[], bool],
        send: DecisionSink,
        source: str,
    ) -> None:
        self._settings = settings
        self._trainer = trainer
        self._state = state
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._key = metrics_key(settings.pseudonym_secret)
        self._is_leader = is_leader
        self._send = send
        self._source = source
        self.monitor = Monitor(monitor_config(settings))

    async def run(self) -> None:
        s = self._settings
        # Off the event loop (the worker started this import at its start; this waits for it).
        await asyncio.to_thread(preload_detector)
        consumer = AIOKafkaConsumer(
            s.topic_metrics,
            bootstrap_servers=bootstrap_servers(s.infra.kafka_url),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            client_id="streamrec-monitor",
            **kafka_security(s),
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=250, max_records=5000)
                for messages in batches.values():
                    for message in messages:
                        self._observe(message.value or b"")
                if self._is_leader():
                    try:
                        await self._decide()
                    except Exception:
                        log.exception("the monitor could not act; it tries again")
        finally:
            await consumer.stop()

    def _observe(self, raw: bytes) -> None:
        try:
            record = decode_metrics_record(raw)
        except InvalidRecordError:
            return  # another producer's record, or a newer schema: not ours to read
        if not is_signed(record, self._key):
            self._metrics.add("streamrec_metrics_unsigned")
            return  # not published by streamrec: forged, or another tool's; never acted on
        if isinstance(record, MetricV1) and record.data.name in FED_BY:
            d = record.data
            self.monitor.observe(d.name, d.labels, d.end_ms, d.value or 0.0)

    async def _decide(self) -> None:
        served = await self._state.current()
        challenger = (await self._state.challenger()).get("version")
        actions = self.monitor.decide(
            int(time.time() * 1000),
            served.version if served else None,
            challenger,
            bool(served and served.pinned),
        )
        for action in actions:
            await self._act(action)

    async def _act(self, action: Action) -> None:
        log.warning("monitor: %s %s: %s", action.kind, action.version, action.reason)
        now = int(time.time() * 1000)
        if action.kind == "refit":
            s = self._settings
            if s.drift_window_s > 0:
                # Users are folded in from their latest items for a while; the refit waits one
                # window, until those show where users went (refitted at once, it read the
                # users as they were, did worse than the fold-ins, and was rolled back).
                await self._trainer.hold_drift_window(s.drift_window_s, s.drift_hold_s)
                asyncio.get_running_loop().call_later(
                    s.drift_window_s, self._trainer.request_refit, action.reason
                )
            else:
                self._trainer.request_refit(action.reason)
            await self._state.log(Decision(now, action.version, "refit requested", "monitor",
                                           action.reason))  # fmt: skip
        else:
            await self._lifecycle.promote(
                action.version,
                pinned=False,
                by="monitor",
                rollback=action.kind == "rollback",
                reason=action.reason,
            )
        self._metrics.add("streamrec_monitor_decisions", family=CF, action=action.kind)
        record = DecisionV1(
            source=self._source,
            data=DecisionDataV1(
                family=CF, action=action.kind, version=action.version, reason=action.reason,
                at_ms=now,
            ),
        )  # fmt: skip
        await self._send(record.partition_key.encode(), signed(record, self._key))
