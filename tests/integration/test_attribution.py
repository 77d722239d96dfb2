"""Impressions, attribution and the A/B split against a real Valkey."""

import secrets
import time
from dataclasses import replace

import pytest

from recommender.cf.refits import Trainer
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.monitoring.attribution import GRACE_S, Attributor
from recommender.monitoring.impressions import MAX_IMPRESSIONS_PER_USER, Impression, ImpressionStore
from recommender.monitoring.metrics import MetricsWindow
from recommender.serving.ab_split import CHALLENGER, CONTROL, in_challenger_share
from recommender.serving.service import RecommendationService
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import Interaction
from tests.factories import PLAIN_SERVING, clustered_interactions

pytestmark = pytest.mark.integration

WINDOW_S = 600


def _event(n: int, user: str, item: str, kind: str, rid: str | None = None) -> Interaction:
    return Interaction(f"e{n}", user, item, kind, 1_000 + n, None, None, rid)


def _sums(window: MetricsWindow) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (p.name, tuple(sorted(p.labels.items()))): p.value or 0
        for p in window.close(10**13)
        if p.kind == "sum"
    }


@pytest.fixture
def parts(redis, settings):
    store = FeatureStore(redis, settings)
    impressions = ImpressionStore(redis, WINDOW_S)
    metrics = MetricsWindow()
    return store, impressions, metrics, Attributor(impressions, store.pseudonym_of, metrics, 2)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def test_outcomes_are_credited_to_the_list_quoted_or_the_one_that_showed_the_item(
    parts, redis
):
    store, impressions, metrics, attributor = parts
    alice, bob = store.pseudonym("alice"), store.pseudonym("bob")
    now = _now_ms()
    impressions.record(Impression("r0", alice, ("b", "d"), "v0", CONTROL, now - 2))
    impressions.record(Impression("r1", alice, ("a", "b", "c"), "v1", CONTROL, now - 1))
    impressions.record(Impression("r2", bob, ("x", "y"), "v2", CHALLENGER, now))
    impressions.record(Impression("old", bob, ("o",), "v2", CHALLENGER, now - WINDOW_S * 1000 - 1))
    assert await impressions.flush() == 4

    await attributor.on_applied(
        [
            _event(1, "alice", "b", "click", "r1"),  # quoted: a click, and r1's first hit
            _event(2, "alice", "c", "click", "r1"),  # outside the first 2: no hit of its own
            _event(3, "bob", "y", "purchase"),  # not quoted: r2 showed y to bob
            _event(4, "bob", "x", "view"),  # a view is no outcome
            _event(5, "bob", "a", "click", "r1"),  # r1 was alice's list: not bob's to quote
            _event(6, "alice", "z", "click", "r1"),  # z was not in r1
            _event(7, "alice", "a", "click", "never-served"),
            _event(8, "carol", "q", "click"),  # organic: counted nowhere
            _event(9, "bob", "o", "click"),  # shown before the window: organic
            _event(10, "alice", "d", "click"),  # r0 showed d: not the newest list, the one
        ]
    )
    # The lists quoted by events 5 and 7 may not be written yet: they wait, then count as
    # unknown.
    assert [e.event_id for e in attributor.waiting] == ["e5", "e7"]
    await attributor.credits([], now=time.monotonic() + GRACE_S + 1)
    sums = _sums(metrics)
    outcomes = "streamrec_recs_outcomes"
    assert sums[(outcomes, (("bucket", CONTROL), ("kind", "click"), ("model_version", "v1")))] == 2
    assert sums[(outcomes, (("bucket", CONTROL), ("kind", "click"), ("model_version", "v0")))] == 1
    assert (
        sums[(outcomes, (("bucket", CHALLENGER), ("kind", "conversion"), ("model_version", "v2")))]
        == 1
    )
    hits = "streamrec_recs_hits"
    assert sums[(hits, (("bucket", CONTROL), ("model_version", "v1")))] == 1
    assert sums[(hits, (("bucket", CHALLENGER), ("model_version", "v2")))] == 1
    assert sums[(hits, (("bucket", CONTROL), ("model_version", "v0")))] == 1
    unmatched = "streamrec_attribution_unmatched"
    assert sums[(unmatched, (("reason", "not_in_list"),))] == 1
    assert sums[(unmatched, (("reason", "unknown"),))] == 2

    # A list is a hit once, however many outcomes follow.
    await attributor.on_applied([_event(11, "alice", "a", "click", "r1")])
    assert not any(name == hits for name, _ in _sums(metrics))

    # Everything is bounded by the attribution window.
    for key in (keys.user_lists(alice), keys.user_hits(alice), keys.user_lists(bob)):
        assert 0 < await redis.ttl(key) <= WINDOW_S, key


