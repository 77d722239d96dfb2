"""The feature store against a real Valkey."""

import math

import pytest
import redis.asyncio as aioredis

from recommender.settings import Settings
from recommender.store import keys
from recommender.store.features import FeatureStore
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
    [alice] = await store.users.histories([store.pseudonym("alice")])
    w = settings.event_weights
    assert alice == {"x": w["click"], "y": w["purchase"]}
    stats = await store.stats.all()
    assert (stats["events_applied"], stats["duplicates_suppressed"]) == (4, 3)
    assert (stats["type:click"], stats["type:purchase"], stats["clock"]) == (3, 1, 1000)
    top = await store.popularity.popular(3)
    assert top[0] == ("x", 2.0)
    assert sorted(top[1:]) == [("y", 1.0), ("z", 1.0)]
    assert await store.popularity.popular(3, exclude={"x"}) == top[1:]


async def test_duplicates_inside_one_batch_are_suppressed(redis, settings):
    store = FeatureStore(redis, settings)
    applied = (await store.apply_interactions([ev("same", "u", "x"), ev("same", "u", "x")])).applied
    assert len(applied) == 1


async def test_recent_list_is_capped_and_user_keys_expire(redis, tmp_path, infra):
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, redis_url=infra.redis_url, recent_items=3, user_ttl_s=3600)
    store = FeatureStore(redis, settings)
    await store.apply_interactions([ev(f"e{i}", "carol", f"i{i}", ts=i) for i in range(5)])
    recent = await store.users.recent("carol", 10)
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
    await store.catalogue.upsert_items([ItemMeta("m1", "Alien", 1, categories=("Sci-Fi",))])
    assert await store.catalogue.titles(["m1", "unknown"]) == ["Alien", None]
    assert await store.stats.counts() == (0, 1)


async def test_the_recommendation_id_stays_with_the_event(redis, settings):
    store = FeatureStore(redis, settings)
    quoted = Interaction("e1", "u", "x", "click", 5, recommendation_id="rec-1")
    await store.apply_interactions([quoted, ev("e2", "u", "y")])
    recent = await store.users.recent("u")
    assert [(r.item_id, r.recommendation_id) for r in recent] == [("y", None), ("x", "rec-1")]


async def test_item_images_are_kept_and_survive_an_update_without_one(redis, settings):
    store = FeatureStore(redis, settings)
    await store.catalogue.upsert_items([ItemMeta("m1", "Alien", 1, image="iVBORw0KGgo=")])
    await store.catalogue.upsert_items([ItemMeta("m1", "Alien (1979)", 2)])
    assert await redis.get(keys.item_image("m1")) == "iVBORw0KGgo="
    assert await store.catalogue.titles(["m1"]) == ["Alien (1979)"]


HOUR = 3_600_000
T0 = 1_700_000_000_000 // HOUR * HOUR  # an hour boundary, so buckets are predictable


async def test_popularity_windows_slide_with_the_stream_clock(redis, settings):
    store = FeatureStore(redis, settings)
    old = [ev(f"o{i}", f"u{i}", "classic", ts=T0) for i in range(5)]  # 2 days before the end
    day = [ev(f"d{i}", f"v{i}", "daily", ts=T0 + 40 * HOUR) for i in range(3)]
    now = [ev(f"n{i}", f"w{i}", "hot", ts=T0 + 48 * HOUR) for i in range(2)]
    await store.apply_interactions(old + day + now)
    assert await store.popularity.clock() == T0 + 48 * HOUR
    assert [i for i, _ in await store.popularity.popular_in("1h", 5)] == ["hot"]
    assert await store.popularity.popular_in("24h", 5) == [("daily", 3.0), ("hot", 2.0)]
    assert await store.popularity.popular_in("7d", 5) == [
        ("classic", 5.0),
        ("daily", 3.0),
        ("hot", 2.0),
    ]
    assert await store.popularity.popular_in("7d", 5, exclude={"classic"}) == [
        ("daily", 3.0),
        ("hot", 2.0),
    ]


