"""streamrec's feature store on a 3-primary Valkey Cluster (a replica each), through redis-py's
cluster client: the same features as one node, applied once, with no cross-slot call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pandas as pd
import pytest
from redis.crc import key_slot

from recommender.store import keys, scripts
from recommender.store.cluster import ClusterApply, by_primary
from recommender.store.connections import redis_async, redis_sync
from recommender.store.features import FeatureStore
from recommender.store.verification import compare, expected_features
from recommender.types import Interaction, ItemMeta
from tests.factories import ROMANCE, SCI_FI, clustered_interactions

pytestmark = pytest.mark.integration


@pytest.fixture
async def on_cluster(cluster: str, settings) -> AsyncIterator[tuple[FeatureStore, Any]]:
    s = settings.model_copy(update={"redis_url": cluster, "redis_cluster_shards": 8})
    client: Any = redis_async(cluster)
    await client.flushall()
    try:
        yield FeatureStore(client, s), client
    finally:
        await client.aclose()


def _expected(store: FeatureStore, settings, events: list[Interaction]):
    frame = pd.DataFrame(
        [
            {
                "event_id": e.event_id,
                "user_id": e.user_id,
                "item_id": e.item_id,
                "type": e.type,
                "value": e.value,
            }
            for e in events
        ]
    )
    return expected_features(frame, settings, store.pseudonym)


async def test_a_batch_and_its_replay_make_the_features_one_node_makes(on_cluster, settings):
    store, _ = on_cluster
    await store.catalogue.upsert_items([ItemMeta(i, i, 1, None, ("scifi",)) for i in SCI_FI])
    events = clustered_interactions()
    first = await store.apply_interactions(events[:400])
    again = await store.apply_interactions(events)  # the first 400 replayed among the rest
    assert len(first.applied) == 400 and len(again.applied) == len(events) - 400
    assert compare(await store.snapshot(), _expected(store, settings, events)).equal

    stats = await store.stats.all()
    assert stats["events_applied"] == len(events) and stats["duplicates_suppressed"] == 400
    assert await store.popularity.clock() == max(e.ts for e in events)
    top = await store.popularity.popular(3)
    assert [i for i, _ in top] == [
        i
        for i, _ in sorted(
            _expected(store, settings, events).popular.items(), key=lambda kv: (-kv[1], kv[0])
        )[:3]
    ]
    assert len(await store.users.active()) == 60
    assert (await store.stats.counts())[0] == 60
    assert await store.popularity.popular(5, category="scifi")
    # Every event is within 7 days of the stream clock: the window holds them all.
    assert await store.popularity.popular_in("7d", 5) == await store.popularity.popular(5)
    # A user's categories followed their items' (read from other slots, passed in).
    assert set(await store.users.category_affinity("a0")) == {"scifi"}


async def test_a_worker_killed_between_the_users_side_and_the_shards_loses_nothing(
    on_cluster, settings, monkeypatch
):
    store, _ = on_cluster
    events = clustered_interactions()[:200]

    async def killed(*args: object) -> None:
        raise SystemExit("killed after the users' side")

    with monkeypatch.context() as m:
        m.setattr(ClusterApply, "_count", killed)
        with pytest.raises(SystemExit):
            await store.apply_interactions(events)
    replay = await store.apply_interactions(events)  # the redelivery after the restart
    assert replay.applied == []  # the users' side was done ...
    assert compare(
        await store.snapshot(), _expected(store, settings, events)
    ).equal  # ... and now all
    assert (await store.stats.all())["events_applied"] == 200


async def test_every_call_stays_in_one_slot_and_the_shards_share_the_writes(on_cluster):
    store, client = on_cluster
    events = [Interaction(f"e{n}", f"u{n % 97}", ROMANCE[n % len(ROMANCE)], "view", 1_000 + n)
              for n in range(2_000)]  # fmt: skip
    result = await store.apply_interactions(events)  # a CROSSSLOT error would raise here
    assert len(result.applied) == 2_000
    names = [str(k) async for k in client.scan_iter(match="items:popular:*", count=1000)]
    assert 1 < len({key_slot(n.encode()) for n in names}) == len(names)
    p = store.pseudonym("u1")
    mine = [keys.user_items(p), keys.user_recent(p), keys.user_counts(p), keys.erased(p)]
    assert len({key_slot(k.encode()) for k in mine}) == 1


async def test_a_call_per_primary_does_its_slots_and_sends_what_it_could_not_one_by_one(
    on_cluster, monkeypatch, caplog
):
    store, client = on_cluster
    items = [f"item-{n}" for n in range(60)]
    await store.catalogue.upsert_items([ItemMeta(i, i, 1, None, ("scifi",)) for i in items[::2]])
    entries = [(keys.item_users(i), (keys.item_users(i), f"p{n}")) for n, i in enumerate(items)]
    assert len({client.get_node_from_key(k).name for k, _ in entries}) == 3
    assert await by_primary(client, scripts.NODE_PFADD_LUA, entries) == [1] * len(items)
    assert [await store.catalogue.distinct_users(i) for i in items] == [1] * len(items)
    metas = [(keys.item_meta(i), [keys.item_meta(i)]) for i in items]
    read = await by_primary(client, scripts.NODE_HGET_LUA, metas, ["categories"])
    assert [bool(c) for c in read] == [n % 2 == 0 for n in range(len(items))]

    # A map of the slots gone stale (a slot moved): the node refuses the keys it does not serve,
    # and their entries go one call each, routed by the cluster client: the same answers.
    wrong = client.get_node_from_key(entries[0][0])
    right = client.get_node_from_key
    monkeypatch.setattr(client, "get_node_from_key", lambda key: wrong)
    with caplog.at_level("INFO", logger="recommender.store.cluster"):
        again = await by_primary(client, scripts.NODE_HGET_LUA, metas, ["categories"])
    assert "sent entry by entry" in caplog.text
    assert again == read
    monkeypatch.setattr(client, "get_node_from_key", right)
    # The cluster's apply sends such commands one by one: the distinct users are all counted.
    events = [Interaction(f"e{n}", f"u{n}", items[n % 60], "view", 1_000 + n) for n in range(120)]
    monkeypatch.setattr(client, "get_node_from_key", lambda key: wrong)
    assert len((await store.apply_interactions(events)).applied) == 120
    monkeypatch.setattr(client, "get_node_from_key", right)
    assert [await store.catalogue.distinct_users(i) for i in items] == [3] * len(items)


async def test_new_items_factors_spread_over_buckets_and_read_back_whole_or_since(on_cluster):
    import numpy as np

    from recommender.cf.vectors import CFVectors
    from recommender.lifecycle.state import ModelState

    _, client = on_cluster
    vectors = CFVectors(client, ModelState(client))
    first = {f"new-{n}": np.full(4, float(n), np.float32) for n in range(40)}
    then = {"new-0": np.full(4, 9.0, np.float32), "new-40": np.ones(4, np.float32)}
    await vectors.write_item_vectors("v1", first)
    await vectors.write_item_vectors("v1", then)
    everything = await vectors.item_vectors("v1")
    assert everything is not None and len(everything) == 41
    assert everything["new-0"][0] == 9.0 and everything["new-7"][0] == 7.0
    since = await vectors.item_vectors("v1", 40, 42)
    assert since is not None and sorted(since) == ["new-0", "new-40"]
    # The factors are in the buckets' slots; the family's slot keeps only their order.
    held = {str(k) async for k in client.scan_iter(match="model:cf:v1:items:*", count=1000)}
    assert len({key_slot(k.encode()) for k in held}) > 30
    assert not await client.exists(keys.item_vectors("v1"))
    assert await client.llen(keys.item_vectors_order("v1")) == 42


async def test_serving_reads_users_of_many_buckets_as_one_node_would(on_cluster, monkeypatch):
    import numpy as np

    from recommender.cf.vectors import CFVectors
    from recommender.lifecycle.state import ModelState

    _, client = on_cluster
    vectors = CFVectors(client, ModelState(client))
    users = [keys.pseudonymize(b"k", f"u{n}") for n in range(30)]
    assert len({keys.vector_bucket(p, True) for p in users}) > 20
    await vectors.write_user_vectors(
        "v1", {p: np.full(4, n, np.float32) for n, p in enumerate(users)}, dict.fromkeys(users, 7)
    )

    async def read_all() -> list[tuple[object, object]]:
        reads = [await vectors.serving_read("v1", p, 5, held) for p in users for held in (None, 7)]
        return [(r.vector, r.state) for r in reads]

    due: tuple[set[str], list[str]] = (set(), [])  # no candidates: the user's state comes along
    expected: list[tuple[object, object]] = []
    for n in range(30):
        expected += [(f"7:{_b64(n)}", due), ("=", None)]
    assert await read_all() == expected
    # A map of the slots gone stale: each primary's call fails, and the buckets are read one
    # call each, with the same answers.
    wrong = client.get_node_from_key(keys.user_vectors("v1", keys.vector_bucket(users[0], True)))
    monkeypatch.setattr(client, "get_node_from_key", lambda key: wrong)
    assert await read_all() == expected


async def test_served_lists_written_per_primary_are_found_and_never_doubled(
    on_cluster, monkeypatch
):
    import time

    from recommender.monitoring.impressions import Impression, ImpressionStore

    _, client = on_cluster
    store = ImpressionStore(client, 3600)
    users = [keys.pseudonymize(b"k", f"u{n}") for n in range(12)]
    now = int(time.time() * 1000)
    lists = [Impression(f"r{n}", p, ("a", f"i{n}"), "v1", "b", now) for n, p in enumerate(users)]

    async def record_twice() -> None:
        for imp in lists:
            store.record(imp)
        await store.flush()
        for imp in lists:  # sent again (a flush retried after a call failed half done)
            store.record(imp)
        await store.flush()

    await record_twice()
    assert [await client.llen(keys.user_lists(p)) for p in users] == [1] * 12
    found = await store.served_lists([(p, f"r{n}", f"i{n}") for n, p in enumerate(users)])
    assert [f.recommendation_id if f else None for f in found] == [f"r{n}" for n in range(12)]
    # A stale map of the slots: the users are written one call each, still once.
    wrong = client.get_node_from_key(keys.user_base(users[0]))
    monkeypatch.setattr(client, "get_node_from_key", lambda key: wrong)
    lists = [Impression(f"s{n}", p, ("b",), "v1", "b", now) for n, p in enumerate(users)]
    await record_twice()
    assert [await client.llen(keys.user_lists(p)) for p in users] == [2] * 12


def _b64(n: int) -> str:
    import base64

    import numpy as np

    return base64.b64encode(np.full(4, n, np.float32).tobytes()).decode()


def test_the_embedded_fleet_serves_what_it_learns(tmp_path):
    """`streamrec up --cluster`: a 3-primary cluster, 6 partitions, two workers, two API
    processes, models in S3: events in through the API, applied once across both workers, a
    model fitted and read from the bucket, a user's recommendations, popular items, an erasure."""
    import httpx

    from recommender.privacy.access import SCOPES
    from recommender.settings import Settings
    from streamrec.runtime import Runtime
    from tests.factories import fan_of_scifi

    settings = Settings(als_min_events=100, data_dir=tmp_path / "data")
    interactions = clustered_interactions() + fan_of_scifi("alice")
    with Runtime(settings, api_port=0, cluster=True) as rt:
        assert rt.settings.models_url and rt.settings.topic_partitions == 6
        assert sum(c.name.startswith("worker") for c in rt.supervisor.children) == 2
        auth = {"X-API-Key": rt.create_api_key(set(SCOPES), "test")}
        events = [{"event_id": e.event_id, "user_id": e.user_id, "item_id": e.item_id,
                   "type": e.type, "ts": e.ts} for e in interactions]  # fmt: skip
        for start in range(0, len(events), 500):
            batch = {"events": events[start : start + 500]}
            posted = httpx.post(f"{rt.api_url}/v1/events", json=batch, headers=auth)
            assert posted.status_code == 202
        n = len(interactions)
        try:
            rt.wait_for(lambda p: p.applied >= n and p.model_watermark > 0, 120, poll_s=0.2)
        except TimeoutError:
            raise AssertionError((rt.log_dir / "worker.log").read_text()[-6000:]) from None
        body = httpx.get(f"{rt.api_url}/v1/users/alice/recommendations",
                         params={"k": 5}, headers=auth).json()  # fmt: skip
        assert body["model_version"] and len(body["items"]) == 5
        assert {i["item_id"] for i in body["items"]} <= set(SCI_FI[6:])
        # The version's vectors are spread over buckets, not one slot's hash.
        client = redis_sync(rt.settings.infra.redis_url)
        p = keys.pseudonymize(rt.settings.pseudonym_secret, "alice")
        mine = keys.user_vectors(body["model_version"], keys.vector_bucket(p, True))
        assert client.hexists(mine, p) and not client.exists(
            keys.user_vectors(body["model_version"])
        )
        popular = httpx.get(f"{rt.api_url}/v1/items/popular", headers=auth)
        assert popular.status_code == 200 and popular.json()["items"]
        gone = httpx.delete(f"{rt.api_url}/v1/users/alice", headers=auth)
        assert gone.status_code == 200 and gone.json()["keys_deleted"] >= 3
        assert not client.hexists(mine, p)
        client.close()
        assert rt.progress().applied == n  # once each, whichever worker took its partition


