"""A Faust agent that does nothing per event: the framework's ceiling on this machine.

Run as `python -m streamrec.bench.trivial_faust KAFKA_URL TOPIC N OUT_JSON`; it writes the
elapsed time from its first event to its N-th into OUT_JSON and keeps idling until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import faust

from recommender.settings import Settings
from streams.faust_transport import set_fetch_max_wait
from streams.kafka import faust_broker


def main() -> None:
    kafka_url, topic_name, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    app = faust.App(
        f"trivial-{uuid.uuid4().hex[:6]}",
        broker=faust_broker(kafka_url),
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        # Beside the output, in the runtime's own directory: by default Faust makes
        # `<app id>-data` in the working directory, which a benchmark must leave as it found it.
        datadir=str(out.parent / "trivial-faust-data"),
    )
    # The same fetch wait as the streamrec worker's default, so only the per-event work differs.
    set_fetch_max_wait(app, Settings().consumer_fetch_max_wait_ms)
    topic = app.topic(topic_name, value_type=bytes, value_serializer="raw")

    @app.agent(topic)
    async def count(stream: Any) -> None:
        seen = 0
        first = 0.0
        async for _ in stream:
            seen += 1
            if seen == 1:
                first = time.perf_counter()
            if seen == n:
                elapsed = time.perf_counter() - first
                result = json.dumps({"events": n, "seconds": elapsed})
                await asyncio.to_thread(out.write_text, result)

    faust.Worker(app, loglevel="warning").execute_from_commandline()


if __name__ == "__main__":
    main()
