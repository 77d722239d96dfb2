"""Trainer and serving against a real Valkey: full fit, per-event updates, fallback."""

import pytest

from recommender.cf.refits import Trainer
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.serving import reasons
from recommender.serving.service import RecommendationService
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import Interaction, ItemMeta
from tests.factories import PLAIN_SERVING, ROMANCE, SCI_FI, clustered_interactions, fan_of_scifi

pytestmark = pytest.mark.integration


@pytest.fixture
def parts(redis, settings):
    store = FeatureStore(redis, settings)
    state = ModelState(redis)
    registry = cf_registry(settings.models_dir)
    return store, state, registry, Trainer(store, state, registry, settings)


async def test_no_fit_before_enough_events_then_fit_and_promote(parts):
    store, state, registry, trainer = parts
    await store.apply_interactions(clustered_interactions()[:10])
    assert await trainer.maybe_refit() is None
    await store.apply_interactions(clustered_interactions())
    version = await trainer.maybe_refit()
    assert version is not None
    served = await state.current()
    assert served is not None and served.version == version and served.watermark == 600
    assert registry.metadata(version)["users"] == 60


async def test_a_new_users_clicks_reach_recommendations_without_a_refit(parts):
    store, state, registry, trainer = parts
    await store.apply_interactions(clustered_interactions())
    version = await trainer.refit()
    service = RecommendationService(store, state, registry, PLAIN_SERVING)

    cold = await service.recommend("alice", 5)
    assert {i.reason for i in cold.items} == {reasons.POPULAR}

    applied = (await store.apply_interactions(fan_of_scifi("alice"))).applied
    await trainer.updater.on_applied(applied)
    recs = await service.recommend("alice", 5)
    assert recs.model_version == version  # folded in, not refitted
    assert [i.reason for i in recs.items] == [reasons.CF] * 5
    assert {i.item_id for i in recs.items} <= set(SCI_FI[6:])


async def test_serving_follows_a_promoted_version_and_fills_with_popular(parts, redis):
    store, state, registry, trainer = parts
    await store.apply_interactions(clustered_interactions())
    service = RecommendationService(store, state, registry, PLAIN_SERVING)
    v1 = await trainer.refit()
    assert (await service.recommend("a0", 3)).model_version == v1
    v2 = await trainer.refit()
    recs = await service.recommend("a0", 40)
    assert recs.model_version == v2 != v1
    # Refits do not pile up vectors: the replaced version's expire shortly, the served one's not.
    assert 0 < await redis.ttl(keys.user_vectors(v1)) <= keys.RETIRED_MODEL_TTL_S
    assert await redis.ttl(keys.user_vectors(v2)) == -1
    seen, _ = await store.users.serving_state("a0", 0)
    assert not seen & {i.item_id for i in recs.items}
    assert len(recs.items) == 30  # every unseen item, none repeated
    assert len({i.item_id for i in recs.items}) == 30


async def test_a_restarted_trainer_picks_up_the_served_version(parts, settings, redis):
    store, state, registry, trainer = parts
    await store.apply_interactions(clustered_interactions())
    version = await trainer.refit()
    fresh = Trainer(store, state, registry, settings)
    await fresh.sync()
    assert fresh.version == version
    assert await fresh.maybe_refit() is None  # nothing new since the fit


async def test_without_a_model_the_chain_uses_category_affinity_then_popularity(parts):
    store, state, registry, _ = parts
    await store.catalogue.upsert_items(
        [ItemMeta(i, i, 1, None, ("scifi",)) for i in SCI_FI]
        + [ItemMeta(i, i, 1, None, ("romance",)) for i in ROMANCE]
    )
    await store.apply_interactions(clustered_interactions())
    carol = [
        Interaction(f"carol-{i}", "carol", i, "purchase", 1_780_000_000_000) for i in ROMANCE[:2]
    ]
    await store.apply_interactions(carol)
    recs = await RecommendationService(store, state, registry, PLAIN_SERVING).recommend("carol", 25)
    liked = [i for i in recs.items if i.reason == reasons.affinity("romance")]
    assert len(liked) == 18 and {i.item_id for i in liked} == set(ROMANCE[2:])
    assert {i.reason for i in recs.items[18:]} == {reasons.POPULAR}  # then everything else