@asynccontextmanager
async def _own_cluster(
    settings: Any, tmp_path: Any, replicas: int, shards: int
) -> AsyncIterator[tuple[Any, FeatureStore, Any]]:
    """A 3-primary cluster of this test's own (it will be hurt), and a feature store on it."""
    from streamrec.embedded_cluster import EmbeddedCluster
    from streamrec.supervisor import Supervisor

    (tmp_path / "logs").mkdir()
    embedded = EmbeddedCluster(
        Supervisor(tmp_path / "logs"), tmp_path / "cluster", replicas=replicas
    )
    try:
        embedded.start()
        url = embedded.url.replace("redis://", "redis+cluster://", 1)
        s = settings.model_copy(update={"redis_url": url, "redis_cluster_shards": shards})
        client: Any = redis_async(url)
        try:
            yield embedded, FeatureStore(client, s), s
        finally:
            await client.aclose()
    finally:
        embedded.supervisor.stop_all()


async def _apply_then_replay(
    store: FeatureStore,
    s: Any,
    batches: list[list[Interaction]],
    events: list[Interaction],
    pause_s: float = 0.0,
) -> None:
    """Apply ``batches`` as the worker does (retrying while Redis refuses), then replay all of
    ``events``: nothing new, and the features a pandas fold of ``events`` makes."""
    import asyncio

    from recommender.store.faults import with_retry

    for batch in batches:

        async def apply(b: list[Interaction] = batch) -> object:
            return await store.apply_interactions(b)

        await with_retry("apply", apply)
        await asyncio.sleep(pause_s)
    replay = await with_retry("replay", lambda: store.apply_interactions(events))
    assert replay.applied == []
    assert compare(await store.snapshot(), _expected(store, s, events)).equal
    assert (await store.stats.all())["events_applied"] == len(events)


