"""Getting a process's `MetricsWindow` out: one record per metric and label set per window on the
`metrics` topic, and the running totals on Prometheus.

The worker and the API each own a window and call `MetricsPublisher.publish_due` once a second;
publishing never raises (a metrics outage must not stop ingestion or serving), it logs and drops
that window's records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from recommender.monitoring.metrics import CATALOGUE, MetricPoint, MetricsWindow
from streams.records import MetricV1, encode, metric_record

log = logging.getLogger(__name__)

#: Sends records (key, value) to the metrics topic.
MetricSink = Callable[[list[tuple[str, bytes]]], Awaitable[None]]


def now_ms() -> int:
    return int(time.time() * 1000)


class MetricsPublisher:
    """Closes ``window`` when it is due and sends its points as records from ``source``."""

    def __init__(
        self,
        window: MetricsWindow,
        sink: MetricSink,
        source: str,
        sign: Callable[[MetricV1], bytes] = encode,
    ) -> None:
        """``sign``: a record as its bytes (`streams.signing.signed`, in streamrec's processes)."""
        self.window = window
        self._sink = sink
        self._sign = sign
        self.source = source
        self.published = 0

    async def publish_due(self, at_ms: int | None = None) -> int:
        """Publish the window if it ended; return how many records went out."""
        at = now_ms() if at_ms is None else at_ms
        if not self.window.due(at):
            return 0
        return await self._publish(at)

    async def flush(self) -> int:
        """Publish the open window as if it had ended (the process is stopping)."""
        window = self.window
        return await self._publish(max(now_ms(), window.start_ms + window.window_ms))

    async def _publish(self, at: int) -> int:
        records = [
            (point.name, self._sign(metric_record(point, self.source)))
            for point in self.window.close(at)
        ]
        try:
            await self._sink(records)
        except Exception as exc:
            log.warning("could not publish metrics (%s); %d records dropped", exc, len(records))
            return 0
        self.published += len(records)
        return len(records)


class WindowCollector(Collector):
    """A Prometheus collector over a window's running totals: sums as counters, gauges as they
    stand, histograms with cumulative buckets (histogram sums in the metric's own unit)."""

    def __init__(self, window: MetricsWindow) -> None:
        self._window = window

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[MetricPoint]] = {}
        for point in self._window.totals():
            by_name.setdefault(point.name, []).append(point)
        for name, points in by_name.items():
            spec = CATALOGUE[name]
            family: Metric
            if spec.kind == "sum":
                family = CounterMetricFamily(name, spec.meaning, labels=spec.labels)
                for p in points:
                    family.add_metric([p.labels[k] for k in spec.labels], p.value or 0.0)
            elif spec.kind == "gauge":
                family = GaugeMetricFamily(name, spec.meaning, labels=spec.labels)
                for p in points:
                    family.add_metric([p.labels[k] for k in spec.labels], p.value or 0.0)
            else:
                family = HistogramMetricFamily(
                    f"{name}_{spec.unit}", spec.meaning, labels=spec.labels
                )
                for p in points:
                    running, buckets = 0, []
                    for bound, n in zip([*p.bounds, float("inf")], p.counts, strict=True):
                        running += n
                        buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
                    family.add_metric([p.labels[k] for k in spec.labels], buckets, p.total)
            yield family