async def test_a_new_item_reaches_recommendations_before_the_next_refit(parts, redis):
    store, state, registry, trainer = parts
    await store.apply_interactions(clustered_interactions())
    version = await trainer.refit()
    new_item = [
        Interaction(f"a{u}-scifi-new", f"a{u}", "scifi-new", "purchase", 1_780_000_000_000 + u)
        for u in range(15)
    ]
    applied = (await store.apply_interactions(new_item)).applied
    await trainer.updater.on_applied(applied)
    await trainer.updater.fold_in_new_items()  # the worker's 1 s timer
    assert await redis.hexists(keys.item_vectors(version), "scifi-new")

    # Another process (an API replica) picks the item up from Redis, without a refit.
    api = RecommendationService(store, state, registry, PLAIN_SERVING)
    recs = await api.recommend("a20", 5)
    assert recs.model_version == version and "scifi-new" in [i.item_id for i in recs.items]
    assert (await state.current()).version == version


async def test_a_reader_reads_only_the_item_factors_written_since_it_last_looked(parts, redis):
    import base64

    import numpy as np

    from recommender.cf.served import ServedALS
    from recommender.cf.vectors import CFVectors

    store, state, registry, trainer = parts
    await store.apply_interactions(clustered_interactions())
    version = await trainer.maybe_refit()
    assert version is not None
    vectors = CFVectors(redis, state)
    reader = ServedALS(state, registry, vectors)
    f = registry.load(version).item_factors.shape[1]
    await vectors.write_item_vectors(version, {"new-a": np.ones(f, np.float32)})
    _, model = await reader.current()
    assert model is not None and model.knows("new-a")
    # Changed behind the order's back: a reader that read only what is new does not see it.
    zeros = base64.b64encode(np.zeros(f, np.float32).tobytes()).decode()
    await redis.hset(keys.item_vectors(version), "new-a", zeros)
    await vectors.write_item_vectors(version, {"new-b": np.full(f, 2.0, np.float32)})
    _, model = await reader.current()
    assert model is not None and model.knows("new-b")
    assert (model.item_vectors(["new-a"])["new-a"] > 0).all()  # as first read (unit length)
    # A version whose writes' order is not kept (written before it was) is read whole.
    await redis.delete(keys.item_vectors_order(version))
    await vectors.write_item_vectors(version, {"new-c": np.full(f, 3.0, np.float32)})
    _, model = await reader.current()
    assert model is not None and model.knows("new-c") and model.knows("new-b")
    assert not model.item_vectors(["new-a"])["new-a"].any()  # read again, as stored now


@pytest.mark.parametrize(("half_life_s", "taste"), [(0.0, ROMANCE), (7 * 86_400.0, SCI_FI)])
async def test_a_fold_in_follows_a_change_of_taste_with_a_half_life(
    redis, settings, half_life_s, taste
):
    """Ten romance purchases, then (a hundred days on) three sci-fi ones folded in: with equal
    weights the user still gets romance; with a week's half-life (`recency_half_life_s`), sci-fi."""
    s = settings.model_copy(update={"recency_half_life_s": half_life_s})
    store, state = FeatureStore(redis, s), ModelState(redis)
    registry = cf_registry(s.models_dir)
    trainer = Trainer(store, state, registry, s)
    day, t0 = 86_400_000, 1_700_000_000_000
    old = [Interaction(f"z{n}", "zoe", item, "purchase", t0 + n * day)
           for n, item in enumerate(ROMANCE[:10])]  # fmt: skip
    await store.apply_interactions(clustered_interactions() + old)
    assert await trainer.refit() is not None
    new = [Interaction(f"z-new{n}", "zoe", item, "purchase", t0 + (100 + n) * day)
           for n, item in enumerate(SCI_FI[:3])]  # fmt: skip
    await trainer.updater.on_applied((await store.apply_interactions(new)).applied)
    service = RecommendationService(store, state, registry, PLAIN_SERVING)
    recs = await service.recommend("zoe", 5)
    assert [i.reason for i in recs.items] == [reasons.CF] * 5
    assert {i.item_id for i in recs.items} <= set(taste)
    # Items' times are kept only while a half-life asks for them.
    kept = await redis.exists(keys.user_item_times(store.pseudonym("zoe")))
    assert kept == (half_life_s > 0)
