"""The metrics window, the metrics-topic contract and the table of metrics in docs/monitoring.md."""

import asyncio
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from recommender.monitoring.metrics import (
    CATALOGUE,
    LATENCY_MS_BUCKETS,
    MetricPoint,
    MetricsWindow,
    quantile,
)
from streams.metrics import MetricsPublisher, WindowCollector
from streams.records import METRIC_TYPE, decode_metric, encode, metric_record

ROOT = Path(__file__).resolve().parents[2]


def _by_name(
    points: list[MetricPoint],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], MetricPoint]:
    return {(p.name, tuple(sorted(p.labels.items()))): p for p in points}


def test_a_window_counts_sums_keeps_gauges_and_buckets_histograms():
    w = MetricsWindow(1000, start_ms=5000)
    w.add("streamrec_events_in", 3, type="click")
    w.add("streamrec_events_in", 2, type="click")
    w.add("streamrec_events_in", type="view")
    w.set("streamrec_redis_memory", 1024)
    w.observe("streamrec_event_to_feature", [0.5, 1.0, 3.0, 20_000.0])
    assert not w.due(5999) and w.due(6000)

    points = _by_name(w.close(6400))
    assert points[("streamrec_events_in", (("type", "click"),))].value == 5
    assert points[("streamrec_events_in", (("type", "view"),))].value == 1
    hist = points[("streamrec_event_to_feature", ())]
    assert (hist.start_ms, hist.end_ms) == (5000, 6000)  # aligned to the window, not to `now`
    assert hist.count == 4 and hist.total == 20_004.5
    # A value equal to a bound falls in that bucket (Prometheus's `le`); 20 s in the open one.
    assert hist.counts[:3] == (2, 0, 1) and hist.counts[-1] == 1
    assert len(hist.counts) == len(LATENCY_MS_BUCKETS) + 1

    # The next window: sums and histograms start from nothing, the gauge stays.
    nxt = _by_name(w.close(7000))
    assert list(nxt) == [("streamrec_redis_memory", ())]
    assert nxt[("streamrec_redis_memory", ())].start_ms == 6000
    w.clear("streamrec_redis_memory")
    assert w.close(8000) == []


def test_totals_run_across_windows_for_prometheus():
    w = MetricsWindow(1000, start_ms=1000)
    w.add("streamrec_dead_letters", topic="events")
    w.close(2000)
    w.add("streamrec_dead_letters", 2, topic="events")  # still in the open window
    w.observe("streamrec_foldin", [4.0])
    totals = _by_name(w.totals())
    assert totals[("streamrec_dead_letters", (("topic", "events"),))].value == 3
    assert totals[("streamrec_foldin", ())].count == 1


def test_the_catalogue_is_the_only_door():
    w = MetricsWindow()
    with pytest.raises(KeyError, match="not in the metrics catalogue"):
        w.add("streamrec_made_up")
    with pytest.raises(ValueError, match="labels"):
        w.add("streamrec_events_in", 1)  # its `type` label is missing
    with pytest.raises(ValueError, match="is a sum"):
        w.set("streamrec_events_in", 1, type="view")


def test_a_record_is_a_cloudevent_around_one_point_and_decodes_back():
    w = MetricsWindow(1000, start_ms=1000)
    w.observe("streamrec_api_latency", [3.0, 7.0], route="/v1/items/popular")
    (point,) = w.close(2000)
    record = decode_metric(encode(metric_record(point, "/streamrec/api/a1")))
    assert record.specversion == "1.0" and record.type == METRIC_TYPE
    assert record.source == "/streamrec/api/a1" and record.id and record.time
    assert record.partition_key == "streamrec_api_latency"
    data = record.data
    assert (data.kind, data.unit) == ("histogram", "ms")
    assert data.labels == {"route": "/v1/items/popular"}
    assert data.count == 2 and data.sum == 10.0 and data.value is None
    assert data.counts is not None and data.bounds is not None
    assert len(data.counts) == len(data.bounds) + 1 and sum(data.counts) == 2


