"""The HTTP API over a real socket (uvicorn), against the embedded Valkey and Tansu: the surface,
authentication, scopes, rate limit, body limit, and start-up checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from api.app import create_app
from recommender.cf.refits import Trainer
from recommender.errors import ConfigurationError
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.privacy.access import SCOPES, ApiKeyStore, RateLimiter
from recommender.privacy.crypto import UserDataCipher, master_cipher
from recommender.serving import reasons
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import ItemMeta
from tests.conftest import read_topics, serve_api
from tests.factories import ROMANCE, SCI_FI, clustered_interactions, fan_of_scifi

pytestmark = pytest.mark.integration

#: Every route but the health probes, with the scope it needs.
PROTECTED = [
    ("GET", "/v1/users/u1/recommendations", "read"),
    ("GET", "/v1/items/i1/similar", "read"),
    ("GET", "/v1/sessions/recommendations", "read"),
    ("GET", "/v1/items/popular", "read"),
    ("GET", "/v1/items/trending", "read"),
    ("GET", "/v1/metrics", "read"),
    ("POST", "/v1/events", "write"),
    ("POST", "/v1/items", "write"),
    ("PUT", "/v1/users/u1/profile", "profile"),
    ("GET", "/v1/users/u1/profile", "profile"),
    ("GET", "/v1/users/u1/export", "admin"),
    ("DELETE", "/v1/users/u1", "admin"),
]


@pytest.fixture
async def tokens(redis) -> dict[str, str]:
    store = ApiKeyStore(redis)
    found = {s: (await store.create({s}, f"only {s}")).token for s in SCOPES}
    found["all"] = (await store.create(set(SCOPES), "all")).token
    found["read_explain"] = (await store.create({"read", "explain"}, "explains")).token
    return found


def key(token: str) -> dict[str, str]:
    return {"X-API-Key": token}


def test_the_list_of_protected_routes_is_complete(settings):
    paths = create_app(settings).openapi()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if not path.startswith("/v1/health")
    }
    listed = {(m, p.replace("u1", "{user_id}").replace("i1", "{item_id}")) for m, p, _ in PROTECTED}
    assert routes == listed


async def test_no_key_401_bad_key_401_wrong_scope_403(settings, tokens):
    async with serve_api(settings) as api:
        for method, path, scope in PROTECTED:
            assert (await api.request(method, path)).status_code == 401, path
            bad = await api.request(method, path, headers=key(tokens[scope] + "x"))
            assert bad.status_code == 401, path
            assert bad.json()["detail"] == "the API key is invalid or revoked"
            for other in set(SCOPES) - {scope}:
                wrong = await api.request(method, path, headers=key(tokens[other]))
                assert wrong.status_code == 403, (path, other)
                assert scope in wrong.json()["detail"]
        for probe in ("/v1/health/live", "/v1/health/ready"):
            assert (await api.get(probe)).status_code == 200


async def test_a_revoked_key_is_refused(settings, redis, tokens):
    async with serve_api(settings) as api:
        assert (await api.get("/v1/items/popular", headers=key(tokens["read"]))).status_code == 200
        key_id = tokens["read"].split("_")[1]
        assert await ApiKeyStore(redis).revoke(key_id)
        assert (await api.get("/v1/items/popular", headers=key(tokens["read"]))).status_code == 401


async def test_over_the_rate_limit_429_with_retry_after(settings, tokens):
    limited = settings.model_copy(update={"api_rate_per_s": 0.2, "api_rate_burst": 3})
    async with serve_api(limited) as api:
        codes = [
            (await api.get("/v1/items/popular", headers=key(tokens["read"]))).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        over = await api.get("/v1/items/popular", headers=key(tokens["read"]))
        assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
        # The bucket is per key: another key is not slowed down.
        assert (await api.get("/v1/items/popular", headers=key(tokens["all"]))).status_code == 200
        # The plain recommendations request (answered below FastAPI) is limited the same way.
        recs = [
            await api.get("/v1/users/u1/recommendations", headers=key(tokens["all"]))
            for _ in range(3)
        ]
        assert [r.status_code for r in recs] == [200, 200, 429]
        assert int(recs[-1].headers["Retry-After"]) >= 1


def counting_calls(limiter: RateLimiter) -> list[int]:
    """Count the limiter's calls to its bucket script (ours)."""
    calls = [0]
    script = limiter._bucket

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await script(*args, **kwargs)

    limiter._bucket = counted  # type: ignore[assignment]
    return calls


