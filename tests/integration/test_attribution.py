"""Impressions, attribution and the A/B split against a real Valkey."""

import secrets
import time

import pytest

from recommender import keys
from recommender.ab_split import CHALLENGER, CONTROL, in_challenger_share
from recommender.attribution import GRACE_S, Attributor
from recommender.families import cf_registry
from recommender.feature_store import FeatureStore
from recommender.impressions import MAX_IMPRESSIONS_PER_USER, Impression, ImpressionStore
from recommender.metrics import MetricsWindow
from recommender.model_state import ModelState
from recommender.serving import RecommendationService
from recommender.training import Trainer
from recommender.types import Interaction
from tests.factories import clustered_interactions

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
    return store, impressions, metrics, Attributor(impressions, store.pseudonym, metrics, 2)


async def test_outcomes_are_credited_to_the_list_quoted_or_the_one_that_showed_the_item(
    parts, redis
):
    store, impressions, metrics, attributor = parts
    alice, bob = store.pseudonym("alice"), store.pseudonym("bob")
    impressions.record(Impression("r1", alice, ("a", "b", "c"), "v1", CONTROL, 1))
    impressions.record(Impression("r2", bob, ("x", "y"), "v2", CHALLENGER, 2))
    assert await impressions.flush() == 2

    await attributor.on_applied(
        [
            _event(1, "alice", "b", "click", "r1"),  # quoted: a click, and r1's first hit
            _event(2, "alice", "c", "click", "r1"),  # outside the first 2: no hit of its own
            _event(3, "bob", "y", "purchase"),  # not quoted: r2 showed y to bob
            _event(4, "bob", "x", "view"),  # a view is no outcome
            _event(5, "bob", "a", "click", "r1"),  # r1 was alice's list
            _event(6, "alice", "z", "click", "r1"),  # z was not in r1
            _event(7, "alice", "a", "click", "never-served"),
            _event(8, "carol", "q", "click"),  # organic: counted nowhere
        ]
    )
    # The list quoted by event 7 may not be written yet: it waits, then counts as unknown.
    assert [e.event_id for e in attributor.waiting] == ["e7"]
    await attributor.credits([], now=time.monotonic() + GRACE_S + 1)
    sums = _sums(metrics)
    outcomes = "streamrec_recs_outcomes"
    assert sums[(outcomes, (("bucket", CONTROL), ("kind", "click"), ("model_version", "v1")))] == 2
    assert (
        sums[(outcomes, (("bucket", CHALLENGER), ("kind", "conversion"), ("model_version", "v2")))]
        == 1
    )
    hits = "streamrec_recs_hits"
    assert sums[(hits, (("bucket", CONTROL), ("model_version", "v1")))] == 1
    assert sums[(hits, (("bucket", CHALLENGER), ("model_version", "v2")))] == 1
    unmatched = "streamrec_attribution_unmatched"
    for reason in ("other_user", "not_in_list", "unknown"):
        assert sums[(unmatched, (("reason", reason),))] == 1, reason

    # A list is a hit once, however many outcomes follow.
    await attributor.on_applied([_event(9, "alice", "a", "click", "r1")])
    assert not any(name == hits for name, _ in _sums(metrics))

    # Everything is bounded by the attribution window.
    for key in (keys.impression("r1"), keys.user_shown(alice), keys.user_impressions(alice)):
        assert 0 < await redis.ttl(key) <= WINDOW_S, key


async def test_erasure_takes_every_list_served_to_the_user(parts, redis):
    store, impressions, _, _ = parts
    alice = store.pseudonym("alice")
    for n in range(3):
        impressions.record(Impression(f"r{n}", alice, ("a", f"i{n}"), "v1", CONTROL, n))
    impressions.record(Impression("other", store.pseudonym("bob"), ("a",), "v1", CONTROL, 9))
    await impressions.flush()
    assert await impressions.forget(alice) == 5
    assert not await redis.exists(keys.impression("r0"), keys.user_shown(alice))
    assert await redis.exists(keys.impression("other"))


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

    service = RecommendationService(store, state, registry, challenger_share=0.5)
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
    service = RecommendationService(store, state, registry, challenger_share=0.5)
    assert {(await service.recommend(f"a{n}", 5)).bucket for n in range(20)} == {CONTROL}


async def test_an_outcome_that_outruns_its_list_is_credited_once_the_list_is_written(parts):
    store, impressions, metrics, attributor = parts
    alice = store.pseudonym("alice")
    impressions.record(Impression("r9", alice, ("a", "b"), "v1", CONTROL, 1))
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
    for n in range(MAX_IMPRESSIONS_PER_USER + 5):
        items = tuple(f"i{n}-{j}" for j in range(10))
        impressions.record(Impression(f"r{n}", carol, items, "v1", CONTROL, 1_000 + n))
        if n == 40:  # 410 items shown: all kept
            await impressions.flush()
            assert await redis.hlen(keys.user_shown(carol)) == 410
    assert await impressions.flush() == MAX_IMPRESSIONS_PER_USER + 5 - 41
    # The newest lists are kept; past SHOWN_MAX_ITEMS the shown items start afresh.
    assert await redis.zcard(keys.user_impressions(carol)) == MAX_IMPRESSIONS_PER_USER
    assert await redis.zscore(keys.user_impressions(carol), "r0") is None
    assert await redis.hlen(keys.user_shown(carol)) == 0 < keys.SHOWN_MAX_ITEMS
    assert 0 < await redis.ttl(keys.impression("r204")) <= WINDOW_S
    row = await redis.hgetall(keys.impression("r204"))
    assert row["items"].split() == [f"i204-{j}" for j in range(10)] and row["t"] == "1204"