async def test_a_primary_killed_mid_stream_loses_and_doubles_nothing(settings, tmp_path):
    """A primary SIGKILLed between batches: its replica takes over (the cluster's own election),
    the client follows MOVED, the promoted replica, which has no scripts, gets them loaded again,
    and the worker's retry (`faults.with_retry`) carries the batch that met the failover: every
    event applied once. (Writes acknowledged in the last moment before a primary dies and not yet
    replicated can be lost with it: Redis replicates asynchronously.)"""
    import asyncio

    async with _own_cluster(settings, tmp_path, replicas=1, shards=8) as (embedded, store, s):
        events = [Interaction(f"f{n}", f"u{n % 211}", ROMANCE[n % len(ROMANCE)], "view", 10 + n)
                  for n in range(3_000)]  # fmt: skip
        batches = [events[i : i + 100] for i in range(0, len(events), 100)]
        for batch in batches[:15]:
            await store.apply_interactions(batch)
        await asyncio.sleep(0.2)  # replicated (asynchronously, as Redis does)
        embedded.supervisor.kill(embedded.nodes[0].child)  # a primary, a third of the slots
        await _apply_then_replay(store, s, batches[15:], events)


def test_workers_added_and_killed_mid_stream_on_the_fleet_lose_and_double_nothing(tmp_path):
    """`up --cluster`'s fleet while events arrive: a third worker joins (a rebalance), then one
    is SIGKILLed (another): every event applied once, by the counters and by popularity."""
    import threading
    import time

    from kafka import KafkaProducer

    from recommender.settings import Settings
    from streamrec.runtime import Runtime
    from streams.kafka import bootstrap_servers

    n = 6_000
    with Runtime(Settings(data_dir=tmp_path / "data"), api_port=0, cluster=True) as rt:
        s = rt.settings

        def produce() -> None:
            producer = KafkaProducer(bootstrap_servers=bootstrap_servers(s.infra.kafka_url))
            for i in range(n):
                user = f"u{i % 307}"
                event = {"event_id": f"r{i}", "user_id": user,
                         "item_id": f"i{i % 41}", "type": "view", "ts": 1_000 + i}  # fmt: skip
                producer.send(s.topic_events, key=user.encode(),
                              value=json.dumps(event).encode())  # fmt: skip
                if i % 100 == 0:
                    time.sleep(0.1)  # about 6 s of traffic
            producer.flush()
            producer.close()

        sender = threading.Thread(target=produce)
        sender.start()
        time.sleep(2)
        rt.start_worker("worker-3")  # joins: the partitions move
        time.sleep(2)
        [second] = [c for c in rt.supervisor.children if c.name == "worker-2"]
        rt.supervisor.kill(second)  # leaves without a word: they move again
        sender.join()
        rt.wait_for(lambda p: p.applied >= n, 120, poll_s=0.2)
        time.sleep(2)  # anything applied twice would show by now
        assert rt.progress().applied == n
        client: Any = redis_sync(s.infra.redis_url)
        counts = [client.zrange(keys.items_popular(k), 0, -1, withscores=True)
                  for k in range(s.redis_cluster_shards)]  # fmt: skip
        assert sum(score for rows in counts for _, score in rows) == n
        client.close()


