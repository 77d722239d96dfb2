"""Prometheus metrics of one API process: request counts and latency, and the feature store's
counters read at scrape time. One registry per app, so tests and replicas never share state."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "streamrec_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "streamrec_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store = Gauge(
            "streamrec_store_counter",
            "Feature-store counters (the `stats` hash)",
            ["name"],
            registry=r,
        )
        self.model = Gauge(
            "streamrec_model_info", "The served model version", ["version"], registry=r
        )

    def render(self, stats: dict[str, int], model_version: str | None) -> bytes:
        for name, value in stats.items():
            if name != "clock":
                self.store.labels(name).set(value)
        self.model.clear()
        if model_version:
            self.model.labels(model_version).set(1)
        return generate_latest(self.registry)
