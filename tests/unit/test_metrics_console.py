"""What the console shows, from records as the topic carries them."""

from rich.console import Console

from recommender.monitoring.metrics import MetricsWindow
from streamrec.metrics_console import ConsoleView, render
from streams.records import DecisionDataV1, DecisionV1, MetricV1, metric_record


def _records(source: str, start_ms: int) -> list[MetricV1]:
    w = MetricsWindow(1000, start_ms=start_ms)
    w.add("streamrec_events_applied", 300, type="click")
    w.add("streamrec_recs_served", 40, model_version="v2", bucket="control")
    w.add("streamrec_recs_hits", 10, model_version="v2", bucket="control")
    w.observe("streamrec_event_to_recs", [20.0] * 95 + [400.0] * 5)
    w.set("streamrec_consumer_lag", 7, topic="events", partition="0")
    return [metric_record(p, source) for p in w.close(start_ms + 1000)]


def test_the_view_adds_sources_up_per_second_and_lists_decisions():
    view = ConsoleView()
    for second in range(5):
        for source in ("/streamrec/worker/a", "/streamrec/worker/b"):
            for record in _records(source, 1_000_000 + second * 1000):
                view.add(record)
    assert view.rate("streamrec_events_applied", "type") == {"click": 600.0}
    (p50, p99) = view.quantiles("streamrec_event_to_recs", 0.5, 0.99)[""]
    assert 10 <= p50 <= 25 and 250 <= p99 <= 500
    assert sum(v for _, v in view.gauge("streamrec_consumer_lag")) == 14  # one per worker
    assert view.per_version("streamrec_recs_hits") == {("v2", "control"): 20.0}
    view.add(
        DecisionV1(
            source="/streamrec/worker/a",
            data=DecisionDataV1(
                family="cf", action="rollback", version="v1", reason="worse", at_ms=1_000_000
            ),
        )
    )
    console = Console(record=True, width=140)
    console.print(render(view))
    text = console.export_text()
    assert "600" in text and "rollback" in text and "25.0%" in text
