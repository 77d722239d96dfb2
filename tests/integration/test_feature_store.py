"""The feature store against a real Valkey."""

import pytest
import redis.asyncio as aioredis

from recommender import keys
from recommender.feature_store import FeatureStore
from recommender.settings import Settings
from recommender.types import Interaction, ItemMeta

pytestmark = pytest.mark.integration


def ev(
    eid: str, user: str, item: str, etype: str = "click", ts: int = 1000, value: float | None = None
) -> Interaction:
    return Interaction(eid, user, item, etype, ts, value)


async def test_replayed_events_are_applied_once(redis: aioredis.Redis, settings: Settings):
    store = FeatureStore(redis, settings)
    batch = [ev("e1", "alice", "x"), ev("e2", "alice", "y", "purchase"), ev("e3", "bob", "x")]
    assert len((await store.apply_interactions(batch)).applied) == 3
    # A redelivered batch, mixed with one new event: only the new one counts.
    again = (await store.apply_interactions([*batch, ev("e4", "bob", "z")])).applied
    assert [e.event_id for e in again] == ["e4"]
    [alice] = await store.user_histories([store.pseudonym("alice")])
    w = settings.event_weights
    assert alice == {"x": w["click"], "y": w["purchase"]}
    assert await store.stats() == {"events_applied": 4, "duplicates_suppressed": 3}
    top = await store.popular(3)
    assert top[0] == ("x", 2.0)
    assert sorted(top[1:]) == [("y", 1.0), ("z", 1.0)]
    assert await store.popular(3, exclude={"x"}) == top[1:]


async def test_duplicates_inside_one_batch_are_suppressed(redis, settings):
    store = FeatureStore(redis, settings)
    applied = (await store.apply_interactions([ev("same", "u", "x"), ev("same", "u", "x")])).applied
    assert len(applied) == 1


async def test_recent_list_is_capped_and_user_keys_expire(redis, tmp_path, infra):
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, redis_url=infra.redis_url, recent_items=3, user_ttl_s=3600)
    store = FeatureStore(redis, settings)
    await store.apply_interactions([ev(f"e{i}", "carol", f"i{i}", ts=i) for i in range(5)])
    recent = await store.recent("carol", 10)
    assert [r.item_id for r in recent] == ["i4", "i3", "i2"]
    p = store.pseudonym("carol")
    for key in (keys.user_items(p), keys.user_recent(p), keys.user_counts(p)):
        assert 0 < await redis.ttl(key) <= 3600
    assert await redis.hget(keys.user_counts(p), "last_seen") == "4"


async def test_no_key_or_value_holds_a_user_id_in_clear(redis, settings):
    store = FeatureStore(redis, settings)
    await store.apply_interactions([ev("e1", "dave@example.com", "x")])
    async for key in redis.scan_iter():
        assert "dave" not in key
        kind = await redis.type(key)
        if kind == "zset":
            members = await redis.zrange(key, 0, -1)
            assert not any("dave" in m for m in members)


async def test_items_and_titles(redis, settings):
    store = FeatureStore(redis, settings)
    await store.upsert_items([ItemMeta("m1", "Alien", 1, categories=("Sci-Fi",))])
    assert await store.titles(["m1", "unknown"]) == ["Alien", None]
    assert await store.counts() == (0, 1)
