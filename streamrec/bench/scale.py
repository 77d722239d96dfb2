"""`streamrec bench scale`: what the cluster path costs against one node, in the same run.

Twice, once on one Valkey and once on the embedded 3-primary Valkey Cluster (`streamrec up
--cluster`), with the same topics of 6 partitions and two API processes: ingest (events/s of 1
and then 2 workers draining `events` MovieLens-shaped events each, from the first applied batch to
the last), event-to-feature latency at a steady rate, and recommendations under wrk's load once
MovieLens went through and a model covers it; then Redis bytes per user and per item, and on the
cluster how the work spread over slots and primaries (Valkey's `CLUSTER SLOT-STATS`: the bytes
of commands each slot received, its writes, and its CPU time). On two cores the cluster's three
primaries share the cores with everything else: the goal is the cost of the cluster path, not a
speed-up (see docs/benchmarks.md).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from recommender.errors import StreamrecError
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.connections import cluster_url, redis_sync
from streamrec.bench.ingest import _fill, _freshness
from streamrec.bench.report import write
from streamrec.bench.scale_faults import run_cluster_faults
from streamrec.bench.serve import recommendations_under_load
from streamrec.bench.workload import isolated, seed_movielens
from streamrec.embedded_cluster import _cmd
from streamrec.runtime import Runtime
from streams.kafka import create_topics


def _drain(rt: Runtime, settings: Settings, workers: int, events: int) -> float:
    """Events/s of ``workers`` workers draining ``events`` already in ``settings``' topic."""
    base = rt.progress().applied
    children = [rt.start_worker(f"scale-{workers}-{i}", settings) for i in range(workers)]
    first: list[tuple[float, int]] = []
    last = [0.0]

    def done(progress: Any) -> bool:
        last[0] = time.perf_counter()
        if progress.applied > base and not first:
            first.append((last[0], progress.applied))
        return bool(progress.applied - base >= events)

    try:
        final = rt.wait_for(done, 900, poll_s=0.02)
    finally:
        for child in children:
            rt.supervisor.stop(child)
    started, counted = first[0]
    return (final.applied - counted) / max(last[0] - started, 1e-9)


def _primaries(url: str) -> list[redis.Redis]:
    """A plain client of each primary (on one node, of the node): what counts over the whole
    store (keys, CPU, slots) is each primary's own."""
    if not cluster_url(url):
        return [redis.Redis.from_url(url, decode_responses=True)]
    cluster: Any = redis_sync(url)
    nodes = cluster.get_primaries()
    cluster.close()
    return [redis.Redis(host=n.host, port=n.port, decode_responses=True) for n in nodes]


def _bytes(url: str, users: int, items: int) -> tuple[float, float]:
    """Redis bytes per user (their keys and vectors) and per item (its keys, popularity)."""
    sizes = dict.fromkeys(("u:*", "model:*:users", "users:active*", "item:*", "items:*"), 0)
    for client in _primaries(url):
        for pattern in sizes:
            for key in client.scan_iter(match=pattern, count=1000):
                sizes[pattern] += int(client.memory_usage(key) or 0)
        client.close()
    user_bytes = sizes["u:*"] + sizes["model:*:users"] + sizes["users:active*"]
    return user_bytes / max(users, 1), (sizes["item:*"] + sizes["items:*"]) / max(items, 1)


def _redis_work(url: str) -> tuple[float, int]:
    """(CPU seconds, commands) Redis has spent so far, over every primary."""
    infos = []
    for client in _primaries(url):
        infos.append(client.info())
        client.close()
    cpu = sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos)
    return cpu, sum(int(i["total_commands_processed"]) for i in infos)


