"""The fault runs of `bench scale`, on the embedded fleet with a replica for each primary.

Three runs, each with topics, a consumer group and users of its own, MovieLens events produced
at a steady rate by two workers' worth of partitions while one fault happens a third of the way
in: a worker added and another SIGKILLed (`rebalance`), a user slot and a popularity shard's
slot migrated as `redis-cli --cluster reshard` moves them (`migration`), a primary SIGKILLed and
replaced by its replica (`failover`). Then, per run: `lost` (valid events whose dedupe marker is
missing), `double_counted` (feature cells above a pandas fold of the events), the longest time
nothing was applied while events were produced, and serving's answers meanwhile. Over the runs:
the MOVED, ASK and TRYAGAIN replies the primaries sent (Valkey's `INFO errorstats`), each a
redirect or retry the client made.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import redis
from kafka import KafkaProducer
from redis.crc import key_slot

from recommender.privacy.access import SCOPES
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.connections import redis_sync
from streamrec.bench.faults import against_fold, watch_stall
from streamrec.bench.workload import isolated
from streamrec.embedded_cluster import migrate_slot
from streamrec.movielens import load_ratings
from streamrec.progress import read_progress
from streamrec.runtime import Runtime
from streamrec.supervisor import Child
from streams.kafka import bootstrap_servers, create_topics

#: The replies that are a client's redirect or retry on a cluster in motion.
REDIRECTS = ("errorstat_MOVED", "errorstat_ASK", "errorstat_TRYAGAIN")


def _events(run: str, n: int) -> list[dict[str, Any]]:
    """``n`` MovieLens ratings in time order, as events of this run's own users."""
    ratings = load_ratings().sort_values("timestamp").head(n)
    return [
        {"event_id": f"{run}-{i}", "user_id": f"{run}u{user}", "item_id": str(movie),
         "type": "rating", "value": float(rating), "ts": int(ts) * 1000}
        for i, (user, movie, rating, ts) in enumerate(
            ratings[["userId", "movieId", "rating", "timestamp"]].itertuples(index=False)
        )
    ]  # fmt: skip


def _produce(s: Settings, events: list[dict[str, Any]], rate: float) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers(s.infra.kafka_url), linger_ms=50, acks="all"
    )
    started = time.perf_counter()
    for n, e in enumerate(events):
        producer.send(s.topic_events, key=e["user_id"].encode(), value=json.dumps(e).encode())
        ahead = n / rate - (time.perf_counter() - started)
        if ahead > 0:
            time.sleep(ahead)
    producer.flush()
    producer.close()


def _check(s: Settings, events: list[dict[str, Any]]) -> tuple[int, int]:
    """(lost, double_counted) of ``events`` against what the store holds."""
    lost, diff = against_fold(s, events)
    return lost, diff.extra


def _redirects(ports: list[int]) -> int:
    found = 0
    for port in ports:
        client = redis.Redis(port=port, decode_responses=True)
        try:
            stats = client.info("errorstats")
        except redis.ConnectionError:  # a primary killed by the failover run
            continue
        finally:
            client.close()
        found += sum(int(stats[name]["count"]) for name in REDIRECTS if name in stats)
    return found


class _Probe:
    """Recommendations asked for the run's users while it runs: non-2xx answers and errors."""

    def __init__(self, rt: Runtime, users: list[str], token: str) -> None:
        self.asked = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._ask, args=(rt.api_url, users, token), daemon=True
        )
        self._thread.start()

    def _ask(self, api: str, users: list[str], token: str) -> None:
        with httpx.Client(headers={"X-API-Key": token}, timeout=10.0) as http:
            n = 0
            while not self._stop.is_set():
                user = users[n % len(users)]
                n += 1
                try:
                    ok = http.get(f"{api}/v1/users/{user}/recommendations").status_code < 300
                except httpx.HTTPError:
                    ok = False
                self.asked += 1
                self.failed += not ok
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


Fault = Callable[[Runtime, Settings, list[Child], list[dict[str, Any]]], None]


