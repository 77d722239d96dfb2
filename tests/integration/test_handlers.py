"""Record handling without a broker: bad records are dead-lettered, good ones applied."""

import json

import pytest

from recommender.cf.refits import Trainer
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.store import keys
from recommender.store.features import FeatureStore
from streams.handlers import RawRecord, RecordHandler
from streams.records import DeadLetterV1

pytestmark = pytest.mark.integration


def record(value: bytes, offset: int) -> RawRecord:
    return RawRecord("events", 0, offset, b"k", value)


async def test_bad_records_go_to_dead_letter_and_the_batch_goes_on(redis, settings):
    store = FeatureStore(redis, settings)
    trainer = Trainer(store, ModelState(redis), cf_registry(settings.models_dir), settings)
    sent: list[tuple[bytes | None, bytes]] = []

    async def sink(key: bytes | None, value: bytes) -> None:
        sent.append((key, value))

    handler = RecordHandler(store, [trainer.updater], sink)
    good = {"event_id": "e1", "user_id": "u", "item_id": "i", "type": "view", "ts": 1}
    batch = [
        record(b"\x00\x01", 0),
        record(json.dumps(good).encode(), 1),
        record(json.dumps({**good, "type": "teleport"}).encode(), 2),
    ]
    assert await handler.handle_events(batch) == 1
    letters = [DeadLetterV1.model_validate_json(v) for _, v in sent]
    assert [d.offset for d in letters] == [0, 2]
    assert letters[0].original_bytes == 2  # not JSON: nothing of it kept (it may be personal)
    assert "type" in letters[1].reason
    assert (await store.stats.all())["dead_letters"] == 2


async def test_a_record_whose_processing_fails_is_isolated_and_the_rest_applied(redis, settings):
    store = FeatureStore(redis, settings)
    trainer = Trainer(store, ModelState(redis), cf_registry(settings.models_dir), settings)
    sent: list[bytes] = []

    async def sink(key: bytes | None, value: bytes) -> None:
        sent.append(value)

    handler = RecordHandler(store, [trainer.updater], sink)
    # A key of the wrong type where the user's items go (an operator's mistake, an old
    # version's data): Valkey refuses the write inside the Lua script, for this user only.
    await redis.set(keys.user_items(store.pseudonym("broken")), "not a hash")
    ok = {"user_id": "u", "item_id": "i", "type": "rating", "value": 1.0, "ts": 1}
    batch = [
        record(json.dumps({**ok, "event_id": "a"}).encode(), 0),
        record(json.dumps({**ok, "event_id": "boom", "user_id": "broken"}).encode(), 1),
        record(json.dumps({**ok, "event_id": "b"}).encode(), 2),
    ]
    assert await handler.handle_events(batch) == 2
    [letter] = [DeadLetterV1.model_validate_json(v) for v in sent]
    assert letter.offset == 1 and "WRONGTYPE" in letter.reason
    stats = await store.stats.all()
    assert stats["events_applied"] == 2 and stats["dead_letters"] == 1
    # Not marked seen: once the cause is fixed, a replay from the dead-letter topic applies it.
    assert not await redis.exists(keys.seen(store.pseudonym("broken"), "boom"))


async def test_an_event_stamped_far_ahead_is_dead_lettered_and_moves_no_clock(redis, settings):
    """On main one event stamped in 2286 moved the stream clock there for good: every
    popularity window and trending emptied, and later refits skipped the quality gate."""
    import time

    store = FeatureStore(redis, settings)
    sent: list[bytes] = []

    async def sink(key: bytes | None, value: bytes) -> None:
        sent.append(value)

    handler = RecordHandler(store, [], sink)
    now = int(time.time() * 1000)
    good = {"user_id": "u", "type": "view", "ts": now - 60_000}
    batch = [
        record(json.dumps({**good, "event_id": "a", "item_id": "i1"}).encode(), 0),
        record(
            json.dumps(
                {**good, "event_id": "b", "item_id": "far", "ts": 9_999_999_999_999}
            ).encode(),
            1,
        ),
        record(
            json.dumps({**good, "event_id": "c", "item_id": "i2", "ts": now + 60_000}).encode(), 2
        ),
    ]
    assert await handler.handle_events(batch) == 2  # a minute ahead is within the bound
    [letter] = [DeadLetterV1.model_validate_json(v) for v in sent]
    assert letter.offset == 1 and "ahead of the worker's clock" in letter.reason
    assert await store.popularity.clock() == now + 60_000
    popular = await store.popularity.popular_in("24h", 10)
    assert {i for i, _ in popular} == {"i1", "i2"}
