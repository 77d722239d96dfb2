"""The model lifecycle against a real Valkey: the quality gate, pinning, promote and rollback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from models.als import ALSModel
from recommender.cf.lifecycle import lifecycle_for
from recommender.cf.refits import Trainer
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.publishing import NoSuchVersionError
from recommender.lifecycle.state import ModelState
from recommender.serving.service import RecommendationService
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from recommender.types import Interaction
from tests.conftest import run_cli
from tests.factories import PLAIN_SERVING, ROMANCE, SCI_FI, clustered_interactions

pytestmark = pytest.mark.integration


@pytest.fixture
async def parts(redis, settings):
    store = FeatureStore(redis, settings)
    await store.apply_interactions(clustered_interactions())
    state = ModelState(redis)
    registry = cf_registry(settings.models_dir)
    return store, state, registry, lifecycle_for("cf", redis, settings)


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


class _EventsArriveFirst(ThreadPoolExecutor):
    """Runs a refit's job in a thread once ``events`` were applied: what arrives between the
    refit's decision and its reads of the data, in the fit process."""

    def __init__(self, settings: Settings, events: list[Interaction]) -> None:
        super().__init__(max_workers=1)
        self._settings, self._events = settings, events

    async def _arrive(self) -> None:
        client = redis_async(self._settings.redis_url or "")
        await FeatureStore(client, self._settings).apply_interactions(self._events)
        await client.aclose()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def arrive_then_run() -> Any:
            asyncio.run(self._arrive())
            return fn(*args, **kwargs)

        return super().submit(arrive_then_run)


async def test_a_refit_records_the_events_it_read_not_those_there_when_it_started(parts, settings):
    """Events applied after the refit started but before its job read the data are in the
    fit: the version's clock covers them (the next gate must not hold them out as unseen), and
    its watermark counts them."""
    store, state, registry, _ = parts
    later = _more_of_the_same()
    with _EventsArriveFirst(settings, later) as pool:
        version = await Trainer(store, state, registry, settings, fit_executor=pool).refit()
    meta = registry.metadata(version)
    assert meta["clock"] == max(e.ts for e in later)
    assert meta["watermark"] == len(clustered_interactions()) + len(later)


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
    assert (await store.stats.all())["models_held_back"] == 1
    assert not await redis.exists(keys.user_vectors(v2))  # held versions cost no memory
    assert not await redis.exists(keys.user_recs(v2))
    assert not [k async for k in redis.scan_iter(match=keys.pending_recs("*"))]

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
    recs = await RecommendationService(store, state, registry, PLAIN_SERVING).recommend("a0", 5)
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
    # Not "ndcg@10 -" and "served" on every version: why there was no gate, and since when.
    assert f"*  {v1}" in listed and "no gate: nothing served before" in listed
    assert "serving since" in listed and "served" in listed.split("recent decisions")[1]
    assert await run_cli(["models", "list", "--quiet"]) == 0
    assert capsys.readouterr().out.split() == [v1]
    assert await run_cli(["models", "list", "--family", "nope"]) == 2
    assert "no model family 'nope'" in capsys.readouterr().err
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
    await trainer.updater.on_applied((await store.apply_interactions(fans)).applied)
    await trainer.updater.fold_in_new_items()
    assert trainer.version == v1 and (await state.current()).items_written == 1
    v2 = await trainer.refit()
    assert registry.metadata(v2)["status"] == "served", registry.metadata(v2)


async def test_rollback_walks_back_through_the_history(parts, redis, settings):
    """Rolling back twice used to alternate between two versions."""
    store, state, registry, life = parts
    trainer = Trainer(store, state, registry, settings)
    v1, v2, v3 = [await trainer.refit() for _ in range(3)]
    assert (await state.current()).version == v3
    assert await life.rollback() == v2
    assert await life.rollback() == v1
    with pytest.raises(NoSuchVersionError):
        await life.rollback()
    rows = {r.version: r for r in await life.versions()}
    assert rows[v1].served and rows[v1].pinned
    assert rows[v3].status_text().startswith("served ") and " to " in rows[v3].status_text()
    assert [d.action for d in await life.decisions(3)] == ["rolled back", "rolled back", "served"]