async def test_the_rate_limit_leases_tokens_and_never_admits_past_the_rate(redis):
    """A replica takes tokens in leases (few Redis calls at a steady rate; none while a key is
    over its rate), and replicas sharing a bucket admit no more than the bucket allows."""
    steady = RateLimiter(redis, 1000.0, 1000)
    calls = counting_calls(steady)
    assert all([await steady.acquire("steady") == 0 for _ in range(600)])
    assert calls[0] < 30  # leases growing to a tenth of a second's tokens, not 600 calls

    rate, burst = 50.0, 40
    replicas = [RateLimiter(redis, rate, burst), RateLimiter(redis, rate, burst)]
    counts = [counting_calls(r) for r in replicas]
    started = time.monotonic()
    admitted = sum([await replicas[n % 2].acquire("k1") == 0 for n in range(600)])
    elapsed = time.monotonic() - started
    assert burst <= admitted <= burst + rate * elapsed + 1
    assert counts[0][0] + counts[1][0] < 300  # the rejected are mostly answered locally


async def test_oversized_bodies_413_declared_or_streamed(settings, tokens):
    small = settings.model_copy(update={"api_max_body_bytes": 2048})
    body = b'{"events": [' + b",".join([b'{"event_id": "x"}'] * 200) + b"]}"
    async with serve_api(small) as api:
        declared = await api.post("/v1/events", content=body, headers=key(tokens["write"]))
        assert declared.status_code == 413
        assert declared.text == "Content Too Large"

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 512):
                yield body[i : i + 512]

        streamed = await api.post("/v1/events", content=chunks(), headers=key(tokens["write"]))
        assert streamed.status_code == 413


async def test_bad_parameters_are_422_with_a_message(settings, tokens):
    async with serve_api(settings) as api:
        for k in (10**9, 101, 0):
            resp = await api.get(
                "/v1/users/u1/recommendations", params={"k": k}, headers=key(tokens["read"])
            )
            assert resp.status_code == 422 and resp.json()["detail"]
        bad_window = await api.get(
            "/v1/items/popular", params={"window": "2h"}, headers=key(tokens["read"])
        )
        assert bad_window.status_code == 422
        too_many: dict[str, list[dict[str, str]]] = {"events": [{}] * 1001}
        resp = await api.post("/v1/events", json=too_many, headers=key(tokens["write"]))
        assert resp.status_code == 422


async def test_docs_only_when_turned_on(settings):
    async with serve_api(settings) as api:
        assert (await api.get("/docs")).status_code == 404
        assert (await api.get("/openapi.json")).status_code == 404
    async with serve_api(settings.model_copy(update={"api_docs": True})) as api:
        assert (await api.get("/docs")).status_code == 200
        assert (await api.get("/openapi.json")).status_code == 200


async def test_posted_events_and_items_reach_kafka_and_invalid_ones_are_explained(settings, tokens):
    events = [
        {"event_id": f"e{i}", "user_id": f"u{i}", "item_id": "i1", "type": "click", "ts": 1000}
        for i in range(3)
    ]
    events.insert(1, {"event_id": "bad", "user_id": "u9", "item_id": "i1", "type": "like"})
    events.append({"event_id": "e9", "user_id": "u9", "item_id": "i1", "type": "view", "ts": "1"})
    async with serve_api(settings) as api:
        resp = await api.post("/v1/events", json={"events": events}, headers=key(tokens["write"]))
        assert resp.status_code == 202
        body = resp.json()
        assert (body["accepted"], body["rejected"]) == (3, 2)
        assert [e["index"] for e in body["errors"]] == [1, 4]
        assert "type" in body["errors"][0]["reason"] and "ts" in body["errors"][1]["reason"]
        item = {"item_id": "i1", "title": "One", "categories": ["drama"], "ts": 5}
        resp = await api.post("/v1/items", json={"items": [item]}, headers=key(tokens["write"]))
        assert resp.status_code == 202 and resp.json()["accepted"] == 1

    got = {
        (m.topic, m.key.decode())
        for m in read_topics(settings, settings.topic_events, settings.topic_content)
    }
    assert got == {(settings.topic_events, f"u{i}") for i in range(3)} | {
        (settings.topic_content, "i1")
    }


