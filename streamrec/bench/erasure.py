"""`streamrec bench erasure`: what one user's erasure costs beside 10,000 and 1,000,000 other keys.

Erasure must cost the user's own data, not the keyspace's size (issue 24). Each size fills the
embedded Valkey with that many keys of other users (features, and fields in a served CF version's
vectors), gives `USERS` users a full set of data (features, profile, reviews, a vector and cached
candidates in the served version and one served before), and times `UserDataService.erase` of
each. The baseline, from the same run: one SCAN of the whole keyspace, which is what an erasure
did before (`CFVectors.forget` scanned every CF key; the review queue was read whole).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from recommender.cf.vectors import CFVectors
from recommender.lifecycle.state import ModelState
from recommender.monitoring.impressions import ImpressionStore
from recommender.privacy.crypto import UserDataCipher, master_cipher
from recommender.privacy.profiles import UserDataService
from recommender.privacy.reviews import ReviewStore
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from recommender.types import Interaction
from streamrec.bench.report import write
from streamrec.runtime import Runtime

SIZES = (10_000, 1_000_000)
#: Users erased (timed) per size.
USERS = 50
FILL_CHUNK = 10_000


async def _fill(redis: Any, n: int, versions: list[str]) -> None:
    """``n`` keys of other users: per-user hashes, and as many vector fields per version."""
    for start in range(0, n, FILL_CHUNK):
        pipe = redis.pipeline(transaction=False)
        for i in range(start, min(n, start + FILL_CHUNK)):
            pipe.hset(keys.user_items(f"other{i:08d}"), "item", 1.0)
        for version in versions:
            fields = {f"other{i:08d}": "1:AAAA" for i in range(start, min(n, start + FILL_CHUNK))}
            pipe.hset(keys.user_vectors(version), mapping=fields)
        await pipe.execute()


async def _one_size(settings: Settings, n: int) -> dict[str, float]:
    redis = redis_async(settings.redis_url or "")
    await redis.flushdb()
    store = FeatureStore(redis, settings)
    state = ModelState(redis)
    for version in ("v-old", "v-now"):
        await state.promote(version, 0)
    await _fill(redis, n, ["v-old", "v-now"])
    cipher = UserDataCipher(redis, master_cipher(settings.require_master_keys()))
    reviews = ReviewStore(redis, cipher, store.pseudonym_of, settings.user_ttl_s, train=True)
    impressions = ImpressionStore(redis, settings.attribution_window_s)
    service = UserDataService(redis, store, cipher, reviews, CFVectors(redis, state), [impressions])
    users = [f"erased-{u}" for u in range(USERS)]
    events = [
        Interaction(f"{u}-{i}", u, f"item{i}", "review", 1_000 + i, 5.0, "a review")
        for u in users
        for i in range(20)
    ]
    await reviews.record(events)
    await store.apply_interactions(events)
    for u in users:
        p = store.pseudonym(u)
        await service.put_profile(u, {"email": f"{u}@example.com"})
        for version in ("v-old", "v-now"):
            await redis.hset(keys.user_vectors(version), p, "1:AAAA")
            await redis.hset(keys.user_recs(version), p, "1|||")
    dbsize = int(await redis.dbsize())
    times = []
    for u in users:
        started = time.perf_counter()
        done = await service.erase(u)
        times.append((time.perf_counter() - started) * 1000)
        assert done.model_vectors_removed == 2, done
    started = time.perf_counter()
    async for _ in redis.scan_iter(count=1000):
        pass
    scan_ms = (time.perf_counter() - started) * 1000
    await redis.flushdb()
    await redis.aclose()
    return {
        "keys": dbsize,
        "erasure_ms_p50": statistics.median(times),
        "erasure_ms_max": max(times),
        "keyspace_scan_ms": scan_ms,
    }


def run_erasure(settings: Settings, json_path: Path | None = None) -> dict[str, Any]:
    print(f"erasure: {USERS} users erased beside {', '.join(f'{n:,}' for n in SIZES)} keys")
    rt = Runtime(settings, api_port=0)
    rt.start(worker=False, api=False)
    try:
        sizes = {n: asyncio.run(_one_size(rt.settings, n)) for n in SIZES}
    finally:
        rt.stop()
    small, large = sizes[SIZES[0]], sizes[SIZES[-1]]
    results: dict[str, Any] = {
        "users_erased_per_size": USERS,
        "erasure_ms_p50_10k": round(small["erasure_ms_p50"], 3),
        "erasure_ms_p50_1m": round(large["erasure_ms_p50"], 3),
        "erasure_ms_max_1m": round(large["erasure_ms_max"], 3),
        "erasure_growth_1m_vs_10k": round(large["erasure_ms_p50"] / small["erasure_ms_p50"], 2),
        "baseline_keyspace_scan_ms_10k": round(small["keyspace_scan_ms"], 1),
        "baseline_keyspace_scan_ms_1m": round(large["keyspace_scan_ms"], 1),
        "sizes": {str(n): v for n, v in sizes.items()},
    }
    return write(json_path, "erasure", results)
