"""Events produced with kafka-python reach the Faust worker, land in Valkey, and come back
as recommendations from the API: every hop a real process over a real socket."""

import asyncio
import base64
import json
import os
import time

import httpx
import pytest

from recommender.monitoring.attribution import GRACE_S
from recommender.settings import Settings
from recommender.types import Interaction
from streamrec.embedded import free_port
from streamrec.runtime import Runtime
from streams.kafka import bootstrap_servers
from streams.producer import EventProducer
from streams.records import ContentV1, DeadLetterV1, EventV1, decode_metric
from tests.conftest import read_topics
from tests.factories import SCI_FI, clustered_interactions, fan_of_scifi

pytestmark = pytest.mark.integration


def _wire(e: Interaction) -> EventV1:
    return EventV1(
        event_id=e.event_id,
        user_id=e.user_id,
        item_id=e.item_id,
        type=e.type,
        ts=e.ts,
    )


def test_events_flow_from_kafka_to_recommendations(settings: Settings, redis):
    interactions = clustered_interactions() + fan_of_scifi("alice")
    prometheus = free_port()
    settings = settings.model_copy(update={"worker_metrics_port": prometheus})
    with Runtime(settings, api_port=0) as rt:
        with EventProducer(
            bootstrap_servers(settings.kafka_url or ""),
            settings.topic_events,
            settings.topic_content,
        ) as producer:
            assert producer.idempotent
            for item in SCI_FI:
                producer.send_content(ContentV1(item_id=item, title=f"Film {item}", ts=1))
            for e in interactions:
                producer.send_event(_wire(e))
            producer.send_raw(settings.topic_events, "mallory", b'{"event_id": 42}')
            # A redelivery of an event already sent must not count twice.
            producer.send_event(_wire(interactions[0]))
        n = len(interactions)
        auth = {"X-API-Key": rt.create_api_key({"read"}, "test")}
        rt.wait_for(
            lambda p: (
                p.applied >= n and p.stats.get("dead_letters", 0) >= 1 and p.model_watermark >= n
            ),
            90,
            poll_s=0.2,
        )

        resp = httpx.get(
            f"{rt.api_url}/v1/users/alice/recommendations", params={"k": 5}, headers=auth
        )
        assert resp.status_code == 200
        body = resp.json()
        assert body["model_version"]
        ids = [i["item_id"] for i in body["items"]]
        assert len(ids) == 5 and set(ids) <= set(SCI_FI[6:])  # her taste, none she has seen
        assert all(i["title"] == f"Film {i['item_id']}" for i in body["items"])

        unknown = httpx.get(f"{rt.api_url}/v1/users/nobody/recommendations", headers=auth).json()
        assert len(unknown["items"]) == 10
        assert {i["reason"] for i in unknown["items"]} == {"popular right now"}

        too_many = httpx.get(
            f"{rt.api_url}/v1/users/alice/recommendations", params={"k": 10**9}, headers=auth
        )
        assert too_many.status_code == 422
        health = httpx.get(f"{rt.api_url}/v1/health/ready").json()
        assert health["events_applied"] == len(interactions)  # the replay was suppressed
        assert body["bucket"] == "control"
        # The worker's own Prometheus endpoint counts what it applied.
        scraped = httpx.get(f"http://127.0.0.1:{prometheus}/metrics").text
        assert f'streamrec_events_applied_total{{type="purchase"}} {float(n)}' in scraped

        # alice clicks the second item of the list she was given, quoting it; a click with a
        # malformed recommendation_id is a dead letter, one quoting no list counts as unmatched.
        with EventProducer(
            bootstrap_servers(settings.kafka_url or ""),
            settings.topic_events,
            settings.topic_content,
        ) as producer:
            for j, (item, rid) in enumerate(
                [(ids[1], body["recommendation_id"]), (ids[2], "no-such-list")]
            ):
                producer.send_event(
                    EventV1(event_id=f"outcome-{j}", user_id="alice", item_id=item,
                            type="click", ts=1_790_000_000_000 + j, recommendation_id=rid)
                )  # fmt: skip
            bad = _wire(interactions[1]).model_dump() | {"event_id": "bad-rid"}
            bad["recommendation_id"] = "has spaces"
            producer.send_raw(settings.topic_events, "alice", json.dumps(bad).encode())
        rt.wait_for(lambda p: p.applied >= n + 2 and p.stats.get("dead_letters", 0) >= 2, 30)
        # The click quoting no list we know waits for that list as long as a slow replica could
        # take to write it, then counts as unmatched.
        time.sleep(GRACE_S + 2)
        assert health["instance"] == rt.instance_id and health["model_note"] is None
        # A refit takes longer than the refit timer's interval: it runs as a task of its own.
        assert "is overlapping" not in (rt.log_dir / "worker.log").read_text()

    letters = [
        DeadLetterV1.model_validate_json(m.value)
        for m in read_topics(settings, settings.topic_dead_letter)
    ]
    assert len(letters) == 2
    assert {letter.topic for letter in letters} == {settings.topic_events}
    originals = [json.loads(base64.b64decode(letter.original_b64)) for letter in letters]
    assert {"event_id": 42} in originals
    (bad_rid,) = [x for x, o in zip(letters, originals, strict=True) if o != {"event_id": 42}]
    assert bad_rid.reason.startswith("recommendation_id:")

    # What a metric consumer saw: the worker's and the API's records, keyed by metric name.
    messages = read_topics(settings, settings.topic_metrics)
    records = [decode_metric(m.value) for m in messages]
    assert all(m.key.decode() == r.data.name for m, r in zip(messages, records, strict=True))

    def total(name: str, source: str, **labels: str) -> float:
        return sum(
            r.data.value or 0
            for r in records
            if r.data.name == name
            and r.source.startswith(source)
            and labels.items() <= r.data.labels.items()
        )

    worker, api = "/streamrec/worker/", "/streamrec/api/"
    assert total("streamrec_events_applied", worker) == n + 2
    assert total("streamrec_events_duplicate", worker) == 1
    assert total("streamrec_events_in", worker, type="invalid") == 2
    assert total("streamrec_dead_letters", worker, topic=settings.topic_events) == 2
    assert total("streamrec_content_in", worker) == len(SCI_FI)
    e2f = [r.data for r in records if r.data.name == "streamrec_event_to_feature"]
    assert sum(d.count or 0 for d in e2f) == n + 2
    names = {r.data.name for r in records}
    assert "streamrec_served_version" in names
    assert {r.data.labels["family"] for r in records if r.data.name == "streamrec_served_version"}
    route = "/v1/users/{user_id}/recommendations"
    assert total("streamrec_api_requests", api, route=route, status="200") == 2
    assert total("streamrec_api_requests", api, route=route, status="422") == 1
    assert total("streamrec_recs_served", api) == 2  # alice's list and the unknown user's
    assert total("streamrec_recs_served", api, model_version=body["model_version"]) >= 1
    # The click on alice's list is its outcome and its hit; the other quoted no list we know.
    credited = {"model_version": body["model_version"], "bucket": "control"}
    assert total("streamrec_recs_outcomes", worker, kind="click", **credited) == 1
    assert total("streamrec_recs_hits", worker, **credited) == 1
    assert total("streamrec_attribution_unmatched", worker, reason="unknown") == 1
    # Each window's records were published within 2 s of its end (the Kafka timestamp).
    late = [
        (r.data.name, m.timestamp - r.data.end_ms)
        for m, r in zip(messages, records, strict=True)
        if m.timestamp - r.data.end_ms > 2000
    ]
    assert late == []