async def _fitted(redis, settings) -> FeatureStore:
    store = FeatureStore(redis, settings)
    await store.catalogue.upsert_items(
        [ItemMeta(i, f"Film {i}", 1, None, ("scifi",)) for i in SCI_FI]
        + [ItemMeta(i, f"Film {i}", 1, None, ("romance",)) for i in ROMANCE]
    )
    await store.apply_interactions(clustered_interactions() + fan_of_scifi("alice"))
    trainer = Trainer(store, ModelState(redis), cf_registry(settings.models_dir), settings)
    await trainer.refit()
    return store


async def test_recommendations_filter_exclude_explain(settings, redis, tokens):
    await _fitted(redis, settings)
    async with serve_api(settings) as api:

        async def get(**params: Any) -> httpx.Response:
            return await api.get(
                "/v1/users/alice/recommendations", params=params, headers=key(tokens["read"])
            )

        plain = (await get(k=5)).json()
        assert len(plain["recommendation_id"]) == 32 and plain["model_version"]
        assert plain["user_event_ms"] == 1_780_000_000_005  # her newest event, folded in
        ids = [i["item_id"] for i in plain["items"]]
        assert set(ids) <= set(SCI_FI[6:]) and {i["reason"] for i in plain["items"]} == {reasons.CF}

        excluded = (await get(k=5, exclude=ids[:2])).json()
        assert not {i["item_id"] for i in excluded["items"]} & set(ids[:2])

        romance = (await get(k=5, category="romance")).json()
        assert {i["item_id"] for i in romance["items"]} <= set(ROMANCE)

        # It names items of the user's history: more than a read key may see.
        refused = await get(k=5, explain="true")
        assert refused.status_code == 403 and "explain" in refused.text
        explained = (
            await api.get(
                "/v1/users/alice/recommendations",
                params={"k": 5, "explain": "true"},
                headers=key(tokens["read_explain"]),
            )
        ).json()
        for item in explained["items"]:
            assert item["because_item_id"] in SCI_FI[:6]
            assert item["reason"] == f"because you liked Film {item['because_item_id']}"


async def test_the_common_request_is_answered_as_the_route_answers_it(settings, redis, tokens):
    """`api.fast_path` answers a request with no query or only `k`; with another parameter the
    declared route answers. Same JSON, same headers, counted and kept as an impression alike;
    the fast path's second answer comes from the JSON it kept, and is the same too."""
    await _fitted(redis, settings)
    read = key(tokens["read"])
    path = "/v1/users/alice/recommendations"
    pseudonym = keys.pseudonymize(settings.pseudonym_secret, "alice")
    async with serve_api(settings) as api:
        for params in ({}, {"k": 5}):
            fast = await api.get(path, params=params, headers=read)
            routed = await api.get(path, params={**params, "explain": "false"}, headers=read)
            kept = await api.get(path, params=params, headers=read)
            assert fast.status_code == routed.status_code == kept.status_code == 200
            assert len(fast.json()["items"]) == params.get("k", 10)
            bodies = [r.json() for r in (fast, routed, kept)]
            ids = [b.pop("recommendation_id") for b in bodies]
            assert bodies[0] == bodies[1] == bodies[2] and len(set(ids)) == 3
            assert kept.content.replace(ids[2].encode(), ids[0].encode()) == fast.content
            assert dict(fast.headers) == dict(routed.headers) | {
                "date": fast.headers["date"],
                "content-length": fast.headers["content-length"],
            }
            await asyncio.sleep(0.3)  # the impressions are written every 0.1 s
            written = await redis.lrange(keys.user_lists(pseudonym), 0, -1)
            for rec_id in ids:
                assert any(entry.startswith(f"{rec_id}|") for entry in written), rec_id
        metrics = (await api.get("/v1/metrics", headers=read)).text
        counted = 'route="/v1/users/{user_id}/recommendations",status="200"} 6'
        assert counted in metrics