def _rebalance(rt: Runtime, s: Settings, workers: list[Child], _: list[dict[str, Any]]) -> None:
    workers.append(rt.start_worker("rebalance-3", s))
    time.sleep(4)  # the third worker took its partitions
    rt.supervisor.kill(workers.pop(0))


def _migration(rt: Runtime, s: Settings, _: list[Child], events: list[dict[str, Any]]) -> None:
    """The slot of the run's busiest user, then the slot of its busiest item's shard."""
    counts = pd.DataFrame(events)
    user = str(counts["user_id"].value_counts().index[0])
    item = str(counts["item_id"].value_counts().index[0])
    tag = keys.user_bucket(keys.pseudonymize(s.pseudonym_secret, user))[1:-1]
    shard = keys.shard_tag(keys.item_shard(item, s.redis_cluster_shards))[1:-1]
    cluster = rt.infra.cluster
    assert cluster is not None
    ports = [n.port for n in cluster.nodes if n.primary]
    for slot in (key_slot(tag.encode()), key_slot(shard.encode())):
        target = ports[(min(slot * len(ports) // 16384, len(ports) - 1) + 1) % len(ports)]
        migrate_slot(ports, slot, target, batch=5, pause_s=0.01)


def _failover(rt: Runtime, s: Settings, _: list[Child], __: list[dict[str, Any]]) -> None:
    cluster = rt.infra.cluster
    assert cluster is not None
    rt.supervisor.kill(cluster.nodes[0].child)  # its replica is elected in about 2-4 s


def _run(rt: Runtime, name: str, fault: Fault, n: int, rate: float, token: str) -> dict[str, Any]:
    s = isolated(rt.settings, name)
    create_topics(s)
    events = _events(name, n)
    workers = [rt.start_worker(f"{name}-{i}", s) for i in range(2)]
    time.sleep(4)  # both joined their group
    base = rt.progress().applied
    producer = threading.Thread(target=_produce, args=(s, events, rate))
    probe = _Probe(rt, sorted({e["user_id"] for e in events})[:50], token)
    stall = [0.0]
    client = redis_sync(rt.settings.infra.redis_url)
    shards = rt.settings.redis_cluster_shards

    def applied() -> int:
        return read_progress(client, shards).applied

    watcher = threading.Thread(target=watch_stall, args=(applied, producer, stall), daemon=True)
    producer.start()
    watcher.start()
    time.sleep(n / rate / 3)
    # In this thread: a child started from a thread that ends dies with it (PDEATHSIG).
    fault(rt, s, workers, events)
    producer.join()
    watcher.join()
    client.close()
    with contextlib.suppress(TimeoutError):  # what did not arrive is counted as lost below
        rt.wait_for(lambda p: p.applied - base >= n, 240, poll_s=0.5)
    probe.stop()
    for child in workers:
        rt.supervisor.stop(child)
    lost, double = _check(s, events)
    return {
        f"{name}_lost": lost,
        f"{name}_double_counted": double,
        f"{name}_max_stall_s": round(stall[0], 1),
        f"{name}_serve_requests": probe.asked,
        f"{name}_serve_failed": probe.failed,
    }


def run_cluster_faults(
    settings: Settings, events: int = 15_000, rate: float = 1500.0
) -> dict[str, Any]:
    """The three fault runs on one fleet (the failover last: it leaves a primary without a
    replica)."""
    base = settings.model_copy(update={"api_rate_per_s": 1e9, "api_rate_burst": 10**9})
    rt = Runtime(base, api_port=0, cluster=True, cluster_replicas=1)
    out: dict[str, Any] = {}
    try:
        rt.start(worker=False, api=True)
        token = rt.create_api_key(set(SCOPES), "scale-faults")
        cluster = rt.infra.cluster
        assert cluster is not None
        ports = [n.port for n in cluster.nodes]
        before = _redirects(ports)
        for name, fault in (("rebalance", _rebalance), ("migration", _migration),
                            ("failover", _failover)):  # fmt: skip
            print(f"  cluster faults: {name}...", flush=True)
            out |= _run(rt, name, fault, events, rate, token)
        out["moved_or_ask_retries"] = _redirects(ports) - before
    finally:
        rt.stop()
    return out
