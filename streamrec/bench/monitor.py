"""`streamrec bench monitor`: the monitor against a simulated population whose clicks follow a
known ground truth, on the embedded system (worker, API, broker, Valkey), and what the metrics
path costs.

The population: `USERS` users in `CLUSTERS` taste clusters; each cluster likes the items of one
item cluster. A simulated user asks the API for ten recommendations, scans them top-down and
clicks a liked item with probability `CLICK_P` (quoting the list's `recommendation_id`); a user
who clicks nothing in the list clicks a liked item found elsewhere (an organic event). One event
per list, at `RATE` lists a second. Phases, in order:

1. warm-up: the served model, fitted on each user's seed history, sets the baseline hit rate;
2. quiet: `QUIET_EVENTS` events with nothing changed; every monitor decision is a false alarm;
3. a bad model: a version fitted on shuffled data, promoted by an operator without a pin; the
   seconds until the monitor rolled it back, and the clicks lost meanwhile (the baseline hit
   rate times the lists served by the bad version, less their clicks);
4. drift: every cluster's taste moves to the next item cluster; the lists served from the drift
   to the last window the monitor had read when it asked for a refit (the detector's delay;
   the lists served until its record arrived are reported beside it), and the seconds to a
   refit promoted after it (the monitor has it wait one drift window); the hit rate in the 60 s
   after the drift, and the first moment the last 10 s hit at 0.8 of the rate before it
   (`drift_recovered_s`, watched for 120 s).

Before all that, without the system: the taste-switch simulation
(`recommender.evaluation.taste_switch`), with the recency weighting and with equal weights.

Refits come only when the monitor asks (growth, idle and interval triggers are set out of
reach), so every version change in the run is the operator's or the monitor's doing.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaProducer
from river.drift import ADWIN

from models.data import InteractionMatrix
from models.fitting import fit_als
from recommender.cf.lifecycle import lifecycle_for
from recommender.evaluation.taste_switch import TasteSwitch, events_to_new_taste
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.monitoring.monitor import MonitorConfig
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from recommender.store.keys import CF
from streamrec.bench.metrics import run_metrics_costs
from streamrec.bench.report import write
from streamrec.bench.workload import isolated
from streamrec.metrics_console import follow
from streamrec.runtime import Runtime
from streams.producer import producer_config
from streams.records import DecisionV1

USERS = 1000
CLUSTERS = 8
# Enough liked items that a user does not run out of unseen ones during the run (seen items
# are never recommended again): with 40, every user's hit rate fell by itself after a few
# minutes, and the monitor rightly called that a drift.
ITEMS_PER_CLUSTER = 150
SEED_PER_USER = 15
CLICK_P = 0.1
RATE = 100.0
WARM_S = 20.0
QUIET_EVENTS = 10_000
PHASE_LIMIT_S = 120.0
#: How long after the drift the hit rate is watched for its recovery (`drift_recovered_s`).
RECOVERY_LIMIT_S = 120.0
#: The taste-switch simulation's half-life when `STREAMREC_RECENCY_HALF_LIFE_S` sets none: a
#: day, for its users' hourly events.
TASTE_SWITCH_HALF_LIFE_S = 86_400.0
#: Half-lives the simulation is also run with: 6 hours, a day, a week.
TASTE_SWITCH_GRID_S = (6 * 3600.0, 86_400.0, 7 * 86_400.0)


def _item(cluster: int, n: int) -> str:
    return f"m{cluster}-{n}"


@dataclass
class Population:
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    shift: int = 0  # item cluster liked by user cluster c: (c + shift) % CLUSTERS

    def liked_cluster(self, user: int) -> int:
        return (user % CLUSTERS + self.shift) % CLUSTERS

    def likes(self, user: int, item: str) -> bool:
        return item.startswith(f"m{self.liked_cluster(user)}-")

    def liked_item(self, user: int) -> str:
        return _item(self.liked_cluster(user), self.rng.randrange(ITEMS_PER_CLUSTER))


@dataclass
class Served:
    at: float
    version: str | None
    clicked: bool


class Simulator:
    """Users asking for lists and answering them, in a thread, at RATE lists a second."""

    def __init__(self, rt: Runtime, token: str, population: Population) -> None:
        self._rt = rt
        self._token = token
        self.population = population
        self.log: list[Served] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._producer = KafkaProducer(**producer_config(rt.settings.infra.kafka_url, linger_ms=5))
        self._n = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._producer.close()

    def _event(self, user: int, item: str, rid: str | None) -> None:
        self._n += 1
        event = {
            "event_id": f"sim-{self._n}",
            "user_id": f"u{user}",
            "item_id": item,
            "type": "click",
            "ts": int(time.time() * 1000),
        } | ({"recommendation_id": rid} if rid else {})
        self._producer.send(
            self._rt.settings.topic_events,
            key=f"u{user}".encode(),
            value=json.dumps(event).encode(),
        )

    def _run(self) -> None:
        headers = {"X-API-Key": self._token}
        rng = random.Random(5)
        started = time.perf_counter()
        with httpx.Client(base_url=self._rt.api_url, headers=headers, timeout=10) as client:
            while not self._stop.is_set():
                due = started + len(self.log) / RATE
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                user = rng.randrange(USERS)
                body = client.get(f"/v1/users/u{user}/recommendations", params={"k": 10}).json()
                clicked = next(
                    (
                        i["item_id"]
                        for i in body["items"]
                        if self.population.likes(user, i["item_id"]) and rng.random() < CLICK_P
                    ),
                    None,
                )
                if clicked is not None:
                    self._event(user, clicked, body["recommendation_id"])
                else:
                    self._event(user, self.population.liked_item(user), None)
                self.log.append(Served(time.time(), body["model_version"], clicked is not None))

    def between(self, start: float, end: float) -> list[Served]:
        return [s for s in self.log if start <= s.at < end]


class Decisions:
    """The monitor's decisions as a metrics consumer sees them."""

    def __init__(self, settings: Settings) -> None:
        self.seen: list[tuple[float, DecisionV1]] = []
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        for record in follow(self._settings, stop=self._stop):
            if isinstance(record, DecisionV1):
                self.seen.append((time.time(), record))

    def first(self, action: str, after: float) -> tuple[float, DecisionV1] | None:
        return next(((t, d) for t, d in self.seen if t >= after and d.data.action == action), None)

    def count(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.seen if start <= t < end)


