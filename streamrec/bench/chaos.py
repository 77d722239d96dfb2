"""`streamrec bench chaos`: mixed traffic through the embedded system while it is hurt.

`seconds` of events at `rate` a second (valid ones, duplicates, poison, one oversized record a
minute, far-future timestamps, erasures with redeliveries of the erased users' events after them)
into the worker, and recommendations asked of the API meanwhile, while the benchmark SIGKILLs the
worker twice, SIGKILLs Valkey and restarts it from its append-only file, sets Valkey's maxmemory
below its use for 10 s, and kills one of the API's two processes. Then it checks, from Redis
against what was produced: every valid event applied once (`lost`, `double_counted`), dead
letters exactly the expected ones, no erased user back, and no 5xx answer.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from kafka import KafkaProducer

from recommender.privacy.access import SCOPES
from recommender.settings import Settings
from recommender.store import keys
from streamrec.bench.faults import against_fold, watch_stall
from streamrec.bench.report import write
from streamrec.bench.workload import isolated
from streamrec.runtime import Runtime
from streams.producer import producer_config

USERS, ITEMS, ERASABLE = 5_000, 800, 200
#: Shares of the records produced that are not new valid events.
DUPLICATE, POISON, FUTURE = 0.05, 0.01, 0.005


@dataclass
class Traffic:
    """What was produced, as the checks need it."""

    valid: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> event
    order: list[str] = field(default_factory=list)  # valid ids of users never erased
    produced: int = 0
    poison: int = 0
    oversized: int = 0
    future: int = 0
    erased: dict[str, int] = field(default_factory=dict)  # user -> events redelivered after
    faults: list[tuple[float, str]] = field(default_factory=list)


def _event(rng: random.Random, n: int, user: str) -> dict[str, Any]:
    kind = rng.choice(["view", "view", "view", "click", "cart", "purchase"])
    return {"event_id": f"c{n}", "user_id": user, "item_id": f"i{rng.randrange(ITEMS)}",
            "type": kind, "ts": int(time.time() * 1000)}  # fmt: skip


def _record(rng: random.Random, n: int, t: Traffic, erasable: list[str]) -> bytes:
    """One record of the mix (the oversized ones and erasures are the caller's)."""
    draw = rng.random()
    if draw < POISON:
        t.poison += 1
        return b'{"event_id": 42}'
    if draw < POISON + FUTURE:
        t.future += 1
        return json.dumps({**_event(rng, n, "u0"), "ts": 9_999_999_999_999}).encode()
    if draw < POISON + FUTURE + DUPLICATE and t.order:
        return json.dumps(t.valid[rng.choice(t.order)]).encode()  # a producer's retry
    if erasable and rng.random() < 0.1:  # a user who will be erased, and never act again
        event = _event(rng, n, rng.choice(erasable[:20]))
    else:
        event = _event(rng, n, f"u{rng.randrange(USERS)}")
        t.order.append(event["event_id"])
    t.valid[event["event_id"]] = event
    return json.dumps(event).encode()


def _produce(s: Settings, seconds: float, rate: float, t: Traffic, admin: str, api: str) -> None:
    """The traffic, one record at a time at ``rate``; an oversized invalid record a minute;
    every 10 s an erasure, followed by the redelivery of all the erased user's events."""
    rng = random.Random(11)
    # A 50 ms linger, as a high-rate producer would set it: the embedded broker's memory engine
    # reads a partition in time that grows with its count of record batches (a fetch took 0.56 s
    # at 60,000 one-record batches), and 5 ms batches of 2,000 records/s overwhelm it in minutes.
    producer = KafkaProducer(**producer_config(s.infra.kafka_url, retries=1000, linger_ms=50))
    started = time.perf_counter()
    n = 0
    next_oversized, next_erasure = 30.0, 10.0
    erasable = [f"erasable-{u}" for u in range(ERASABLE)]
    while (now := time.perf_counter() - started) < seconds:
        delay = n / rate - now
        if delay > 0:
            time.sleep(delay)
        n += 1
        if now >= next_erasure and erasable:
            next_erasure += 10.0
            _erase_and_redeliver(producer, s, t, erasable.pop(0), admin, api)
            continue
        if now >= next_oversized:
            next_oversized += 60.0
            t.oversized += 1
            value = json.dumps({**_event(rng, n, "u0"), "text": "x" * 800_000}).encode()
        else:
            value = _record(rng, n, t, erasable)
        producer.send(s.topic_events, key=str(n % 997).encode(), value=value)
        t.produced += 1
    producer.flush()
    producer.close()


def _erase_and_redeliver(
    producer: KafkaProducer, s: Settings, t: Traffic, user: str, admin: str, api: str
) -> None:
    mine = [e for e in t.valid.values() if e["user_id"] == user]
    producer.flush()
    for _ in range(120):  # as a client would: a 503 (Redis refusing) is retried
        try:
            resp = httpx.delete(f"{api}/v1/users/{user}", headers={"X-API-Key": admin}, timeout=10)
            if resp.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        print(f"chaos: could not erase {user}", flush=True)
    t.erased[user] = len(mine)
    for event in mine:  # everything the user did, again: none of it may come back
        producer.send(s.topic_events, key=user.encode(), value=json.dumps(event).encode())
        t.produced += 1


@dataclass
class Serving:
    """What the API answered meanwhile."""

    requests: int = 0
    errors_5xx: int = 0
    connection_errors: int = 0  # the killed process's own connections, among others
    stop: threading.Event = field(default_factory=threading.Event)


def _ask(api: str, token: str, out: Serving, rate: float = 50.0) -> None:
    rng = random.Random(5)
    with httpx.Client(base_url=api, headers={"X-API-Key": token}, timeout=10) as client:
        while not out.stop.is_set():
            try:
                resp = client.get(f"/v1/users/u{rng.randrange(USERS)}/recommendations")
                out.requests += 1
                out.errors_5xx += resp.status_code >= 500
            except httpx.HTTPError:
                out.connection_errors += 1
            time.sleep(1 / rate)


def _processed(client: redis.Redis) -> int:
    raw: Any = client.hgetall(keys.STATS)
    stats = {str(k): int(float(v)) for k, v in raw.items()}
    names = ("events_applied", "duplicates_suppressed", "dead_letters", "erased_suppressed")
    return sum(stats.get(n, 0) for n in names)


def _api_children(rt: Runtime) -> list[int]:
    """The API's processes (uvicorn's workers, children of the `streamrec api` process)."""
    [api] = [c for c in rt.supervisor.children if c.name == "api"]
    pid = api.process.pid
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def _cpu_s(rt: Runtime) -> dict[str, float]:
    """CPU seconds the broker and Valkey have used (user + system, from /proc), to tell a
    starved worker from a saturated broker when a run falls behind."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for child in rt.infra.children:
        try:
            fields = Path(f"/proc/{child.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[child.name] = round((int(fields[11]) + int(fields[12])) / tick, 1)
    return out


def _inject(rt: Runtime, seconds: float, t: Traffic, started: float) -> None:
    """The faults, at fixed shares of the run."""
    import os
    import signal

    def at(share: float, what: str) -> None:
        time.sleep(max(0.0, started + share * seconds - time.perf_counter()))
        t.faults.append((round(time.perf_counter() - started, 1), what))
        print(f"chaos: {what} at {t.faults[-1][0]} s", flush=True)

    def kill_worker() -> None:
        [worker] = [c for c in rt.supervisor.children if c.name == "worker"]
        rt.supervisor.kill(worker)
        rt.start_worker()

    at(0.15, "worker SIGKILLed")
    kill_worker()
    at(0.35, "Valkey SIGKILLed, restarted from its AOF")
    rt.infra.restart_valkey()
    at(0.55, "Valkey's maxmemory below its use for 10 s")
    client = redis.Redis.from_url(rt.settings.infra.redis_url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used // 2)
    time.sleep(10)
    client.config_set("maxmemory", 0)
    client.close()
    at(0.70, "worker SIGKILLed")
    kill_worker()
    at(0.85, "one API process SIGKILLed")
    os.kill(_api_children(rt)[0], signal.SIGKILL)


def _settle(client: redis.Redis, timeout_s: float = 300.0) -> None:
    """Until nothing more is processed for 5 s (the worker caught up)."""
    deadline, last, quiet_since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 5:
        now_processed = _processed(client)
        if now_processed != last:
            last, quiet_since = now_processed, time.monotonic()
        time.sleep(0.5)


def _dead_letters(s: Settings) -> dict[str, Any]:
    """The dead letters read back from their topic: the records they stand for (a record
    dead-lettered again after a worker was killed before its offset was committed counts once;
    the topic is at least once, like any Kafka output), by reason (its first words)."""
    from collections import Counter

    from kafka import KafkaConsumer

    from streams.records import DeadLetterV1

    consumer = KafkaConsumer(
        s.topic_dead_letter,
        bootstrap_servers=s.infra.kafka_url.removeprefix("kafka://"),
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    by_origin: dict[tuple[Any, ...], str] = {}
    letters = 0
    for message in consumer:
        letter = DeadLetterV1.model_validate_json(message.value)
        by_origin[(letter.topic, letter.partition, letter.offset)] = letter.reason
        letters += 1
    consumer.close()
    reasons = Counter(" ".join(r.split()[:3]) for r in by_origin.values())
    return {
        "dead_letters": len(by_origin),
        "dead_letter_records": letters,
        "dead_letters_by_reason": dict(reasons.most_common()),
    }


def _check(s: Settings, t: Traffic) -> dict[str, Any]:
    kept = [e for e in t.valid.values() if not e["user_id"].startswith("erasable-")]
    lost, diff = against_fold(s, [{**e, "value": None} for e in kept])
    client = redis.Redis.from_url(s.infra.redis_url, decode_responses=True)
    secret = s.pseudonym_secret
    resurrected = 0
    for user in t.erased:
        p = keys.pseudonymize(secret, user)
        family = [keys.user_items, keys.user_recent, keys.user_counts, keys.user_categories]
        family += [keys.user_reviews, keys.user_profile, keys.data_key]
        resurrected += bool(client.exists(*[f(p) for f in family]))
    stats = {k: int(float(v)) for k, v in client.hgetall(keys.STATS).items()}
    client.close()
    return {"lost": lost, "missing_cells": diff.missing, "double_counted": diff.extra,
            "erased_users_resurrected": resurrected, "stats": stats}  # fmt: skip


def run_chaos(
    settings: Settings, seconds: float = 300.0, rate: float = 2000.0, json_path: Path | None = None
) -> dict[str, Any]:
    print(f"chaos: {seconds:.0f} s of mixed traffic at {rate:,.0f} records/s, with faults")
    s = isolated(settings, "chaos").model_copy(update={"api_processes": 2, "monitor": False})
    rt = Runtime(s, api_port=0, aof=True)
    t, serving, stall = Traffic(), Serving(), [0.0]
    try:
        rt.start()
        s = rt.settings
        admin, reader = rt.create_api_key(set(SCOPES), "chaos"), rt.create_api_key({"read"}, "r")
        asker = threading.Thread(target=_ask, args=(rt.api_url, reader, serving), daemon=True)
        producer = threading.Thread(
            target=_produce, args=(s, seconds, rate, t, admin, rt.api_url), daemon=True
        )
        started = time.perf_counter()
        asker.start()
        producer.start()
        client = redis.Redis.from_url(s.infra.redis_url, decode_responses=True)
        watcher = threading.Thread(
            target=watch_stall, args=(lambda: _processed(client), producer, stall), daemon=True
        )
        watcher.start()
        _inject(rt, seconds, t, started)
        producer.join()
        _settle(client)
        serving.stop.set()
        asker.join()
        cpu = _cpu_s(rt)
        checked = _check(s, t)
        checked |= _dead_letters(s)
    finally:
        if json_path is not None:  # the processes' logs, beside the figures, to read after
            logs = json_path.parent / "chaos-logs"
            shutil.rmtree(logs, ignore_errors=True)
            shutil.copytree(rt.log_dir, logs, dirs_exist_ok=True)
        rt.stop()
    stats = checked.pop("stats")
    results = {
        "seconds": seconds,
        "produced": t.produced,
        "valid_events": len(t.valid),
        "applied": stats.get("events_applied", 0),
        **checked,
        "dead_letters_expected": t.poison + t.oversized + t.future,
        "erased_users": len(t.erased),
        "redelivered_after_erasure": sum(t.erased.values()),
        "api_requests": serving.requests,
        "api_5xx": serving.errors_5xx,
        "api_connection_errors": serving.connection_errors,
        "max_stall_s": round(stall[0], 2),
        "faults": [{"at_s": at, "fault": what} for at, what in t.faults],
        "cpu_s": cpu,
    }
    return write(json_path, "chaos", results)