def test_embedded_runtime_starts_everything_and_leaves_nothing(tmp_path):
    rt = Runtime(Settings(data_dir=tmp_path), api_port=0)
    try:
        rt.start(worker=False)
        assert rt.embedded
        assert httpx.get(f"{rt.api_url}/v1/health/ready").json()["status"] == "ok"
        pids = [c.process.pid for c in rt.supervisor.children]
        assert len(pids) == 3  # tansu, valkey, api
        workdir = rt.log_dir.parent
    finally:
        rt.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not workdir.exists()


async def test_the_readiness_probe_refuses_another_process_on_the_port(settings, redis):
    """Another streamrec answering on the port is not our API being ready."""
    from streamrec.runtime import PortInUseError
    from tests.conftest import serve_api

    async with serve_api(settings) as other:
        rt = Runtime(settings, api_port=other.base_url.port)
        try:
            with pytest.raises(PortInUseError, match="another process answers"):
                await asyncio.to_thread(rt.wait_api_ready, 10)
        finally:
            rt.stop()


def test_embedded_infrastructure_stops_and_removes_its_own_directory():
    from streamrec.embedded import EmbeddedInfrastructure
    from streamrec.supervisor import Supervisor

    infra = EmbeddedInfrastructure(Supervisor())
    infra.start()
    pids = [c.process.pid for c in infra.children]
    assert len(pids) == 2
    infra.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not infra.workdir.exists()


def test_killed_worker_and_api_come_back_serving_the_same_version(settings, redis):
    interactions = clustered_interactions()
    with Runtime(settings, api_port=0) as rt:
        with EventProducer(
            bootstrap_servers(settings.kafka_url or ""), settings.topic_events
        ) as producer:
            for e in interactions:
                producer.send_event(_wire(e))
        done = rt.wait_for(lambda p: p.model_watermark >= len(interactions), 90, poll_s=0.2)
        assert done.served is not None
        version = done.served.version
        auth = {"X-API-Key": rt.create_api_key({"read"}, "test")}

        for child in list(rt.supervisor.children):
            if child.name in {"worker", "api"}:
                rt.supervisor.kill(child)
        rt.start_worker()
        rt.start_api()

        resp = httpx.get(f"{rt.api_url}/v1/users/a1/recommendations", headers=auth).json()
        assert resp["model_version"] == version
        # The restarted worker finds the model covers every event: no refit replaces it.
        time.sleep(settings.refit_idle_s + 2)
        assert rt.progress().served == done.served
