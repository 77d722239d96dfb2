"""The sequential family end to end: trained from the stream by the trainer, published through
the lifecycle, blended into a user's list, and answering a visitor's session from items alone."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from models.next_item import NextItemClassifier
from models.sequential import SequentialModel
from recommender.cf.lifecycle import lifecycle_for
from recommender.cf.refits import Trainer
from recommender.cf.updater import CFUpdater
from recommender.cf.vectors import CFVectors
from recommender.content.trainer import ContentTrainer
from recommender.lifecycle.families import SEQUENTIAL, cf_registry, model_registry
from recommender.lifecycle.gates import Gate
from recommender.lifecycle.served import ServedModelCache
from recommender.lifecycle.state import ModelState
from recommender.privacy.crypto import UserDataCipher, master_cipher
from recommender.privacy.reviews import ReviewStore
from recommender.serving import reasons
from recommender.serving.config import ServingConfig
from recommender.serving.service import RecommendationService
from recommender.store.features import FeatureStore
from recommender.store.users import ActiveCursor
from recommender.types import Interaction, ItemMeta
from tests.conftest import make_settings, serve_api
from tests.factories import ROMANCE, SCI_FI, clustered_interactions

pytestmark = pytest.mark.integration

#: The family's default weight (the tests' settings turn it off: `make_settings`).
ON = 0.5


@pytest.fixture
def settings(infra, tmp_path):
    return make_settings(
        tmp_path, kafka_url=infra.kafka_url, redis_url=infra.redis_url, sequential_weight=ON
    )


def _in_order(items: list[str], windows: int = 60) -> list[list[str]]:
    """Windows of a catalogue watched in one order: item n is followed by item n + 1."""
    return [[items[(s + n) % len(items)] for n in range(8)] for s in range(windows)]


async def _fitted(redis, settings) -> FeatureStore:
    store = FeatureStore(redis, settings)
    await store.catalogue.upsert_items(
        [ItemMeta(i, f"Film {i}", 1, None, ("scifi",)) for i in SCI_FI]
        + [ItemMeta(i, f"Film {i}", 1, None, ("romance",)) for i in ROMANCE]
    )
    await store.apply_interactions(clustered_interactions())
    await Trainer(store, ModelState(redis), cf_registry(settings.models_dir), settings).refit()
    return store


async def _publish_sequential(redis, settings, backwards: bool = False) -> str:
    """A version trained on both catalogues watched in order (or ``backwards``), served
    through the lifecycle."""
    model = NextItemClassifier(SequentialModel(dim=16, max_len=8, blocks=1, lr=1e-2))
    windows = _in_order(SCI_FI) + _in_order(ROMANCE)
    if backwards:
        windows = [w[::-1] for w in windows]
    model.fit([w[:-1] for w in windows], [w[-1] for w in windows], epochs=30)
    version, served = await lifecycle_for(SEQUENTIAL, redis, settings).publish(
        model, {}, Gate(note="test")
    )
    assert served
    return version


async def test_a_session_is_answered_from_the_items_it_viewed(settings, redis):
    await _fitted(redis, settings)
    await _publish_sequential(redis, settings)
    read = {"X-API-Key": await _read_key(redis)}
    async with serve_api(settings) as api:

        async def session(items: str, **params: Any) -> dict[str, Any]:
            params["items"] = items
            resp = await api.get("/v1/sessions/recommendations", params=params, headers=read)
            assert resp.status_code == 200, resp.text
            found: dict[str, Any] = resp.json()
            return found

        found = await session("scifi-3,scifi-4,scifi-5", k=5)
        ids = [i["item_id"] for i in found["items"]]
        assert ids[0] == "scifi-6"  # what comes next in the order the model learned
        assert set(ids) <= set(SCI_FI) - {"scifi-3", "scifi-4", "scifi-5"}
        assert {i["reason"] for i in found["items"]} == {reasons.SESSION}
        assert found["model_version"]
        # The same filters as a user's list.
        romance = await session("scifi-3,scifi-4", k=3, category="romance")
        assert {i["item_id"] for i in romance["items"]} <= set(ROMANCE)
        skipped = await session("scifi-3,scifi-4,scifi-5", k=5, exclude=["scifi-6"])
        assert "scifi-6" not in {i["item_id"] for i in skipped["items"]}
        # Items no model knows: popular items.
        unknown = await session("never-seen", k=3)
        assert [i["reason"] for i in unknown["items"]] == [reasons.POPULAR] * 3
        for bad in ("", "a|b", "a b"):
            resp = await api.get(
                "/v1/sessions/recommendations", params={"items": bad}, headers=read
            )
            assert resp.status_code == 422, bad
        # Only the newest 50 are read: an item before them is not one the session viewed.
        fifty = await session(",".join(["scifi-6", *(f"x{n}" for n in range(48)), "scifi-5"]))
        assert "scifi-6" not in {i["item_id"] for i in fifty["items"]}
        more = await session(",".join(["scifi-6", *(f"x{n}" for n in range(49)), "scifi-5"]))
        assert more["items"][0]["item_id"] == "scifi-6"

        # A promotion reaches the API without a restart: a version that learned the other
        # order serves once the pointer was read (`api_model_check_s`) and the version loaded,
        # beside the lists, which meanwhile keep the last one.
        async def top(viewed: str) -> int:
            return int((await session(viewed, k=1))["items"][0]["item_id"].split("-")[1])

        assert await top("scifi-6,scifi-5,scifi-4") > 6  # what came after them
        await _publish_sequential(redis, settings, backwards=True)
        deadline = asyncio.get_running_loop().time() + 10
        while await top("scifi-6,scifi-5,scifi-4") > 6:
            assert asyncio.get_running_loop().time() < deadline, "the new version never served"
            await asyncio.sleep(0.05)
        assert await top("scifi-6,scifi-5,scifi-4") < 4  # what came before them


async def _read_key(redis) -> str:
    from recommender.privacy.access import ApiKeyStore

    return (await ApiKeyStore(redis).create({"read"}, "sessions")).token


async def test_a_users_list_follows_their_latest_items_through_the_sequence(infra, tmp_path, redis):
    """Two users with the same history in opposite orders: the sequential family ranks first,
    for each, the item after their own latest one (in candidates a refit computed ahead, and in
    those serving computes after the users' next events)."""
    settings = make_settings(
        tmp_path, kafka_url=infra.kafka_url, redis_url=infra.redis_url, sequential_weight=5.0
    )
    store = await _fitted(redis, settings)
    forward = SCI_FI[2:7]
    events = [
        Interaction(f"{u}-{n}", u, item, "purchase", 1_780_000_000_000 + n)
        for u, items in (("fwd", forward), ("back", forward[::-1]))
        for n, item in enumerate(items)
    ]
    await store.apply_interactions(events)
    await _publish_sequential(redis, settings)
    registry = model_registry(settings).family(SEQUENTIAL)
    served = ServedModelCache(ModelState(redis, SEQUENTIAL), registry)
    config = replace(ServingConfig.of(settings), pointer_check_s=0, title_ttl_s=0)
    service = RecommendationService(
        store, ModelState(redis), cf_registry(settings.models_dir), config, served
    )
    await Trainer(store, ModelState(redis), cf_registry(settings.models_dir), settings).refit()
    fwd = await service.recommend("fwd", 3)
    back = await service.recommend("back", 3)
    assert (fwd.items[0].item_id, back.items[0].item_id) == ("scifi-7", "scifi-1"), fwd.items
    # Their next event: the worker folds them in, serving computes their candidates again.
    state = ModelState(redis)
    updater = CFUpdater(store, state, cf_registry(settings.models_dir), CFVectors(redis, state))
    step = [Interaction("fwd-next", "fwd", "scifi-7", "purchase", 1_780_000_000_100)]
    await store.apply_interactions(step)
    await updater.sync()
    await updater.on_applied(step)
    assert (await service.recommend("fwd", 3)).items[0].item_id == "scifi-8"


async def test_the_trainer_learns_the_order_from_the_stream_and_forgets_the_erased(
    infra, tmp_path, redis
):
    s = make_settings(
        tmp_path,
        kafka_url=infra.kafka_url,
        redis_url=infra.redis_url,
        content_min_examples=100,
        content_publish_every=100,
        sequential_first_fit_epochs=30,
        sequential_weight=ON,
    )
    store = FeatureStore(redis, s)
    cipher = UserDataCipher(redis, master_cipher(s.require_master_keys()))
    trainer = ContentTrainer(redis, s, ReviewStore(redis, cipher, store.pseudonym_of, 3600))
    events = [
        Interaction(f"u{u}-{n}", f"u{u}", item, "view", 1_780_000_000_000 + n)
        for u, window in enumerate(_in_order(SCI_FI, 40))
        for n, item in enumerate(window)
    ]
    await store.apply_interactions(events)
    for _ in range(5):
        await trainer.step(block_ms=10)
    served, model = await trainer.served[SEQUENTIAL].current()
    assert served is not None and model is not None
    ids, _ = model.model.recommend({}, 1, recent=["scifi-4", "scifi-3", "scifi-2"])
    assert list(ids) == ["scifi-5"]
    learner = trainer.learners[SEQUENTIAL]
    assert learner.owners() == {store.pseudonym_of(e) for e in events}
    # An erased user's examples leave the learner before its next version.
    erased = store.pseudonym("u0")
    await store.users.leave_tombstone(erased, 1_780_000_001_000, 3600)
    assert await trainer.forget_erased() > 0
    assert erased not in learner.owners() and len(learner.owners()) == 39


async def test_the_trainer_reads_every_active_user_once_however_many_share_a_batch(settings, redis):
    """A batch's users share its time in the active-users index: the cursor pages through
    them, and on to a later batch's, each user once."""
    store = FeatureStore(redis, settings)
    first = [Interaction(f"e{u}", f"v{u}", "i1", "view", 1_780_000_000_000) for u in range(10)]
    await store.apply_interactions(first)
    await asyncio.sleep(0.01)  # a later batch: applied at a later millisecond
    await store.apply_interactions([Interaction("late", "w", "i1", "view", 1_780_000_000_001)])
    cursor, seen = ActiveCursor(), []
    for _ in range(6):
        seen += [p for p, _ in await store.users.active_since(cursor, 3)]
    expected = {store.pseudonym(f"v{u}") for u in range(10)} | {store.pseudonym("w")}
    assert sorted(seen) == sorted(expected) and seen[-1] == store.pseudonym("w")
