"""The key schema in a real Valkey: what one user's activity writes lands in one slot, and a
deployment of the schema before hash tags is renamed by the worker's start-up check."""

from __future__ import annotations

import asyncio

import pytest
import redis as redis_lib
from redis.crc import key_slot

from recommender.store import keys
from recommender.store.connections import prepare_store
from recommender.store.features import FeatureStore
from recommender.types import Interaction, ItemMeta
from tests.conftest import serve_api
from tests.factories import SCI_FI, clustered_interactions

pytestmark = pytest.mark.integration


async def test_what_a_users_activity_writes_lands_in_their_slot(settings, redis):
    from recommender.privacy.access import ApiKeyStore

    store = FeatureStore(redis, settings)
    user = "slot.user@mail.test"
    p = store.pseudonym(user)
    await store.catalogue.upsert_items([ItemMeta(i, i, 1, None, ("scifi",)) for i in SCI_FI])
    mine = [Interaction(f"s{n}", user, item, "click", 1_780_000_000_000 + n)
            for n, item in enumerate(SCI_FI[:5])]  # fmt: skip
    await store.apply_interactions(clustered_interactions() + mine)
    token = (await ApiKeyStore(redis).create({"read", "profile"}, "t")).token
    async with serve_api(settings) as api:
        headers = {"X-API-Key": token}
        assert (await api.put(f"/v1/users/{user}/profile", json={"name": "S"}, headers=headers)
                ).status_code == 200  # fmt: skip
        assert (await api.get(f"/v1/users/{user}/recommendations", headers=headers)).is_success
        await asyncio.sleep(0.3)  # the served list is written after the answer
    written = [name async for name in redis.scan_iter(match=f"*{p}*", count=1000)]
    written += [name async for name in redis.scan_iter(match=keys.seen(p, "*"), count=1000)]
    assert len(written) >= 7, written  # items, recent, counts, cats, markers, dek, profile, lists
    assert {key_slot(name.encode()) for name in written} == {key_slot(keys.user_base(p).encode())}


async def test_a_deployment_before_hash_tags_is_renamed_at_the_workers_start(settings):
    url = (settings.redis_url or "").rsplit("/", 1)[0] + "/3"  # a database of its own
    client = redis_lib.Redis.from_url(url, decode_responses=True)
    p = "0123456789abcdef0123456789abcdef"
    try:
        client.flushdb()
        client.hset(f"u:{p}:items", mapping={"i1": 2.0, "i2": 1.0})
        client.rpush(f"u:{p}:recent", "click|i1|5")
        client.set(f"dek:{p}", "wrapped")
        client.hset("item:i1", mapping={"title": "One"})
        client.set("item:i1:image", "png")
        client.zadd("items:popular", {"i1": 3})
        client.set("seen:e1", "1")
        assert prepare_store(url) == 5
        assert client.hgetall(keys.user_items(p)) == {"i1": "2.0", "i2": "1.0"}
        assert client.lrange(keys.user_recent(p), 0, -1) == ["click|i1|5"]
        assert client.get(keys.data_key(p)) == "wrapped"
        assert client.hgetall(keys.item_meta("i1")) == {"title": "One"}
        assert client.get(keys.item_image("i1")) == "png"
        assert client.zscore("items:popular", "i1") == 3 and client.exists("seen:e1")
        assert not client.exists(f"u:{p}:items", f"dek:{p}", "item:i1")
        assert client.get(keys.SCHEMA) == "2"
        client.hset(f"u:{p}:items", "i9", 1)  # written by an old process after the upgrade
        assert prepare_store(url) == 0  # recorded: later starts do not scan
    finally:
        client.flushdb()
        client.close()


async def test_an_event_applied_before_the_upgrade_is_not_applied_again(settings, redis):
    """A marker of the old schema (`seen:{event_id}`, no user) is honoured until it expires."""
    store = FeatureStore(redis, settings)
    await redis.set(keys.legacy_seen("old-1"), "1", ex=60)
    result = await store.apply_interactions([Interaction("old-1", "u-old", "i1", "click", 1)])
    assert result.applied == []
    assert not await redis.exists(keys.user_items(store.pseudonym("u-old")))
