"""Drift the system recovers from: once the monitor detects one, users are folded in (by the
worker and by the refit it asks for) from their latest items, so that a list follows a change of
taste from the user's first event after it."""

from __future__ import annotations

import pytest

from recommender.cf.refits import Trainer
from recommender.cf.updater import CFUpdater
from recommender.cf.vectors import CFVectors
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.monitoring.metrics import MetricsWindow
from recommender.monitoring.monitor import Action
from recommender.serving.service import RecommendationService
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import Interaction
from streams.monitor_loop import MonitorLoop
from tests.factories import PLAIN_SERVING, ROMANCE, SCI_FI, clustered_interactions

pytestmark = pytest.mark.integration

NOW = 1_780_000_000_000


def _switch() -> list[Interaction]:
    """Ten romance films a day ago, then two sci-fi ones in the last ten seconds."""
    old = [
        Interaction(f"c-{i}", "carol", item, "purchase", NOW - 86_400_000 + i)
        for i, item in enumerate(ROMANCE[:10])
    ]
    new = [
        Interaction(f"c-n{i}", "carol", item, "purchase", NOW - 10_000 + i * 5000)
        for i, item in enumerate(SCI_FI[:2])
    ]
    return old + new


async def _share_of_scifi(service: RecommendationService) -> float:
    recs = await service.recommend("carol", 10)
    return sum(r.item_id in set(SCI_FI) for r in recs.items) / len(recs.items)


async def test_after_a_drift_a_user_is_folded_in_from_their_latest_items(settings, redis):
    store = FeatureStore(redis, settings)
    state = ModelState(redis)
    registry = cf_registry(settings.models_dir)
    trainer = Trainer(store, state, registry, settings)
    await store.apply_interactions(clustered_interactions())
    await trainer.refit()
    await store.apply_interactions(_switch())
    updater = CFUpdater(store, state, registry, CFVectors(redis, state))
    service = RecommendationService(store, state, registry, PLAIN_SERVING)

    await updater.sync()
    await updater.update_users([store.pseudonym("carol")])
    assert await _share_of_scifi(service) < 0.5  # her whole history: a romance fan

    # The monitor detects a drift: for a while, users follow their last 30 seconds.
    monitor = MonitorLoop(
        settings,
        trainer,
        state,
        trainer.lifecycle,
        MetricsWindow(),
        lambda: True,
        _no_send,
        "/t",
    )
    await monitor._act(Action("refit", "v", "the hit rate fell"))
    assert float(await redis.get(keys.DRIFT_WINDOW)) == settings.drift_window_s
    assert 0 < await redis.pttl(keys.DRIFT_WINDOW) <= settings.drift_hold_s * 1000
    await updater.update_users([store.pseudonym("carol")])
    assert await _share_of_scifi(service) >= 0.8

    # The refit the monitor asked for serves her the same: the users from their latest items.
    await trainer.refit()
    await updater.sync()
    assert await _share_of_scifi(service) >= 0.8

    # Once the window expires, her whole history counts again.
    await redis.delete(keys.DRIFT_WINDOW)
    fresh = FeatureStore(redis, settings)
    later = CFUpdater(fresh, state, registry, CFVectors(redis, state))
    await later.sync()
    await later.update_users([store.pseudonym("carol")])
    assert await _share_of_scifi(service) < 0.5


async def _no_send(key: bytes, value: bytes) -> None:
    return None
