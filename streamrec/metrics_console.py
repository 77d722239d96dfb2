"""`streamrec metrics`: the metrics topic as a live terminal console, or as JSON lines.

A consumer like any other: kafka-python, no consumer group (every console sees every record),
from the newest records unless asked for the retained ones. `ConsoleView` folds records into
what the screen shows and knows nothing of Kafka or the terminal.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from recommender.errors import InvalidRecordError
from recommender.monitoring.metrics import quantile
from recommender.settings import Settings
from streams.records import DecisionV1, MetricV1, decode_metrics_record

if TYPE_CHECKING:
    from rich.console import Group

K = TypeVar("K")

#: Sums are shown per second over this many of the newest windows.
RATE_WINDOWS = 5
#: Monitor decisions the console lists.
MAX_DECISIONS = 5


def follow(
    settings: Settings,
    from_beginning: bool = False,
    seconds: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[MetricV1 | DecisionV1]:
    """Metric and decision records as they arrive (skipping other types), for ``seconds``, until
    ``stop`` is set, or until the caller stops iterating."""
    from kafka import KafkaConsumer

    from streams.kafka import bootstrap_servers, check_kafka, kafka_security

    kafka_url, _ = settings.require_infrastructure()
    check_kafka(kafka_url)
    consumer = KafkaConsumer(
        settings.topic_metrics,
        bootstrap_servers=bootstrap_servers(kafka_url),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        client_id="streamrec-metrics",
        **kafka_security(settings),
    )
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while (deadline is None or time.monotonic() < deadline) and not (stop and stop.is_set()):
            batches = consumer.poll(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    try:
                        yield decode_metrics_record(message.value or b"")
                    except InvalidRecordError:
                        continue  # another type, or a newer schema
    finally:
        consumer.close()


@dataclass
class ConsoleView:
    """The newest windows of every metric, by source and labels, and what they add up to."""

    latest: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[MetricV1]] = field(
        default_factory=dict
    )
    newest_end_ms: int = 0
    newest_seen_at: float = 0.0
    decisions: list[DecisionV1] = field(default_factory=list)  # the newest, oldest first

    def add(self, record: MetricV1 | DecisionV1) -> None:
        if isinstance(record, DecisionV1):
            self.decisions = [*self.decisions[-(MAX_DECISIONS - 1) :], record]
            return
        key = (record.data.name, record.source, tuple(sorted(record.data.labels.items())))
        windows = self.latest.setdefault(key, [])
        windows.append(record)
        del windows[:-RATE_WINDOWS]
        if record.data.end_ms > self.newest_end_ms:
            self.newest_end_ms = record.data.end_ms
            self.newest_seen_at = time.time()

    def _records(self, name: str) -> Iterator[tuple[dict[str, str], list[MetricV1]]]:
        for (n, _, labels), windows in self.latest.items():
            if n == name:
                yield dict(labels), windows

    def _fresh(self, windows: list[MetricV1]) -> list[MetricV1]:
        """The windows that ended in the last RATE_WINDOWS seconds of the stream."""
        since = self.newest_end_ms - RATE_WINDOWS * 1000
        return [w for w in windows if w.data.end_ms > since]

    def _per_second(self, name: str, key: Callable[[dict[str, str]], K]) -> dict[K, float]:
        out: dict[K, float] = {}
        for labels, windows in self._records(name):
            total = sum(w.data.value or 0.0 for w in self._fresh(windows))
            out[key(labels)] = out.get(key(labels), 0.0) + total / RATE_WINDOWS
        return out

    def rate(self, name: str, by: str | None = None) -> dict[str, float]:
        """A sum per second over the newest windows, in total or by one label."""
        return self._per_second(name, lambda labels: labels.get(by, "") if by else "")

    def per_version(self, name: str) -> dict[tuple[str, str], float]:
        """A sum per second by (model version, bucket)."""
        return self._per_second(
            name, lambda labels: (labels.get("model_version", ""), labels.get("bucket", ""))
        )

    def gauge(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(labels, w[-1].data.value or 0.0) for labels, w in self._records(name) if w]

    def quantiles(self, name: str, *qs: float, by: str | None = None) -> dict[str, list[float]]:
        """Quantiles of a histogram over its newest windows, merged across sources."""
        merged: dict[str, tuple[list[float], list[int]]] = {}
        for labels, windows in self._records(name):
            for w in self._fresh(windows):
                bounds, counts = w.data.bounds or [], w.data.counts or []
                key = labels.get(by, "") if by else ""
                _, acc = merged.setdefault(key, (bounds, [0] * len(counts)))
                for i, c in enumerate(counts):
                    acc[i] += c
        return {k: [quantile(b, c, q) for q in qs] for k, (b, c) in merged.items() if sum(c)}

    def staleness_s(self) -> float | None:
        """Seconds from the newest window's end to when it was seen here."""
        if not self.newest_end_ms:
            return None
        return max(0.0, self.newest_seen_at - self.newest_end_ms / 1000)


