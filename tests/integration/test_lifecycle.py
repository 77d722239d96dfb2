"""The model lifecycle against a real Valkey: the quality gate, pinning, promote and rollback."""

from __future__ import annotations

import pytest

from models.registry import ModelRegistry
from recommender import keys
from recommender.feature_store import FeatureStore
from recommender.lifecycle import ModelLifecycle, NoSuchVersionError
from recommender.model_state import ModelState
from recommender.serving import RecommendationService
from recommender.training import Trainer
from recommender.types import Interaction
from tests.conftest import run_cli
from tests.factories import ROMANCE, SCI_FI, clustered_interactions

pytestmark = pytest.mark.integration


@pytest.fixture
async def parts(redis, settings):
    store = FeatureStore(redis, settings)
    await store.apply_interactions(clustered_interactions())
    state = ModelState(redis)
    registry = ModelRegistry(settings.models_dir)
    return store, state, registry, ModelLifecycle(store, state, registry)


def _more_of_the_same() -> list[Interaction]:
    """Two more items of their own cluster for every user, after everything else."""
    seen: dict[str, set[str]] = {}
    for e in clustered_interactions():
        seen.setdefault(e.user_id, set()).add(e.item_id)
    later = []
    for n, (user, items) in enumerate(sorted(seen.items())):
        cluster = SCI_FI if user.startswith("a") else ROMANCE
        for item in [i for i in cluster if i not in items][:2]:
            later.append(
                Interaction(f"{user}-{item}-later", user, item, "purchase", 1_750_000_000_000 + n)
            )
    return later


async def test_a_worse_refit_is_held_back_as_the_challenger(parts, redis, settings):
    store, state, registry, _ = parts
    good = Trainer(store, state, registry, settings)
    v1 = await good.refit()
    assert registry.metadata(v1)["status"] == "served"
    assert "holdout_ndcg@10" not in registry.metadata(v1)  # nothing served before: no gate
    await store.apply_interactions(_more_of_the_same())

    # Regularised into noise: the same data, a much worse model.
    worse = settings.model_copy(update={"als_regularization": 1e6, "als_iterations": 1})
    v2 = await Trainer(store, state, registry, worse).refit()
    meta = registry.metadata(v2)
    assert meta["status"].startswith("held: holdout NDCG@10")
    assert meta["holdout_ndcg@10"] < meta["served_holdout_ndcg@10"] - settings.quality_gate_margin
    assert (await state.current()).version == v1
    assert (await state.challenger())["version"] == v2
    assert (await store.stats())["models_held_back"] == 1
    assert not await redis.exists(keys.user_vectors(v2))  # held versions cost no memory

    # A refit as good as the served one passes.
    v3 = await good.refit()
    assert (await state.current()).version == v3
    meta = registry.metadata(v3)
    assert meta["gate_users"] == 60 and meta["holdout_ndcg@10"] > 0.1


async def test_pin_promote_rollback_unpin(parts, redis, settings):
    store, state, registry, life = parts
    trainer = Trainer(store, state, registry, settings)
    v1 = await trainer.refit()
    v2 = await trainer.refit()
    assert (await state.current()).version == v2

    await redis.delete(keys.user_vectors(v1))  # as after its retirement grace
    assert await life.rollback() == v1
    served = await state.current()
    assert served.version == v1 and served.pinned
    assert await redis.hlen(keys.user_vectors(v1)) == 60  # every user folded in again
    recs = await RecommendationService(store, state, registry).recommend("a0", 5)
    assert recs.model_version == v1 and recs.items[0].reason != "popular right now"

    v3 = await trainer.refit()  # pinned: kept, not served
    assert (await state.current()).version == v1
    assert registry.metadata(v3)["status"] == f"held: the served version {v1} is pinned"

    await life.promote(v3, pinned=False)
    assert (await state.current()).version == v3
    await life.promote(v2)
    await life.unpin()
    v4 = await trainer.refit()
    assert (await state.current()).version == v4

    with pytest.raises(NoSuchVersionError):
        await life.promote("19990101T000000-000000")


async def test_models_cli(parts, monkeypatch, capsys, settings):
    store, state, registry, _ = parts
    v1 = await Trainer(store, state, registry, settings).refit()
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert await run_cli(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"*  {v1}" in listed and "ndcg@10 -  served" in listed
    assert await run_cli(["models", "promote", v1]) == 0
    assert "pinned" in capsys.readouterr().out
    assert await run_cli(["models", "list"]) == 0
    assert f"*P {v1}" in capsys.readouterr().out
    assert await run_cli(["models", "rollback"]) == 2  # nothing earlier
    assert "no earlier served version" in capsys.readouterr().err


async def test_the_gate_ignores_items_folded_in_since_the_fit(parts, settings):
    """Items folded in after the fit were placed by the very interactions the gate holds out;
    judging the served model with them would hold back every refit."""
    store, state, registry, _ = parts
    trainer = Trainer(store, state, registry, settings)
    v1 = await trainer.refit()
    fans = [
        Interaction(f"a{u}-new", f"a{u}", "scifi-new", "purchase", 1_750_000_000_000 + u)
        for u in range(30)
    ]
    await trainer.on_applied((await store.apply_interactions(fans)).applied)
    await trainer.fold_in_new_items()
    assert trainer.version == v1 and (await state.current()).items_written == 1
    v2 = await trainer.refit()
    assert registry.metadata(v2)["status"] == "served", registry.metadata(v2)