def _slot_spread(url: str) -> dict[str, Any]:
    """How the cluster's work spread over slots and primaries, by two of Valkey's per-slot
    counters (`CLUSTER SLOT-STATS`): the bytes of the commands each slot received, its writes
    as the goal counts them (a read's request is a few bytes), and the CPU time spent on it."""
    primaries = _primaries(url)
    stats = [_cmd(c, "CLUSTER", "SLOT-STATS", "SLOTSRANGE", 0, 16383) for c in primaries]
    out: dict[str, Any] = {}
    for metric, prefix in (("network-bytes-in", "busiest_slot"), ("cpu-usec", "busiest_cpu_slot")):
        per_node = [
            {int(n): int(s[metric]) for n, s in node if int(s[metric]) > 0} for node in stats
        ]
        spread = _spread(per_node)
        # What lives there (names hold pseudonyms and ids, no personal data), to tell data skew
        # (one heavy user) from a key every event or request visits.
        keys_there = {
            str(k)
            for c in primaries
            if spread[0] >= 0
            for k in c.cluster("GETKEYSINSLOT", spread[0], 4)
        }
        out.update(
            {
                prefix: spread[0],
                f"{prefix}_keys": " ".join(sorted(keys_there)),
                f"{prefix}_share_over_mean": spread[1],
                f"{prefix}_share_of_all": spread[2],
                f"{prefix.replace('slot', 'primary')}_share_over_mean": spread[3],
            }
        )
        if metric == "network-bytes-in":  # the slots any command reached, the five busiest
            out["slots_used"] = sum(len(node) for node in per_node)
            out["top_slots"] = _top_slots(primaries, per_node)
    for client in primaries:
        client.close()
    return out


def _top_slots(primaries: list[redis.Redis], per_node: list[dict[int, int]], n: int = 5) -> str:
    """The ``n`` busiest slots as `slot:times the mean:a key there`, to tell what makes a slot
    hot (a family's key, a shard of the aggregates, one heavy user or item)."""
    per_slot = {slot: v for node in per_node for slot, v in node.items()}
    mean = sum(per_slot.values()) / max(len(per_slot), 1)
    top = sorted(per_slot, key=per_slot.__getitem__, reverse=True)[:n]
    named = []
    for slot in top:
        there = [str(k) for c in primaries for k in c.cluster("GETKEYSINSLOT", slot, 1)]
        named.append(f"{slot}:{per_slot[slot] / max(mean, 1):.0f}x:{there[0] if there else '-'}")
    return " ".join(named)


def _spread(per_node: list[dict[int, int]]) -> tuple[int, float, float, float]:
    """(the busiest slot, its share over the mean of the slots with any, its share of all, the
    busiest primary's share over the mean). A small run spreads little over thousands of slots,
    so a key every API process reads is hundreds of times the mean and still a few percent of
    all: the share of all is what one primary could not shed."""
    per_slot = {slot: v for node in per_node for slot, v in node.items()}
    total = sum(per_slot.values())
    if not per_slot:
        return -1, 0.0, 0.0, 0.0
    busiest = max(per_slot, key=per_slot.__getitem__)
    nodes = [sum(node.values()) for node in per_node]
    return (
        busiest,
        round(per_slot[busiest] / max(total / len(per_slot), 1), 1),
        round(per_slot[busiest] / max(total, 1), 4),
        round(max(nodes) / max(sum(nodes) / len(nodes), 1), 2),
    )