def _ms(values: list[float]) -> str:
    return " / ".join("-" if v != v else f"{v:,.0f}" for v in values)


def render(view: ConsoleView) -> Group:
    """The console's screen: a rich renderable."""
    from rich.console import Group
    from rich.table import Table

    ingest = Table(title="ingest (per second)", expand=True)
    for col in ("type", "in", "applied", "duplicate"):
        ingest.add_column(col, justify="right" if col != "type" else "left")
    ins, applied = (
        view.rate("streamrec_events_in", "type"),
        view.rate("streamrec_events_applied", "type"),
    )
    dup = view.rate("streamrec_events_duplicate", "type")
    for kind in sorted(set(ins) | set(applied)):
        ingest.add_row(
            kind,
            f"{ins.get(kind, 0):,.0f}",
            f"{applied.get(kind, 0):,.0f}",
            f"{dup.get(kind, 0):,.0f}",
        )
    letters = sum(view.rate("streamrec_dead_letters").values())
    lag = sum(v for _, v in view.gauge("streamrec_consumer_lag"))
    e2f = view.quantiles("streamrec_event_to_feature", 0.5, 0.99).get("", [])
    e2r = view.quantiles("streamrec_event_to_recs", 0.5, 0.99).get("", [])
    health = Table(title="freshness and health", expand=True, show_header=False)
    health.add_column("what")
    health.add_column("value", justify="right")
    health.add_row("event → feature p50 / p99 ms", _ms(e2f))
    health.add_row("event → recommendations p50 / p99 ms", _ms(e2r))
    health.add_row("consumer lag (records)", f"{lag:,.0f}")
    health.add_row("dead letters per second", f"{letters:,.1f}")
    memory = sum(v for _, v in view.gauge("streamrec_redis_memory"))
    health.add_row("Redis memory MiB", f"{memory / 2**20:,.1f}")
    for labels, _ in sorted(view.gauge("streamrec_served_version"), key=lambda x: str(x[0])):
        health.add_row(f"served {labels.get('family')}", labels.get("version", ""))
    coverage = [v for _, v in view.gauge("streamrec_catalogue_coverage")]
    if coverage:
        health.add_row("catalogue coverage (per second)", f"{max(coverage):.1%}")
    stale = view.staleness_s()
    health.add_row("newest window seen after", "-" if stale is None else f"{stale:.2f} s")

    api = Table(title="API (per second)", expand=True)
    for col in ("route", "requests", "p50 / p99 ms"):
        api.add_column(col, justify="left" if col == "route" else "right")
    latency = view.quantiles("streamrec_api_latency", 0.5, 0.99, by="route")
    for route, rps in sorted(view.rate("streamrec_api_requests", "route").items()):
        api.add_row(route, f"{rps:,.1f}", _ms(latency.get(route, [])))
    online = Table(title="online quality (lists in the newest windows)", expand=True)
    for col in ("version", "bucket", "lists/s", "hit rate", "clicks/s"):
        online.add_column(col, justify="left" if col in {"version", "bucket"} else "right")
    lists = view.per_version("streamrec_recs_served")
    hits = view.per_version("streamrec_recs_hits")
    clicks = view.per_version("streamrec_recs_outcomes")
    for key in sorted(lists):
        rate = hits.get(key, 0.0) / lists[key] if lists[key] else 0.0
        online.add_row(*key, f"{lists[key]:,.1f}", f"{rate:.1%}", f"{clicks.get(key, 0):,.1f}")
    decided = Table(title="monitor decisions", expand=True)
    for col in ("at", "action", "version", "why"):
        decided.add_column(col)
    for d in reversed(view.decisions):
        at = time.strftime("%H:%M:%S", time.localtime(d.data.at_ms / 1000))
        decided.add_row(at, d.data.action, d.data.version, d.data.reason)
    return Group(ingest, health, api, online, decided)


def run_metrics(settings: Settings, args: argparse.Namespace) -> int:
    records = follow(settings, args.from_beginning, args.seconds)
    if args.json:
        for record in records:
            sys.stdout.write(record.model_dump_json() + "\n")
            sys.stdout.flush()
        return 0
    from rich.live import Live

    view = ConsoleView()
    with Live(render(view), refresh_per_second=4, screen=False) as live:
        last = 0.0
        for record in records:
            view.add(record)
            if time.monotonic() - last > 0.25:
                live.update(render(view))
                last = time.monotonic()
        live.update(render(view))
    return 0
