"""The metrics streamrec publishes, and the 1 s windows they are counted in.

`CATALOGUE` is the one list of metric names: what `MetricsWindow` accepts, what the metrics topic
carries, what Prometheus exposes and what the "Metrics" table of docs/monitoring.md documents (a
test holds the table to this list). Shapes follow the OpenTelemetry metric model: a *sum* is
what was counted in the window (Prometheus sees the running total), a *gauge* is the last value
set, a *histogram* counts observations per bucket (upper bounds, the last bucket open).

A window belongs to one process: the worker and every API replica each publish their own records,
told apart by the envelope's `source`. Nothing here does I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Kind = Literal["sum", "gauge", "histogram"]
Labels = tuple[tuple[str, str], ...]

#: Upper bounds, in milliseconds, of the latency histograms.
LATENCY_MS_BUCKETS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1e3, 2.5e3, 1e4)
#: Upper bounds, in seconds, of the refit histogram.
REFIT_S_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    unit: str
    labels: tuple[str, ...]
    meaning: str
    buckets: tuple[float, ...] = ()


def _specs(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {s.name: s for s in specs}


CATALOGUE: dict[str, MetricSpec] = _specs(
    # The worker
    MetricSpec(
        "streamrec_events_in", "sum", "{event}", ("type",),
        "Events read from the `events` topic (`invalid`: could not be decoded)",
    ),
    MetricSpec(
        "streamrec_events_applied", "sum", "{event}", ("type",),
        "Events applied to the feature store for the first time",
    ),
    MetricSpec(
        "streamrec_events_duplicate", "sum", "{event}", ("type",),
        "Events whose `event_id` was applied before (redelivered or republished)",
    ),
    MetricSpec(
        "streamrec_dead_letters", "sum", "{record}", ("topic",),
        "Records sent to the dead-letter topic, by the topic they came from",
    ),
    MetricSpec(
        "streamrec_events_erased", "sum", "{event}", (),
        "Reviews of erased users from before their erasure (redelivered, retried), dropped "
        "before their text is kept (other such events: `stats.erased_suppressed`)",
    ),
    MetricSpec(
        "streamrec_content_in", "sum", "{item}", (),
        "Content items applied (new or updated)",
    ),
    MetricSpec(
        "streamrec_consumer_lag", "gauge", "{record}", ("topic", "partition"),
        "Records on the partition the worker has not read yet",
    ),
    MetricSpec(
        "streamrec_logs_replaced", "gauge", "{partition}", (),
        "Partition logs the worker found lost or replaced under it (a broker restarted on "
        "memory storage, an unclean election, a restore) and read again from their start",
    ),
    MetricSpec(
        "streamrec_event_to_feature", "histogram", "ms", (),
        "From the event's append to Kafka to its features being visible in Redis",
        LATENCY_MS_BUCKETS,
    ),
    MetricSpec(
        "streamrec_event_to_recs", "histogram", "ms", (),
        "From the event's append to Kafka to the user's recommendations reflecting it",
        LATENCY_MS_BUCKETS,
    ),
    MetricSpec(
        "streamrec_foldin", "histogram", "ms", (),
        "Per-batch fold-in of touched users into the served CF model",
        LATENCY_MS_BUCKETS,
    ),
    MetricSpec(
        "streamrec_refit", "histogram", "s", ("outcome",),
        "Full CF refits, by outcome (promoted, held, failed)",
        REFIT_S_BUCKETS,
    ),
    MetricSpec(
        "streamrec_served_version", "gauge", "1", ("family", "version"),
        "1 for the version each model family serves",
    ),
    MetricSpec(
        "streamrec_redis_memory", "gauge", "By", (),
        "Memory Redis uses (`used_memory`)",
    ),
    MetricSpec(
        "streamrec_redis_stalled_seconds", "gauge", "s", (),
        "How long the worker has waited on Redis refusing writes (away, OOM, MISCONF, "
        "READONLY); 0 when it is writing",
    ),
    MetricSpec(
        "streamrec_redis_stalls", "gauge", "{stall}", (),
        "Times the worker stalled on Redis refusing writes since it started",
    ),
    MetricSpec(
        "streamrec_recs_outcomes", "sum", "{event}", ("kind", "model_version", "bucket"),
        "Clicks (`click`) and carts or purchases (`conversion`) attributed to a served list",
    ),
    MetricSpec(
        "streamrec_recs_hits", "sum", "{list}", ("model_version", "bucket"),
        "Served lists with an outcome on one of their first STREAMREC_ATTRIBUTION_HIT_K items "
        "(counted once, at the first)",
    ),
    MetricSpec(
        "streamrec_attribution_unmatched", "sum", "{event}", ("reason",),
        "Outcomes quoting a list that cannot take them (`unknown`, `not_in_list`)",
    ),
    MetricSpec(
        "streamrec_metrics_unsigned", "sum", "{record}", (),
        "Records on the metrics topic the monitor ignored: unsigned, or signed with another key",
    ),
    MetricSpec(
        "streamrec_monitor_decisions", "sum", "{decision}", ("family", "action"),
        "What the monitor decided (`refit`, `promote`, `rollback`); each is also a "
        "`DecisionV1` record",
    ),
    # Every API replica
    MetricSpec(
        "streamrec_api_requests", "sum", "{request}", ("method", "route", "status"),
        "HTTP requests answered, by route template and status",
    ),
    MetricSpec(
        "streamrec_api_latency", "histogram", "ms", ("route",),
        "HTTP request latency, by route template",
        LATENCY_MS_BUCKETS,
    ),
    MetricSpec(
        "streamrec_recs_served", "sum", "{list}", ("model_version", "bucket"),
        "Recommendation lists served (impressions), by the CF version that scored them and the "
        "A/B bucket",
    ),
    MetricSpec(
        "streamrec_recs_items_served", "sum", "{item}", ("model_version", "bucket"),
        "Items shown in recommendation lists",
    ),
    MetricSpec(
        "streamrec_catalogue_coverage", "gauge", "1", (),
        "Share of the catalogue that appeared in any list served in the window",
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One metric's figure for one label set over one window."""

    name: str
    kind: Kind
    unit: str
    labels: dict[str, str]
    start_ms: int
    end_ms: int
    value: float | None = None
    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    total: float = 0.0  # a histogram's sum of observations
    count: int = 0  # a histogram's number of observations


