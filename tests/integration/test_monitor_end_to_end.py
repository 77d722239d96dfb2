"""The monitor on the running system: a simulated population answers the API's lists, an
operator serves a model fitted on shuffled data, and the monitor rolls it back on the evidence
of the metrics topic alone."""

import asyncio
import time

import pytest

from recommender.lifecycle.state import ModelState
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.keys import CF
from streamrec.bench.monitor import (
    promote_shuffled,
    served_version,
    simulated,
    simulation_settings,
)

pytestmark = pytest.mark.integration


async def _decisions(settings: Settings) -> list[tuple[str, str, str]]:
    redis = redis_async(settings.infra.redis_url)
    try:
        return [(d.action, d.version, d.by) for d in await ModelState(redis, CF).decisions()]
    finally:
        await redis.aclose()


def test_the_monitor_rolls_back_a_bad_model_an_operator_served(settings: Settings, redis):
    with simulated(simulation_settings(settings, monitor_min_lists=100), 120) as run:
        rt, sim, decisions, good = run.rt, run.sim, run.decisions, run.good
        time.sleep(8)  # the good model's baseline
        bad = asyncio.run(promote_shuffled(rt.settings))
        promoted_at = time.time()
        deadline = promoted_at + 60
        while time.time() < deadline and decisions.first("rollback", promoted_at) is None:
            time.sleep(0.2)
        found = decisions.first("rollback", promoted_at)
        assert found is not None, "no rollback within 60 s"
        _, decision = found
        assert decision.data.version == good != bad
        assert asyncio.run(served_version(rt.settings)) == good
        # The lifecycle shows it as `streamrec models list` does, by the monitor.
        log = asyncio.run(_decisions(rt.settings))
        assert ("rolled back", good, "monitor") in log
        assert ("served", bad, "operator") in log
        # The served model's lists were hit far more often than the bad one's.
        lists = sim.between(promoted_at - 8, time.time())
        rate = {
            v: sum(x.clicked for x in lists if x.version == v)
            / max(1, sum(x.version == v for x in lists))
            for v in (good, bad)
        }
        assert rate[good] > 2 * rate[bad]