async def test_similar_popular_and_trending(settings, redis, tokens):
    store = await _fitted(redis, settings)
    await store.catalogue.upsert_items([ItemMeta("new-film", "New", 2, None, ("romance",))])
    async with serve_api(settings) as api:
        read = key(tokens["read"])
        similar = (await api.get("/v1/items/scifi-0/similar", params={"k": 5}, headers=read)).json()
        assert {i["item_id"] for i in similar["items"]} <= set(SCI_FI) - {"scifi-0"}
        assert len(similar["items"]) == 5 and similar["model_version"]
        fresh = (await api.get("/v1/items/new-film/similar", headers=read)).json()
        assert fresh["items"] and {i["item_id"] for i in fresh["items"]} <= set(ROMANCE)
        assert fresh["items"][0]["reason"] == "popular in romance"
        assert (await api.get("/v1/items/nothing/similar", headers=read)).status_code == 404
        # The windows end at the stream clock: alice's six events, long after everyone else's.
        for window in ("1h", "24h", "7d"):
            resp = await api.get("/v1/items/popular", params={"window": window}, headers=read)
            assert {i["item_id"] for i in resp.json()["items"]} == set(SCI_FI[:6]), window
        resp = await api.get("/v1/items/popular", params={"window": "all"}, headers=read)
        assert len(resp.json()["items"]) == 10
        trending = (await api.get("/v1/items/trending", params={"k": 3}, headers=read)).json()
        assert len(trending["items"]) == 3


async def test_ready_and_metrics(settings, tokens):
    async with serve_api(settings) as api:
        ready = (await api.get("/v1/health/ready")).json()
        assert ready["status"] == "ok" and ready["redis"] and ready["kafka"]
        await api.get("/v1/items/popular", headers=key(tokens["read"]))
        metrics = await api.get("/v1/metrics", headers=key(tokens["read"]))
        assert metrics.status_code == 200
        assert (
            'streamrec_api_requests_total{method="GET",route="/v1/items/popular",status="200"}'
            in (metrics.text)
        )
        assert metrics.headers["x-content-type-options"] == "nosniff"


async def test_kafka_down_makes_ready_503_and_writes_503(settings, tokens):
    nowhere = settings.model_copy(update={"kafka_url": "kafka://127.0.0.1:1"})
    async with serve_api(nowhere) as api:
        ready = await api.get("/v1/health/ready")
        assert ready.status_code == 503 and ready.json()["kafka"] is False
        event = {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "ts": 1}
        resp = await api.post("/v1/events", json={"events": [event]}, headers=key(tokens["write"]))
        assert resp.status_code == 503 and "Kafka" in resp.json()["detail"]
        # Reads go on.
        assert (await api.get("/v1/items/popular", headers=key(tokens["read"]))).status_code == 200


async def test_start_up_fails_clearly_without_or_with_a_wrong_master_key(settings, redis):
    with pytest.raises(ConfigurationError, match="STREAMREC_MASTER_KEYS"):
        create_app(settings.model_copy(update={"master_keys": None}))
    with pytest.raises(ConfigurationError, match="not a valid Fernet key"):
        create_app(settings.model_copy(update={"master_keys": SecretStr("not-a-key")}))
    right = create_app(settings)
    async with right.router.lifespan_context(right):  # the first start writes the canary
        pass
    wrong = settings.model_copy(update={"master_keys": SecretStr(Fernet.generate_key().decode())})
    app = create_app(wrong)
    with pytest.raises(ConfigurationError, match="cannot unwrap"):
        async with app.router.lifespan_context(app):
            pass
    # After a rotation onto a new key, the new key alone starts.
    new = Fernet.generate_key().decode()
    both = master_cipher([new, settings.require_master_keys()[0]])
    assert await UserDataCipher(redis, both).rotate() == 1  # the canary
    alone = create_app(settings.model_copy(update={"master_keys": SecretStr(new)}))
    async with alone.router.lifespan_context(alone):
        pass
    await redis.flushdb()  # the next test's API starts with the shared test master key