@dataclass(slots=True)
class _Histogram:
    counts: list[int]
    total: float = 0.0
    count: int = 0

    def add(self, bounds: tuple[float, ...], values: Iterable[float]) -> None:
        for v in values:
            self.counts[bisect_left(bounds, v)] += 1
            self.total += v
            self.count += 1

    def merge(self, other: _Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.count += other.count


@lru_cache(maxsize=4096)
def _checked_key(name: str, kind: Kind, labels: tuple[tuple[str, str], ...]) -> tuple[str, Labels]:
    """A metric's key (its name and labels in the catalogue's order), once checked."""
    spec = CATALOGUE.get(name)
    given = dict(labels)
    if spec is None:
        raise KeyError(f"{name} is not in the metrics catalogue")
    if spec.kind != kind or set(given) != set(spec.labels):
        raise ValueError(f"{name} is a {spec.kind} with labels {spec.labels}")
    return name, tuple((k, str(given[k])) for k in spec.labels)


@dataclass
class MetricsWindow:
    """Counts one process's metrics in windows of ``window_ms``, aligned to the clock.

    `close(now_ms)` hands over the points of the window that ended and starts the next; the
    running totals (what Prometheus reads) keep growing."""

    window_ms: int = 1000
    start_ms: int = 0
    _sums: dict[tuple[str, Labels], float] = field(default_factory=dict)
    _gauges: dict[tuple[str, Labels], float] = field(default_factory=dict)
    _hists: dict[tuple[str, Labels], _Histogram] = field(default_factory=dict)
    _total_sums: dict[tuple[str, Labels], float] = field(default_factory=dict)
    _total_hists: dict[tuple[str, Labels], _Histogram] = field(default_factory=dict)

    @staticmethod
    def _key(name: str, kind: Kind, labels: dict[str, str]) -> tuple[str, Labels]:
        # The API counts four metrics per request: checking each against the catalogue every
        # time was 3-4% of its samples under `bench serve` (ad hoc), for a few label sets.
        return _checked_key(name, kind, tuple(labels.items()))

    def add(self, name: str, amount: float = 1, **labels: str) -> None:
        """Count ``amount`` more of a sum."""
        key = self._key(name, "sum", labels)
        self._sums[key] = self._sums.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge; it keeps its value in every later window until set again or cleared."""
        self._gauges[self._key(name, "gauge", labels)] = value

    def clear(self, name: str) -> None:
        """Forget every label set of a gauge (a partition no longer assigned, a version no
        longer served)."""
        for key in [k for k in self._gauges if k[0] == name]:
            del self._gauges[key]

    def observe(self, name: str, values: Iterable[float], **labels: str) -> None:
        """Add observations to a histogram."""
        key = self._key(name, "histogram", labels)
        hist = self._hists.get(key)
        if hist is None:
            hist = self._hists[key] = _Histogram([0] * (len(CATALOGUE[name].buckets) + 1))
        hist.add(CATALOGUE[name].buckets, values)

    def due(self, now_ms: int) -> bool:
        """Whether the current window has ended."""
        return now_ms >= self.start_ms + self.window_ms

    def close(self, now_ms: int) -> list[MetricPoint]:
        """The points of the window that ended by ``now_ms``; the next window starts at the last
        window boundary. Sums and histograms that saw nothing are left out; gauges always come."""
        end = now_ms - now_ms % self.window_ms
        start = self.start_ms if self.start_ms else end - self.window_ms
        points: list[MetricPoint] = []
        for (name, labels), value in self._sums.items():
            spec = CATALOGUE[name]
            points.append(MetricPoint(name, "sum", spec.unit, dict(labels), start, end, value))
            total_key = (name, labels)
            self._total_sums[total_key] = self._total_sums.get(total_key, 0) + value
        for (name, labels), value in self._gauges.items():
            spec = CATALOGUE[name]
            points.append(MetricPoint(name, "gauge", spec.unit, dict(labels), start, end, value))
        for (name, labels), hist in self._hists.items():
            spec = CATALOGUE[name]
            points.append(
                MetricPoint(
                    name, "histogram", spec.unit, dict(labels), start, end,
                    bounds=spec.buckets, counts=tuple(hist.counts),
                    total=hist.total, count=hist.count,
                )
            )  # fmt: skip
            kept = self._total_hists.setdefault((name, labels), _Histogram([0] * len(hist.counts)))
            kept.merge(hist)
        self._sums.clear()
        self._hists.clear()
        self.start_ms = end
        return points

    def totals(self) -> list[MetricPoint]:
        """Running totals since the process started, windows still open included: what a
        Prometheus scrape reads (sums as counters, gauges as they stand)."""
        sums = dict(self._total_sums)
        for key, value in self._sums.items():
            sums[key] = sums.get(key, 0) + value
        hists: dict[tuple[str, Labels], _Histogram] = {}
        for source in (self._total_hists, self._hists):
            for key, hist in source.items():
                merged = hists.setdefault(key, _Histogram([0] * len(hist.counts)))
                merged.merge(hist)
        points = [
            MetricPoint(n, "sum", CATALOGUE[n].unit, dict(lb), 0, self.start_ms, v)
            for (n, lb), v in sums.items()
        ]
        points += [
            MetricPoint(n, "gauge", CATALOGUE[n].unit, dict(lb), 0, self.start_ms, v)
            for (n, lb), v in self._gauges.items()
        ]
        points += [
            MetricPoint(
                n, "histogram", CATALOGUE[n].unit, dict(lb), 0, self.start_ms,
                bounds=CATALOGUE[n].buckets, counts=tuple(h.counts), total=h.total, count=h.count,
            )
            for (n, lb), h in hists.items()
        ]  # fmt: skip
        return points


def quantile(bounds: list[float], counts: list[int], q: float) -> float:
    """The ``q`` quantile of a histogram, interpolated linearly inside its bucket (as
    Prometheus's `histogram_quantile`); the open last bucket answers its lower bound. NaN when
    empty."""
    total = sum(counts)
    if total == 0:
        return float("nan")
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - seen) / n
        seen += n
    return bounds[-1]
