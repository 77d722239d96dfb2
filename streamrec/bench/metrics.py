"""What publishing metrics costs, and how fresh a console is (part of `streamrec bench monitor`).

- `ingest_ratio_metrics_on_off`: worker events/s draining the same pre-filled topic with metric
  publishing on and off (`STREAMREC_METRICS_PUBLISH`), five rounds, the order alternating, the
  median of each; goal >= 0.95. Counting is always on (the API's Prometheus figures come from
  it); what the switch saves is the records and the gauges sampled for them.
- `console_staleness_p50_s` / `_p99_s`: with events produced at 5,000/s, the time from a worker
  window's end to its record reaching a consumer (`streamrec metrics` reads the same way); goal
  p99 <= 2 s.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import numpy as np

from recommender.settings import Settings
from streamrec.bench.ingest import _fill, _producer, _streamrec_worker
from streamrec.bench.workload import isolated, movielens_events
from streamrec.metrics_console import follow
from streamrec.runtime import Runtime
from streams.records import MetricV1

STALENESS_RATE = 5000
ROUNDS = 5


def _ingest(settings: Settings, events: int, publish: bool) -> float:
    s = isolated(settings, "metrics-on" if publish else "metrics-off")
    rt = Runtime(s.model_copy(update={"metrics_publish": publish}), api_port=0)
    try:
        rt.start(worker=False, api=False)
        _fill(rt.settings, events)
        return _streamrec_worker(rt, events, timeout_s=600)
    finally:
        rt.stop()


def _staleness(settings: Settings, seconds: float) -> list[float]:
    """Seconds from each worker window's end to its record arriving here, under load."""
    rt = Runtime(isolated(settings, "metrics-stale"), api_port=0)
    seen: list[float] = []
    stop = threading.Event()
    try:
        rt.start(api=False)

        def consume() -> None:
            for record in follow(rt.settings, seconds=seconds + 5):
                if (
                    isinstance(record, MetricV1)
                    and record.source.startswith("/streamrec/worker/")
                    and not stop.is_set()
                ):
                    seen.append(time.time() - record.data.end_ms / 1000)

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        producer = _producer(rt.settings, linger_ms=5)
        events = movielens_events(int(STALENESS_RATE * seconds) + 1, prefix="stale")
        started = time.perf_counter()
        for n, (key, value) in enumerate(events):
            due = started + n / STALENESS_RATE
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            producer.send(rt.settings.topic_events, key=key.encode(), value=value)
        producer.flush()
        producer.close()
        stop.set()
        reader.join(timeout=10)
    finally:
        rt.stop()
    return seen


def run_metrics_costs(settings: Settings, events: int = 100_000) -> dict[str, Any]:
    on: list[float] = []
    off: list[float] = []
    for round_ in range(ROUNDS):
        print(f"metrics: ingest round {round_ + 1} of {ROUNDS}, publishing on and off...")
        # Which goes first alternates, and five rounds: one worker's rate moves by a tenth
        # between runs of the same code on this VM (two rounds read 0.93 and 1.04).
        for publish in (True, False) if round_ % 2 == 0 else (False, True):
            (on if publish else off).append(_ingest(settings, events, publish))
    print(f"metrics: console staleness at {STALENESS_RATE:,} events/s...", flush=True)
    stale = _staleness(settings, 20.0)
    on_rate, off_rate = statistics.median(on), statistics.median(off)
    return {
        "ingest_events": events,
        "ingest_events_per_s_metrics_on": round(on_rate, 1),
        "ingest_events_per_s_metrics_off": round(off_rate, 1),
        "ingest_ratio_metrics_on_off": round(on_rate / off_rate, 3),
        "console_records": len(stale),
        "console_staleness_p50_s": round(float(np.percentile(stale, 50)), 3) if stale else None,
        "console_staleness_p99_s": round(float(np.percentile(stale, 99)), 3) if stale else None,
    }