def test_prometheus_sees_counters_gauges_and_cumulative_buckets():
    w = MetricsWindow(1000, start_ms=1000)
    w.add("streamrec_api_requests", method="GET", route="/v1/x", status="200")
    w.set("streamrec_served_version", 1, family="cf", version="v7")
    w.observe("streamrec_foldin", [2.0, 30.0])
    registry = CollectorRegistry()
    registry.register(WindowCollector(w))
    text = generate_latest(registry).decode()
    assert 'streamrec_api_requests_total{method="GET",route="/v1/x",status="200"} 1.0' in text
    assert 'streamrec_served_version{family="cf",version="v7"} 1.0' in text
    assert 'streamrec_foldin_ms_bucket{le="2.5"} 1.0' in text
    assert 'streamrec_foldin_ms_bucket{le="50.0"} 2.0' in text
    assert 'streamrec_foldin_ms_bucket{le="+Inf"} 2.0' in text


def test_a_failing_sink_drops_the_window_and_never_raises():
    async def broken(records):
        raise ConnectionError("broker away")

    w = MetricsWindow(1000, start_ms=1000)
    w.add("streamrec_content_in", 4)
    publisher = MetricsPublisher(w, broken, "/streamrec/worker/t")
    assert asyncio.run(publisher.publish_due(2000)) == 0
    sent: list[tuple[str, bytes]] = []

    async def sink(records):
        sent.extend(records)

    publisher = MetricsPublisher(w, sink, "/streamrec/worker/t")
    w.add("streamrec_content_in", 1)
    assert asyncio.run(publisher.publish_due(2500)) == 0  # its window has not ended
    assert asyncio.run(publisher.publish_due(3000)) == 1
    assert sent[0][0] == "streamrec_content_in"
    assert decode_metric(sent[0][1]).data.value == 1


def _readme_metrics_table() -> dict[str, list[str]]:
    page = (ROOT / "docs" / "monitoring.md").read_text()
    section = page.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and (m := re.fullmatch(r"`(streamrec_\w+)`", cells[0])):
            rows[m.group(1)] = cells[1:]
    return rows


def test_the_docs_document_every_metric_as_the_code_defines_it():
    table = _readme_metrics_table()
    assert set(table) == set(CATALOGUE)
    for name, (kind, unit, labels, _meaning) in table.items():
        spec = CATALOGUE[name]
        assert kind == spec.kind, name
        assert unit == f"`{spec.unit}`", name
        assert labels == (", ".join(f"`{lb}`" for lb in spec.labels) or "none"), name


def test_quantiles_interpolate_inside_the_bucket_like_prometheus():
    bounds = [10.0, 20.0, 40.0]
    assert quantile(bounds, [0, 10, 0, 0], 0.5) == 15.0
    assert quantile(bounds, [5, 5, 0, 0], 0.99) == pytest.approx(19.8)
    assert quantile(bounds, [0, 0, 0, 3], 0.5) == 40.0  # the open bucket: its lower bound
    assert quantile(bounds, [0, 0, 0, 0], 0.5) != quantile(bounds, [0, 0, 0, 0], 0.5)  # NaN


def test_the_apis_coverage_is_of_one_window_only():
    from api.telemetry import ApiMetrics

    m = ApiMetrics(MetricsWindow(1000, start_ms=1000))
    m.served("v1", "control", ["a", "b"])
    m.served("v1", "control", ["b"])
    m.close_coverage(catalogue_size=4)
    first = _by_name(m.window.close(2000))
    assert first[("streamrec_catalogue_coverage", ())].value == 0.5
    assert (
        first[("streamrec_recs_served", (("bucket", "control"), ("model_version", "v1")))].value
        == 2
    )
    m.served("v2", "challenger", ["c"])
    m.close_coverage(catalogue_size=4)
    assert _by_name(m.window.close(3000))[("streamrec_catalogue_coverage", ())].value == 0.25