def _users_in_one_slot(store: FeatureStore, n: int) -> tuple[int, list[str]]:
    """``n`` user ids whose keys share one slot (the slot of the first user's tag)."""
    slot = -1
    found: list[str] = []
    for m in range(2_000_000):
        user = f"m{m}"
        mine = key_slot(keys.user_bucket(store.pseudonym(user))[1:-1].encode())
        if slot < 0:
            slot = mine
        if mine == slot:
            found.append(user)
            if len(found) == n:
                break
    return slot, found


async def test_slots_migrated_mid_stream_lose_and_double_nothing(settings, tmp_path):
    """A user slot and a popularity shard's slot moved to another primary as `redis-cli
    --cluster reshard` moves them (IMPORTING/MIGRATING, MIGRATE a few keys at a time) while
    batches are applied: scripts meet ASK and TRYAGAIN, the client follows them, the worker's
    retry carries the rest; every event applied once, and each slot ends on its new owner."""
    import asyncio

    from streamrec.embedded_cluster import migrate_slot

    async with _own_cluster(settings, tmp_path, replicas=0, shards=4) as (embedded, store, s):
        slot, movers = _users_in_one_slot(store, 12)
        users = movers + [f"u{n}" for n in range(40)]
        events = [Interaction(f"g{n}", users[n % len(users)], ROMANCE[n % len(ROMANCE)], "view",
                              10 + n) for n in range(3_000)]  # fmt: skip
        batches = [events[i : i + 50] for i in range(0, len(events), 50)]
        for batch in batches[:10]:
            await store.apply_interactions(batch)
        shard = keys.item_shard(ROMANCE[0], 4)
        shard_slot = key_slot(keys.shard_tag(shard)[1:-1].encode())
        ports = [n.port for n in embedded.nodes]  # primary i has the i-th third of the slots

        def move() -> int:
            moved = 0
            for which in (slot, shard_slot):
                target = ports[(min(which * 3 // 16384, 2) + 1) % 3]
                moved += migrate_slot(ports, which, target, batch=3, pause_s=0.02)
            return moved

        mover = asyncio.create_task(asyncio.to_thread(move))
        await _apply_then_replay(store, s, batches[10:], events, pause_s=0.005)
        assert await mover > 20  # the users' keys and markers, the shard's keys and markers
