"""The metrics of one API process: requests and latency per route, the recommendation lists it
served and what share of the catalogue they covered. Counted in a `MetricsWindow`; published to
the metrics topic each window and exposed on `/v1/metrics` for Prometheus (with the feature
store's counters, read at scrape time). One window per app, so tests and replicas share nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from recommender.monitoring.metrics import MetricsWindow
from streams.metrics import WindowCollector


@dataclass
class ApiMetrics:
    window: MetricsWindow = field(default_factory=MetricsWindow)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _served_items: set[str] = field(default_factory=set)  # this window's, for coverage

    def __post_init__(self) -> None:
        r = self.registry
        r.register(WindowCollector(self.window))
        self.store = Gauge(
            "streamrec_store_counter",
            "Feature-store counters (the `stats` hash)",
            ["name"],
            registry=r,
        )

    def request(self, route: str, method: str, status: int, ms: float) -> None:
        self.window.add("streamrec_api_requests", route=route, method=method, status=str(status))
        self.window.observe("streamrec_api_latency", [ms], route=route)

    def served(self, model_version: str | None, bucket: str, items: Sequence[str]) -> None:
        """A recommendation list went out."""
        version = model_version or "none"
        self.window.add("streamrec_recs_served", model_version=version, bucket=bucket)
        self.window.add(
            "streamrec_recs_items_served", len(items), model_version=version, bucket=bucket
        )
        self._served_items.update(items)

    def close_coverage(self, catalogue_size: int) -> None:
        """Set this window's catalogue coverage and start counting the next."""
        share = len(self._served_items) / catalogue_size if catalogue_size else 0.0
        self.window.set("streamrec_catalogue_coverage", min(1.0, share))
        self._served_items.clear()

    def render(self, stats: dict[str, int]) -> bytes:
        for name, value in stats.items():
            if name != "clock":
                self.store.labels(name).set(value)
        return generate_latest(self.registry)