def seed_population(rt: Runtime, population: Population) -> int:
    producer = KafkaProducer(**producer_config(rt.settings.infra.kafka_url, linger_ms=20))
    n = 0
    for user in range(USERS):
        for _ in range(SEED_PER_USER):
            n += 1
            event = {
                "event_id": f"seed-{n}",
                "user_id": f"u{user}",
                "item_id": population.liked_item(user),
                "type": "purchase",
                "ts": 1_700_000_000_000 + n,
            }
            producer.send(rt.settings.topic_events, key=f"u{user}".encode(),
                          value=json.dumps(event).encode())  # fmt: skip
    producer.flush()
    producer.close()
    return n


async def promote_shuffled(settings: Settings) -> str:
    """Fit ALS on every user's history with the item ids shuffled, and have an operator serve
    it without a pin."""
    redis = redis_async(settings.infra.redis_url)
    try:
        store = FeatureStore(redis, settings)
        users = await store.users.active()
        histories, _ = await store.users.histories_and_last_seen(users)
        items = sorted({i for h in histories for i in h})
        shuffled = dict(zip(items, random.Random(3).sample(items, len(items)), strict=True))
        data = InteractionMatrix.from_histories(
            users, [{shuffled[i]: w for i, w in h.items()} for h in histories]
        )
        params = {"factors": settings.als_factors, "regularization": settings.als_regularization,
                  "iterations": settings.als_iterations, "alpha": settings.als_alpha,
                  "neighbours": settings.knn_neighbours}  # fmt: skip
        fitted = await asyncio.to_thread(fit_als, data, **params)
        applied = (await store.stats.all()).get("events_applied", 0)
        version = cf_registry(settings).save(
            fitted.model(**params), {"watermark": applied, "status": "bench: shuffled data"}
        )
        await lifecycle_for(CF, redis, settings).promote(
            version, pinned=False, by="operator", reason="bench: fitted on shuffled data"
        )
        return version
    finally:
        await redis.aclose()


async def served_version(settings: Settings) -> str | None:
    redis = redis_async(settings.infra.redis_url)
    try:
        served = await ModelState(redis, CF).current()
        return served.version if served else None
    finally:
        await redis.aclose()