async def test_unpin_serves_the_best_version_the_pin_held_back_at_once(parts, redis, settings):
    """After `unpin`, a weak pinned model kept serving while a better held-back challenger
    waited for new traffic."""
    store, state, registry, life = parts
    weak_settings = settings.model_copy(update={"als_regularization": 1e6, "als_iterations": 1})
    weak = await Trainer(store, state, registry, weak_settings).refit()
    await life.promote(weak)  # an operator pins the weak one
    await store.apply_interactions(_more_of_the_same())
    good = await Trainer(store, state, registry, settings).refit()
    meta = registry.metadata(good)
    assert meta["status"] == f"held: the served version {weak} is pinned"
    assert meta["gate_against"] == weak and meta["gate_passed"] is True
    assert (await state.current()).version == weak

    assert await life.unpin() == good
    served = await state.current()
    assert served.version == good and not served.pinned
    row = {r.version: r for r in await life.versions()}[weak]
    assert row.status_text().startswith("served ")
    # Nothing better waits now: unpinning again changes nothing.
    assert await life.unpin() is None


async def test_promoting_one_family_leaves_the_other_serving(parts, redis, settings):
    from models.baselines import PopularityModel
    from models.registry import ModelRegistry as Registry
    from recommender.lifecycle.served import ServedModelCache
    from tests.factories import clustered_matrix

    store, state, registry, _ = parts
    v_cf = await Trainer(store, state, registry, settings).refit()
    both = Registry(settings.models_dir, {"cf": ALSModel, "pop": PopularityModel})
    pop = PopularityModel()
    pop.fit(clustered_matrix())
    v_pop = both.family("pop").save(pop, {"watermark": 600})
    pop_state = ModelState(redis, "pop")
    await pop_state.promote(v_pop, 600, by="operator")
    served, model = await ServedModelCache(pop_state, both.family("pop")).current()
    assert served is not None and served.version == v_pop and isinstance(model, PopularityModel)
    assert (await state.current()).version == v_cf  # cf untouched
    assert await state.history() == [v_cf] and await pop_state.history() == [v_pop]


async def test_a_damaged_served_artifact_falls_back_to_the_last_good_version(
    parts, redis, settings
):
    """On main a truncated `.npz` raised BadZipFile on every request (500s) and in every refit;
    only an operator's rollback recovered."""
    from tests.conftest import serve_api

    store, state, registry, _ = parts
    trainer = Trainer(store, state, registry, settings)
    v1, v2 = await trainer.refit(), await trainer.refit()
    assert registry.metadata(v2)["artifact_sha256"]
    path = registry.artifact(v2)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # Another process (an API replica, a worker starting) meets the damaged served version.
    service = RecommendationService(store, state, registry, PLAIN_SERVING)
    recs = await service.recommend("a0", 5)
    assert len(recs.items) == 5 and recs.model_version is None  # popular items, not a 500
    async with serve_api(settings) as api:
        from recommender.privacy.access import ApiKeyStore

        token = (await ApiKeyStore(redis).create({"read"}, "r")).token
        resp = await api.get("/v1/users/a0/recommendations", headers={"X-API-Key": token})
        assert resp.status_code == 200
    # The worker's leader serves the last good version again, and says why.
    leader = Trainer(store, state, registry, settings)
    await leader.maybe_refit()
    served = await state.current()
    assert served is not None and served.version == v1
    [decision, *_] = await state.decisions(1)
    assert decision.action == "rolled back" and "cannot be read" in decision.reason
    assert (await store.stats.all())["model_fallbacks"] == 1
    recs = await RecommendationService(store, state, registry, PLAIN_SERVING).recommend("a0", 5)
    assert recs.model_version == v1


async def test_versions_on_disk_are_bounded_and_the_served_ones_kept(parts, settings):
    from tests.conftest import make_settings

    store, state, registry, _ = parts
    few = make_settings(settings.data_dir.parent, **{**settings.model_dump(), "models_kept": 2})
    trainer = Trainer(store, state, registry, few)
    made = [await trainer.refit() for _ in range(5)]
    assert (await state.current()).version == made[-1]
    # Pruned as each is saved, before it serves: the two newest and the two served before.
    assert set(registry.versions()) == set(made[-3:])
