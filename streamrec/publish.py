"""Publishing tabular history and catalogues through Kafka (used by `import` and `demo`)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd
from tqdm import tqdm

from streams.producer import EventProducer
from streams.records import ContentV1, EventV1, encode


def publish_events(producer: EventProducer, events: pd.DataFrame, progress: bool = True) -> int:
    """Send cleaned history rows (see `streamrec.ratings_csv.clean_history`) in their order."""
    if "text" not in events:
        events = events.assign(text=None)
    rows: Iterable[tuple[str, str, str, str, float, int, str | None]] = events[
        ["event_id", "user_id", "item_id", "type", "value", "ts", "text"]
    ].itertuples(index=False, name=None)
    sent = 0
    for event_id, user_id, item_id, etype, value, ts, text in tqdm(
        rows, total=len(events), desc="events", unit="ev", disable=not progress
    ):
        event = EventV1(
            event_id=event_id,
            user_id=user_id,
            item_id=item_id,
            type=etype,
            value=None if value is None or math.isnan(value) else float(value),
            text=text if isinstance(text, str) else None,
            ts=int(ts),
        )
        producer.send_raw(producer.events_topic, user_id, encode(event))
        sent += 1
    producer.flush()
    return sent


def publish_items(
    producer: EventProducer,
    items: Iterable[ContentV1],
    total: int | None = None,
    progress: bool = True,
) -> int:
    sent = 0
    for item in tqdm(items, total=total, desc="content", unit="item", disable=not progress):
        producer.send_content(item)
        sent += 1
    producer.flush()
    return sent
