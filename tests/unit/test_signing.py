"""Signed metric records (issue 24, finding 11): the monitor acts only on what streamrec published.
On main it acted on any parseable record on the `metrics` topic: forged records rolled back a
healthy version."""

from __future__ import annotations

from typing import Any

from recommender.monitoring.metrics import MetricPoint, MetricsWindow
from recommender.monitoring.monitor import HITS, LISTS
from streams.monitor_loop import MonitorLoop
from streams.records import encode, metric_record
from streams.signing import is_signed, metrics_key, signed


def point(name: str, value: float, end_ms: int = 10_000) -> MetricPoint:
    labels = {"model_version": "v1", "bucket": "control"}
    return MetricPoint(name, "sum", "{list}", labels, end_ms - 1000, end_ms, value)


def loop(settings: Any) -> tuple[MonitorLoop, MetricsWindow]:
    window = MetricsWindow()
    return MonitorLoop(settings, None, None, None, window, lambda: True, None, "/t"), window  # type: ignore[arg-type]


def test_the_monitor_ignores_and_counts_unsigned_or_forged_records(unit_settings: Any) -> None:
    monitor, window = loop(unit_settings)
    key = metrics_key(unit_settings.pseudonym_secret)
    forged = [
        encode(metric_record(point(LISTS, 1000.0), "/streamrec/api/x")),  # unsigned
        signed(metric_record(point(HITS, 0.0), "/streamrec/api/x"), b"another key"),
    ]
    for raw in forged:
        monitor._observe(raw)
    assert monitor.monitor.online() == {}
    [ignored] = [p for p in window.totals() if p.name == "streamrec_metrics_unsigned"]
    assert ignored.value == 2

    monitor._observe(signed(metric_record(point(LISTS, 300.0), "/streamrec/api/x"), key))
    assert monitor.monitor._open  # taken in: it waits to settle, as every window does


def test_a_signature_survives_the_trip_and_breaks_with_any_change(unit_settings: Any) -> None:
    from streams.records import decode_metrics_record

    key = metrics_key(unit_settings.pseudonym_secret)
    raw = signed(metric_record(point(LISTS, 12.5), "/streamrec/worker/w"), key)
    assert is_signed(decode_metrics_record(raw), key)
    tampered = raw.replace(b"12.5", b"99.5")
    assert not is_signed(decode_metrics_record(tampered), key)