async def test_erasure_takes_every_list_served_to_the_user(parts, redis):
    store, impressions, _, _ = parts
    alice = store.pseudonym("alice")
    bob = store.pseudonym("bob")
    for n in range(3):
        impressions.record(Impression(f"r{n}", alice, ("a", f"i{n}"), "v1", CONTROL, _now_ms()))
    impressions.record(Impression("other", bob, ("a",), "v1", CONTROL, _now_ms()))
    await impressions.flush()
    (r1,) = await impressions.served_lists([(alice, "r1", "a")])
    assert r1 is not None and await impressions.mark_hit([r1]) == [True]
    impressions.record(Impression("unflushed", alice, ("a",), "v1", CONTROL, _now_ms()))
    assert await impressions.forget(alice) == 2  # the lists and the hits
    assert not await redis.exists(keys.user_lists(alice), keys.user_hits(alice))
    assert await impressions.flush() == 0  # the list not yet written went too
    assert await redis.llen(keys.user_lists(bob)) == 1

    # What a version before 2026-12-05 kept goes too, until it expires after an upgrade.
    old = f"{keys.LEGACY_IMPRESSION_PREFIX}r-old"
    await redis.hset(old, mapping={"u": alice, "items": "a"})
    await redis.zadd(keys.legacy_user_impressions(alice), {"r-old": 1})
    await redis.hset(keys.legacy_user_shown(alice), "a", "r-old")
    assert await impressions.forget(alice) == 3
    assert not await redis.exists(old, keys.legacy_user_impressions(alice))


def test_the_challenger_share_is_stable_and_about_its_size():
    users = [secrets.token_hex(32) for _ in range(4000)]
    inside = [u for u in users if in_challenger_share(u, 0.2)]
    assert 0.17 < len(inside) / len(users) < 0.23
    assert inside == [u for u in users if in_challenger_share(u, 0.2)]
    assert not any(in_challenger_share(u, 0.0) for u in users)


async def test_users_in_the_share_are_served_the_challenger_and_told_so(redis, settings):
    store = FeatureStore(redis, settings)
    state, registry = ModelState(redis), cf_registry(settings.models_dir)
    trainer = Trainer(store, state, registry, settings)
    await store.apply_interactions(clustered_interactions())
    served = await trainer.refit()
    challenger = await trainer.refit()  # promoted too; make the first one served again
    await state.promote(served, 600, by="test")
    await state.record_challenger(challenger, {"reason": "test"})

    service = RecommendationService(
        store, state, registry, replace(PLAIN_SERVING, challenger_share=0.5)
    )
    seen: dict[str, int] = {}
    for n in range(40):
        user = f"a{n % 20}" if n < 20 else f"b{n % 20}"
        recs = await service.recommend(user, 5)
        in_share = in_challenger_share(store.pseudonym(user), 0.5)
        assert recs.bucket == (CHALLENGER if in_share else CONTROL)
        assert recs.model_version == (challenger if in_share else served)
        seen[recs.bucket] = seen.get(recs.bucket, 0) + 1
    assert seen[CHALLENGER] and seen[CONTROL]

    # Once it is served, nobody is in a challenger bucket.
    await state.promote(challenger, 600, by="test")
    service = RecommendationService(
        store, state, registry, replace(PLAIN_SERVING, challenger_share=0.5)
    )
    assert {(await service.recommend(f"a{n}", 5)).bucket for n in range(20)} == {CONTROL}


async def test_an_outcome_that_outruns_its_list_is_credited_once_the_list_is_written(parts):
    store, impressions, metrics, attributor = parts
    alice = store.pseudonym("alice")
    impressions.record(Impression("r9", alice, ("a", "b"), "v1", CONTROL, _now_ms()))
    await attributor.on_applied([_event(1, "alice", "a", "click", "r9")])  # not flushed yet
    assert _sums(metrics) == {}
    await impressions.flush()
    await attributor.retry()
    sums = _sums(metrics)
    key = (("bucket", CONTROL), ("kind", "click"), ("model_version", "v1"))
    assert sums[("streamrec_recs_outcomes", key)] == 1
    assert not any(name == "streamrec_attribution_unmatched" for name, _ in sums)


async def test_what_is_kept_of_served_lists_is_bounded_per_user(parts, redis):
    _, impressions, _, _ = parts
    carol = "c" * 32
    now = _now_ms()
    for n in range(MAX_IMPRESSIONS_PER_USER + 5):
        items = tuple(f"i{n}-{j}" for j in range(10))
        impressions.record(Impression(f"r{n}", carol, items, "v1", CONTROL, now + n))
        if n == 40:
            assert await impressions.flush() == 41
    assert await impressions.flush() == MAX_IMPRESSIONS_PER_USER + 5 - 41
    # The newest lists are kept.
    assert await redis.llen(keys.user_lists(carol)) == MAX_IMPRESSIONS_PER_USER
    assert 0 < await redis.ttl(keys.user_lists(carol)) <= WINDOW_S
    newest, oldest = await impressions.served_lists(
        [(carol, "r204", "i204-0"), (carol, "r5", "i5-0")]
    )
    assert newest == Impression("r204", carol, tuple(f"i204-{j}" for j in range(10)), "v1",
                                CONTROL, now + 204)  # fmt: skip
    assert oldest is not None and oldest.recommendation_id == "r5"
    assert await impressions.served_lists([(carol, "r4", "i4-0"), (carol, None, "i3-1")]) == [
        None,
        None,
    ]
    # Unquoted: the newest list that showed the item.
    impressions.record(Impression("again", carol, ("i100-3",), "v2", CONTROL, now + 500))
    await impressions.flush()
    (shown,) = await impressions.served_lists([(carol, None, "i100-3")])
    assert shown is not None and shown.recommendation_id == "again"