async def test_trending_prefers_a_surge_over_steady_popularity(redis, settings):
    store = FeatureStore(redis, settings)
    steady = [
        ev(f"s{h}-{i}", f"u{i}", "steady", ts=T0 + h * HOUR) for h in range(24) for i in range(4)
    ]
    surge = [ev(f"g{i}", f"v{i}", "surge", ts=T0 + 23 * HOUR + 1) for i in range(4)]
    await store.apply_interactions(steady + surge)
    top = await store.popularity.trending(2)
    assert top[0][0] == "surge" and top[0][1] > top[1][1]


async def test_distinct_users_and_per_type_counters(redis, settings):
    store = FeatureStore(redis, settings)
    await store.apply_interactions(
        [ev("a", "u1", "x"), ev("b", "u1", "x", "view"), ev("c", "u2", "x", "purchase")]
    )
    assert await store.catalogue.distinct_users("x") == 2
    stats = await store.stats.all()
    assert (stats["type:click"], stats["type:view"], stats["type:purchase"]) == (1, 1, 1)


async def test_category_affinity_follows_taste_and_decays(redis, settings):
    store = FeatureStore(redis, settings)
    await store.catalogue.upsert_items(
        [
            ItemMeta("alien", "Alien", 1, categories=("Sci-Fi", "Horror")),
            ItemMeta("notebook", "The Notebook", 1, categories=("Romance",)),
        ]
    )
    await store.apply_interactions(
        [ev("1", "eve", "alien", "purchase", ts=T0), ev("2", "eve", "notebook", "view", ts=T0)]
    )
    affinity = await store.users.category_affinity("eve")
    w = settings.event_weights
    assert affinity["Sci-Fi"] == pytest.approx(w["purchase"])
    assert affinity["Romance"] == pytest.approx(w["view"])
    # 30 days later (one time constant), the same taste reads e times weaker.
    await store.apply_interactions([ev("3", "zed", "other", ts=T0 + 30 * 86_400_000)])
    later = await store.users.category_affinity("eve")
    assert later["Sci-Fi"] == pytest.approx(w["purchase"] / math.e)
    assert await store.users.category_affinity("nobody") == {}


async def test_a_batch_over_one_script_call_keeps_each_event_s_outcome(redis, settings):
    """A batch longer than APPLY_CHUNK runs as several script calls in one round trip; every
    event's outcome (applied, duplicate, refused) comes back for that event."""
    from recommender.store.features import APPLY_CHUNK

    store = FeatureStore(redis, settings)
    # A key of the wrong type where user "broken" keeps their items: a refused event.
    await redis.set(keys.user_items(store.pseudonym("broken")), "not a hash")
    n = APPLY_CHUNK * 2 + 7
    batch = [ev(f"e{i}", f"u{i % 50}", f"i{i}") for i in range(n)]
    batch[APPLY_CHUNK + 3] = ev("dup", "u1", "i-dup")
    batch[APPLY_CHUNK * 2 + 1] = ev("dup", "u1", "i-dup")  # the same event in a later call
    refused_at = APPLY_CHUNK * 2 + 5
    batch[refused_at] = ev("boom", "broken", "i-boom", "rating", value=1e9)
    result = await store.apply_interactions(batch)
    expected = [e for i, e in enumerate(batch) if i not in (APPLY_CHUNK * 2 + 1, refused_at)]
    assert [e.event_id for e in result.applied] == [e.event_id for e in expected]
    [(refused, why)] = result.failed
    assert refused.event_id == "boom" and why
    assert (await store.stats.all())["events_applied"] == n - 2


async def test_an_event_at_time_zero_is_applied_with_the_rest(redis, settings):
    """`ts` 0 is valid (epoch milliseconds from 0); the per-user writes after the script's loop
    must not trip over a user whose newest event is at 0 (the poison test found it)."""
    store = FeatureStore(redis, settings)
    result = await store.apply_interactions([ev("z0", "zed", "x", ts=0), ev("z1", "amy", "y")])
    assert [e.event_id for e in result.applied] == ["z0", "z1"] and not result.failed
    assert (await store.stats.all())["events_applied"] == 2
    assert await redis.ttl(keys.user_items(store.pseudonym("zed"))) > 0