def _wait(what: str, until: Any, limit_s: float = PHASE_LIMIT_S) -> float | None:
    """Poll ``until()`` until true; the time it became true, or None after ``limit_s``."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if until():
            return time.time()
        time.sleep(0.1)
    print(f"monitor: {what}: not within {limit_s:.0f} s", flush=True)
    return None


def _settled_by(decided_ms: int) -> float:
    """The end of the newest 1 s window the monitor had read when it decided at ``decided_ms``
    (it reads a window `settle_ms` after its end): lists served before it were evidence; the
    ones after were served while the window, the publishing and the settling ran."""
    settled = decided_ms - MonitorConfig().settle_ms
    return (settled - settled % 1000) / 1000


def _recovered(sim: Simulator, drift_at: float, rate: float) -> bool:
    """Whether the last 10 s after the drift hit at ``rate`` or better."""
    now = time.time()
    return now - drift_at >= 10 and _hit_rate(sim.between(now - 10, now)) >= rate


def _recovered_at(sim: Simulator, drift_at: float, rate: float) -> float | None:
    """The first moment (in 0.5 s steps, from 10 s after the drift) when the last 10 s had hit
    at ``rate`` or better; None if none has yet."""
    t, now = drift_at + 10, time.time()
    while t <= now:
        if _hit_rate(sim.between(t - 10, t)) >= rate:
            return t
        t += 0.5
    return None


def _hit_rate(served: list[Served]) -> float:
    return sum(s.clicked for s in served) / len(served) if served else 0.0


def simulation_settings(settings: Settings, **overrides: Any) -> Settings:
    """The system the population uses: no rate limit, a first fit on every seed event, and
    refits only when the monitor asks for one."""
    return settings.model_copy(
        update={
            "api_rate_per_s": 1e9,
            "api_rate_burst": 10**9,
            "als_min_events": USERS * SEED_PER_USER,
            "refit_growth": 1000.0,
            "refit_idle_s": 10**6,
            "refit_interval_s": 10**6,
            "serve_new_item_slots": 0,
            **overrides,
        }
    )


@dataclass
class Simulation:
    rt: Runtime
    population: Population
    sim: Simulator
    decisions: Decisions
    good: str | None  # the version served once the seed history is in


@contextmanager
def simulated(settings: Settings, timeout_s: float = 300) -> Iterator[Simulation]:
    """The system up, the population's seed history in and fitted, the population at work."""
    population = Population()
    with Runtime(settings, api_port=0) as rt:
        seeded = seed_population(rt, population)
        rt.wait_for(lambda p: p.applied >= seeded and p.model_watermark >= seeded, timeout_s)
        good = asyncio.run(served_version(rt.settings))
        decisions = Decisions(rt.settings)
        sim = Simulator(rt, rt.create_api_key({"read"}, "simulation"), population)
        sim.start()
        try:
            yield Simulation(rt, population, sim, decisions, good)
        finally:
            sim.stop()
            decisions.close()