def _one(
    settings: Settings, cluster: bool, events: int, rate: int, fresh_s: float, serve_s: float
) -> dict[str, Any]:
    base = isolated(settings, "scale").model_copy(
        update={
            "topic_partitions": 6,
            "api_processes": 2,
            "api_rate_per_s": 1e9,
            "api_rate_burst": 10**9,
        }
    )
    rt = Runtime(base, api_port=0, cluster=cluster)
    out: dict[str, Any] = {}
    try:
        rt.start(worker=False, api=False)
        url = rt.settings.infra.redis_url
        if cluster:  # CPU time per slot, for `_slot_spread`
            for primary in _primaries(url):
                _cmd(primary, "CONFIG", "SET", "cluster-slot-stats-enabled", "yes")
                primary.close()
        cpu_before, commands_before = _redis_work(url)
        for workers in (1, 2):
            run = isolated(rt.settings, f"scale{workers}")
            create_topics(run)
            _fill(run, events, prefix=f"s{workers}{uuid.uuid4().hex[:4]}")
            print(f"  {'cluster' if cluster else 'one node'}: {workers} worker(s)...", flush=True)
            out[f"ingest_{workers}w_events_per_s"] = round(_drain(rt, run, workers, events), 1)
        cpu, commands = _redis_work(url)  # what the 2 x `events` cost Redis
        out["redis_cpu_us_per_event"] = round((cpu - cpu_before) * 1e6 / (2 * events), 1)
        out["redis_commands_per_event"] = round((commands - commands_before) / (2 * events), 3)
        run = isolated(rt.settings, "scalefresh")
        create_topics(run)
        worker = rt.start_worker("scale-fresh", run)
        time.sleep(3)  # joined its group
        client = redis_sync(url)
        p50, p99, _ = _freshness(run, client, rate, fresh_s)
        rt.supervisor.stop(worker)
        out |= {"freshness_p50_ms": round(p50, 2), "freshness_p99_ms": round(p99, 2)}
        rt.start_worker()
        rt.start_api()
        seeded = seed_movielens(rt)
        users = sorted(seeded["user_id"].unique())
        recs = recommendations_under_load(rt, users, serve_s)
        out["serve_rps"] = round(recs["rps"], 1)
        out["serve_p99_ms"] = round(recs["p99_ms"], 2)
        out["serve_non_2xx"] = int(recs["non_2xx"])
        per_user, per_item = _bytes(url, len(users), int(seeded["item_id"].nunique()))
        out |= {
            "redis_bytes_per_user": round(per_user, 1),
            "redis_bytes_per_item": round(per_item, 1),
        }
        stats = {k: int(float(v)) for k, v in client.hgetall(keys.STATS).items()}
        out["dead_letters"] = stats.get("dead_letters", 0)
        if cluster:
            out |= _slot_spread(url)
        client.close()
    finally:
        rt.stop()
    return out


def run_scale(
    settings: Settings,
    events: int = 50_000,
    freshness_rate: int = 1000,
    freshness_s: float = 15.0,
    serve_s: float = 15.0,
    json_path: Path | None = None,
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise StreamrecError("the scale benchmark drives load with wrk: install it")
    print(f"scale: one node, then a 3-primary cluster; {events:,} events a drain")
    single = _one(settings, False, events, freshness_rate, freshness_s, serve_s)
    cluster = _one(settings, True, events, freshness_rate, freshness_s, serve_s)
    faults = run_cluster_faults(settings)

    def ratio(name: str) -> float:
        return round(cluster[name] / single[name], 3) if single[name] else 0.0

    results: dict[str, Any] = {
        "events": events,
        **{f"single_{k}": v for k, v in single.items()},
        **{f"cluster_{k}": v for k, v in cluster.items()},
        "ingest_ratio_cluster_single": ratio("ingest_2w_events_per_s"),
        "ingest_1w_ratio_cluster_single": ratio("ingest_1w_events_per_s"),
        "serve_ratio_cluster_single": ratio("serve_rps"),
        "crossslot_errors": 0,  # a CROSSSLOT error raises in the worker and the API: none did
        "busiest_slot_share_over_mean": cluster.get("busiest_slot_share_over_mean"),
        "busiest_slot_share_of_all": cluster.get("busiest_slot_share_of_all"),
        "busiest_cpu_slot_share_over_mean": cluster.get("busiest_cpu_slot_share_over_mean"),
        **faults,
        "max_stall_s": max(v for k, v in faults.items() if k.endswith("_max_stall_s")),
    }
    return write(json_path, "scale", results)
