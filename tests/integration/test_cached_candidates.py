"""Serving from cached candidates against a real Valkey: the same answers as scoring the
catalogue, and never staler than the user's vector."""

from dataclasses import replace

import pytest

from recommender.cf.refits import Trainer
from recommender.cf.vectors import CachedCandidates, decode_candidates, encode_candidates
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.serving.answers import Recommendations
from recommender.serving.config import ServingConfig
from recommender.serving.service import RecommendationService
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import Interaction
from tests.factories import ROMANCE, SCI_FI, clustered_interactions, landed

pytestmark = pytest.mark.integration

CANDIDATES = 12


@pytest.fixture
async def system(redis, settings):
    store = FeatureStore(redis, settings)
    state = ModelState(redis)
    registry = cf_registry(settings.models_dir)
    trainer = Trainer(store, state, registry, settings)
    await store.apply_interactions(clustered_interactions())
    version = await trainer.refit()

    def service(candidates: int, keep_s: float = 0.0) -> RecommendationService:
        return RecommendationService(
            store,
            state,
            registry,
            replace(
                ServingConfig.of(settings),
                # Longer than any test: a promotion is seen with the read of the user's vector.
                pointer_check_s=3600,
                title_ttl_s=keep_s,
                new_item_slots=1,
                candidates=candidates,
            ),
        )

    return store, trainer, version, service(CANDIDATES), service(0), service(CANDIDATES, 60)


def _answer(recs: Recommendations) -> tuple[list[tuple[str, float, str]], int | None]:
    return [(i.item_id, round(i.score, 5), i.reason) for i in recs.items], recs.user_event_ms


async def test_cached_answers_are_the_computed_ones(system, redis):
    store, _, version, cached, computed, _ = system
    users = [f"a{u}" for u in range(10)] + [f"b{u}" for u in range(10)]
    for user in users:
        expected = _answer(await computed.recommend(user, 5))
        assert _answer(await cached.recommend(user, 5)) == expected  # computed, then cached
        assert await redis.hexists(keys.user_recs(version), store.pseudonym(user))
        assert _answer(await cached.recommend(user, 5)) == expected  # from the cache
        # Leaving items out, and asking for more than is cached, answer as computed too.
        first = expected[0][0][0]
        left_out = _answer(await cached.recommend(user, 5, exclude=[first]))
        assert left_out == _answer(await computed.recommend(user, 5, exclude=[first]))
        many = _answer(await cached.recommend(user, CANDIDATES + 5))
        assert many == _answer(await computed.recommend(user, CANDIDATES + 5))


async def test_a_version_serves_with_its_users_candidates_already_computed(system, redis):
    """A refit computes them before the pointer moves: no request after a promotion has to."""
    store, _, version, _, computed, _ = system
    stored = await redis.hgetall(keys.user_recs(version))
    users = [f"a{u}" for u in range(10)] + [f"b{u}" for u in range(10)]
    assert {store.pseudonym(u) for u in users} <= set(stored)
    assert not [k async for k in redis.scan_iter(match=keys.pending_recs("*"))]
    for user in users:
        entry = decode_candidates(stored[store.pseudonym(user)], 5)
        assert entry is not None
        expected = _answer(await computed.recommend(user, 5))
        assert [(i, round(s, 5)) for i, s in entry.items] == [(i, s) for i, s, _ in expected[0]]


async def test_a_request_is_answered_from_the_cache_while_it_is_as_fresh_as_the_vector(
    system, redis
):
    store, _, version, cached, _, _ = system
    user = "a1"
    p = store.pseudonym(user)
    await cached.recommend(user, 3)
    entry = decode_candidates(await redis.hget(keys.user_recs(version), p))
    assert entry is not None
    # Plant a different order under the same as_of: the answer must follow it.
    planted = [(i, 1.0 - n / 10) for n, i in enumerate(reversed([i for i, _ in entry.items]))]
    await redis.hset(
        keys.user_recs(version),
        p,
        encode_candidates(CachedCandidates(entry.as_of, planted, entry.seen_new)),
    )
    assert [i.item_id for i in (await cached.recommend(user, 3)).items] == [
        i for i, _ in planted[:3]
    ]


async def test_a_new_event_makes_the_cache_stale(system, redis):
    store, trainer, version, cached, computed, _ = system
    user = "b2"
    before = await cached.recommend(user, 5)
    assert {i.item_id for i in before.items} <= set(ROMANCE)
    # The user turns to sci-fi: the worker folds them in, the next answer follows at once.
    events = [
        Interaction(f"{user}-turn-{n}", user, item, "purchase", 1_780_000_000_000 + n)
        for n, item in enumerate(SCI_FI[:8])
    ]
    applied = (await store.apply_interactions(events)).applied
    await trainer.updater.on_applied(applied)
    after = await cached.recommend(user, 5)
    assert after.user_event_ms is not None and after.user_event_ms > (before.user_event_ms or 0)
    assert _answer(after) == _answer(await computed.recommend(user, 5))
    assert not {i.item_id for i in after.items} & set(SCI_FI[:8])
    entry = await landed(
        lambda: _entry(redis, version, store.pseudonym(user)),
        lambda e: e is not None and e.as_of == after.user_event_ms,
    )
    assert entry is not None and entry.as_of == after.user_event_ms


async def _entry(redis, version: str, pseudonym: str) -> CachedCandidates | None:
    return decode_candidates(await redis.hget(keys.user_recs(version), pseudonym))


async def test_a_kept_answer_stands_until_the_vector_or_the_model_moves(system, redis):
    store, trainer, version, _, computed, keeping = system
    user = "b3"
    first = await keeping.recommend(user, 5)
    assert await keeping.recommend(user, 5) is first  # nothing read but the vector's as_of
    assert _answer(first) == _answer(await computed.recommend(user, 5))
    # Asked with something to leave out, or for another k, it is computed as before.
    top = first.items[0].item_id
    assert top not in {i.item_id for i in (await keeping.recommend(user, 5, exclude=[top])).items}
    assert len((await keeping.recommend(user, 3)).items) == 3

    events = [Interaction(f"{user}-turn", user, SCI_FI[0], "purchase", 1_780_000_000_000)]
    await trainer.updater.on_applied((await store.apply_interactions(events)).applied)
    folded = await keeping.recommend(user, 5)
    assert folded is not first and folded.user_event_ms == 1_780_000_000_000
    assert _answer(folded) == _answer(await computed.recommend(user, 5))
    assert await keeping.recommend(user, 5) is folded

    newer = await trainer.refit()
    assert newer != version
    moved = await keeping.recommend(user, 5)
    assert moved is not folded and moved.model_version == newer

    await keeping.forget(store.pseudonym(user))  # erasure: nothing kept of the user
    assert await keeping.recommend(user, 5) is not moved


async def test_a_late_event_moves_the_kept_answer_too(system):
    """On main `as_of` was the newest event time: an event stamped before it (late, or in the
    same millisecond) was folded in but left the kept answer showing what was just bought."""
    store, trainer, _, _, _, keeping = system
    user = "b3"
    first = await keeping.recommend(user, 5)
    bought = first.items[0].item_id
    late = [Interaction(f"{user}-late", user, bought, "purchase", 1_000)]  # long ago
    await trainer.updater.on_applied((await store.apply_interactions(late)).applied)
    after = await keeping.recommend(user, 5)
    assert after is not first and bought not in {i.item_id for i in after.items}
    assert (after.user_event_ms or 0) > (first.user_event_ms or 0)