def _scenarios(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with simulated(simulation_settings(isolated(settings, "monitor"))) as run:
        rt, population, sim, decisions, good = (
            run.rt, run.population, run.sim, run.decisions, run.good
        )  # fmt: skip
        print(f"monitor: warm-up {WARM_S:.0f} s at {RATE:.0f} lists/s...", flush=True)
        time.sleep(WARM_S)
        baseline = _hit_rate(sim.log[len(sim.log) // 2 :])
        print(f"monitor: quiet, {QUIET_EVENTS:,} events...", flush=True)
        quiet_from, quiet_n = time.time(), len(sim.log)
        _wait("quiet phase", lambda: len(sim.log) - quiet_n >= QUIET_EVENTS, 600)
        quiet_to = time.time()
        quiet_events = len(sim.log) - quiet_n
        alarms = decisions.count(quiet_from, quiet_to)

        print("monitor: an operator serves a model fitted on shuffled data...", flush=True)
        bad = asyncio.run(promote_shuffled(rt.settings))
        promoted_at = time.time()
        back = _wait("rollback", lambda: decisions.first("rollback", promoted_at) is not None)
        bad_lists = [x for x in sim.between(promoted_at, back or time.time()) if x.version == bad]
        lost = baseline * len(bad_lists) - sum(x.clicked for x in bad_lists)

        time.sleep(10)  # the served model's rate settles again
        print("monitor: the population's taste moves...", flush=True)
        served_then = asyncio.run(served_version(rt.settings))
        population.shift = 1
        drift_at, drift_n = time.time(), len(sim.log)
        refit = _wait("drift detected", lambda: decisions.first("refit", drift_at) is not None)
        detected = decisions.first("refit", drift_at)
        promoted, refit_version = None, None
        if refit is not None:
            # The refit is fast: it may serve before its decision record reaches us, so the
            # version to leave is the one served when the taste moved.
            promoted = _wait(
                "a refit promoted",
                lambda: asyncio.run(served_version(rt.settings)) not in {served_then, None},
            )
            if promoted is not None:
                refit_version = asyncio.run(served_version(rt.settings))
                time.sleep(20)  # the refit's hit rate while it serves, and what became of it
        before_drift = _hit_rate(sim.between(drift_at - 10, drift_at))
        _wait(
            "the hit rate back to 0.8 of the rate before the drift",
            lambda: _recovered(sim, drift_at, 0.8 * before_drift),
            max(0.0, drift_at + RECOVERY_LIMIT_S - time.time()),
        )
        # Read back from the log: the wait above may start after the recovery (the refit's).
        recovered = _recovered_at(sim, drift_at, 0.8 * before_drift)
        after_drift = sim.log[drift_n:]
        out = {
            "baseline_hit_rate": round(baseline, 3),
            "quiet_events": quiet_events,
            "false_alarms": alarms,
            "false_alarms_per_10k": round(alarms * 10_000 / max(quiet_events, 1), 2),
            "good_version": good,
            "bad_version": bad,
            "bad_version_hit_rate": round(_hit_rate(bad_lists), 3),
            "rollback_s": round(back - promoted_at, 1) if back else None,
            "clicks_lost_before_rollback": round(lost, 1),
            "detection_delay_events": (
                len([x for x in after_drift if x.at < _settled_by(detected[1].data.at_ms)])
                if detected
                else None
            ),
            "detection_delay_lists_served": (
                len([x for x in after_drift if x.at < detected[0]]) if detected else None
            ),
            "hit_rate_before_drift": round(before_drift, 3),
            "hit_rate_60s_after_drift": round(_hit_rate(sim.between(drift_at, drift_at + 60)), 3),
            "drift_recovered_s": round(recovered - drift_at, 1) if recovered else None,
            "refit_version": refit_version,
            "refit_hit_rate": (
                round(_hit_rate([x for x in after_drift if x.version == refit_version]), 3)
                if refit_version
                else None
            ),
            "hit_rate_20s_after_refit": (
                round(_hit_rate(sim.between(promoted + 15, promoted + 20)), 3) if promoted else None
            ),
            "refit_rolled_back": any(
                d.data.action == "rollback" for t, d in decisions.seen if t > drift_at
            ),
            "drift_detected_s": round(refit - drift_at, 1) if refit else None,
            "drift_to_promoted_s": round(promoted - drift_at, 1) if promoted else None,
            "decisions": [
                {"t_s": round(t - quiet_from, 1), **d.data.model_dump()} for t, d in decisions.seen
            ],
        }
    return out


def river_stream_delay() -> int | None:
    """The monitor's detector (ADWIN, its delta) on the stream of River's own ADWIN example:
    1,000 values from {0, 1}, then 1,000 from {4..7}; how many values after the change it
    raises its alarm. A hit rate cannot shift that far (ten standard deviations), so the
    simulation's delay is reported beside it, for the shift it has."""
    rng = random.Random(12345)
    stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    detector = ADWIN(delta=MonitorConfig().drift_delta)
    for i, value in enumerate(stream):
        detector.update(value)
        if detector.drift_detected and i >= 1000:
            return i - 1000
    return None


def taste_switch(settings: Settings) -> dict[str, Any]:
    """`events_to_new_taste` as served (the chain: ALS blended with the neighbours of the latest
    items, and the sequential family at its weight), and by ALS alone, each with the recency
    weighting and with equal weights."""
    half_life = settings.recency_half_life_s or TASTE_SWITCH_HALF_LIFE_S
    sim = TasteSwitch()
    chain = (settings.serve_knn_weight, settings.serve_recent_decay, settings.serve_recent_items)
    served = settings.sequential_weight if settings.content_models else 0.0
    return {
        "events_to_new_taste": events_to_new_taste(sim, half_life, chain, served),
        "events_to_new_taste_equal_weights": events_to_new_taste(sim, 0.0, chain, served),
        "events_to_new_taste_chain_without_sequence": events_to_new_taste(sim, half_life, chain),
        "events_to_new_taste_als_only": events_to_new_taste(sim, half_life),
        "events_to_new_taste_als_only_equal_weights": events_to_new_taste(sim, 0.0),
        "taste_switch_half_life_s": half_life,
        "events_to_new_taste_by_half_life_s": {
            f"{h:g}": events_to_new_taste(sim, h, chain, served) for h in TASTE_SWITCH_GRID_S
        },
    }


def run_monitor_bench(settings: Settings, json_path: Path | None = None) -> dict[str, Any]:
    results = taste_switch(settings)
    results |= _scenarios(settings)
    results["detection_delay_river_stream"] = river_stream_delay()
    results |= run_metrics_costs(settings)
    return write(json_path, "monitor", results)
