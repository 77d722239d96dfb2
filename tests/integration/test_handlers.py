"""Record handling without a broker: bad records are dead-lettered, good ones applied."""

import base64
import json

import pytest

from models.registry import ModelRegistry
from recommender.feature_store import FeatureStore
from recommender.model_state import ModelState
from recommender.training import Trainer
from streams.handlers import RawRecord, RecordHandler
from streams.records import DeadLetterV1

pytestmark = pytest.mark.integration


def record(value: bytes, offset: int) -> RawRecord:
    return RawRecord("events", 0, offset, b"k", value)


async def test_bad_records_go_to_dead_letter_and_the_batch_goes_on(redis, settings):
    store = FeatureStore(redis, settings)
    trainer = Trainer(store, ModelState(redis), ModelRegistry(settings.models_dir), settings)
    sent: list[tuple[bytes | None, bytes]] = []

    async def sink(key: bytes | None, value: bytes) -> None:
        sent.append((key, value))

    handler = RecordHandler(store, trainer, sink)
    good = {"event_id": "e1", "user_id": "u", "item_id": "i", "type": "view", "ts": 1}
    batch = [
        record(b"\x00\x01", 0),
        record(json.dumps(good).encode(), 1),
        record(json.dumps({**good, "type": "teleport"}).encode(), 2),
    ]
    assert await handler.handle_events(batch) == 1
    letters = [DeadLetterV1.model_validate_json(v) for _, v in sent]
    assert [d.offset for d in letters] == [0, 2]
    assert base64.b64decode(letters[0].original_b64) == b"\x00\x01"
    assert "type" in letters[1].reason
    assert (await store.stats())["dead_letters"] == 2