async def test_a_key_is_accepted_as_a_bearer_token_as_prometheus_sends_it(settings, tokens):
    """On main only `X-API-Key` was read: a Prometheus server scraping `/v1/metrics` with its
    key (`authorization: {credentials: ...}` sends `Authorization: Bearer`) got 401."""
    bearer = {"Authorization": f"Bearer {tokens['read']}"}
    async with serve_api(settings) as api:
        scraped = await api.get("/v1/metrics", headers=bearer)
        assert scraped.status_code == 200 and "streamrec_" in scraped.text
        # The fast path of the common request reads it too; a wrong one is refused alike.
        recs = await api.get("/v1/users/u1/recommendations", headers=bearer)
        assert recs.status_code == 200
        bad = {"Authorization": f"Bearer {tokens['read']}x"}
        assert (await api.get("/v1/metrics", headers=bad)).status_code == 401
        assert (await api.get("/v1/users/u1/recommendations", headers=bad)).status_code == 401


async def test_profiles_need_their_own_scope_not_the_producers_write(settings, tokens):
    """On main every event producer's `write` key could read any user's decrypted profile."""
    async with serve_api(settings) as api:
        path = "/v1/users/someone/profile"
        for scope in ("write", "read", "explain"):
            assert (await api.get(path, headers=key(tokens[scope]))).status_code == 403
            put = await api.put(path, json={"email": "x@example.com"}, headers=key(tokens[scope]))
            assert put.status_code == 403
        put = await api.put(path, json={"email": "x@example.com"}, headers=key(tokens["profile"]))
        assert put.status_code == 200
        got = await api.get(path, headers=key(tokens["profile"]))
        assert got.json()["email"] == "x@example.com"


async def test_ingestion_is_limited_by_what_it_publishes_not_by_requests(tmp_path, infra, redis):
    """On main the limit counted requests: 100 a second of 1,000 events each was 100,000
    events a second from one key. Each record (and KiB) is charged to a bucket of its own."""
    from tests.conftest import make_settings

    settings = make_settings(
        tmp_path,
        kafka_url=infra.kafka_url,
        redis_url=infra.redis_url,
        api_ingest_per_s=0.1,  # one unit back every 10 s: the test is over before
        api_ingest_burst=1000,
    )
    token = (await ApiKeyStore(redis).create({"write"}, "producer")).token
    events = [
        {"event_id": f"e{i}", "user_id": "u", "item_id": "i", "type": "view", "ts": 1}
        for i in range(1000)
    ]
    async with serve_api(settings) as api:
        first = await api.post("/v1/events", json={"events": events}, headers=key(token))
        assert first.status_code == 202 and first.json()["accepted"] == 1000
        second = await api.post("/v1/events", json={"events": events[:1]}, headers=key(token))
        assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
        assert "ingest rate" in second.text


async def test_metric_streams_per_key_are_capped(tmp_path, infra, redis):
    from tests.conftest import make_settings

    settings = make_settings(
        tmp_path, kafka_url=infra.kafka_url, redis_url=infra.redis_url, api_streams_per_key=1
    )
    token = (await ApiKeyStore(redis).create({"read"}, "watcher")).token
    async with serve_api(settings) as api:
        async with api.stream("GET", "/v1/metrics/stream", headers=key(token)) as held:
            assert held.status_code == 200
            second = await api.get("/v1/metrics/stream", headers=key(token))
            assert second.status_code == 429
        # Closed, the stream is given back.
        for _ in range(50):
            async with api.stream("GET", "/v1/metrics/stream", headers=key(token)) as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.1)
        assert again.status_code == 200
