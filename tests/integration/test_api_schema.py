"""Schemathesis against the app's own OpenAPI document: generated requests, with a valid key, to
the real API under uvicorn on the embedded Valkey and Tansu. No 5xx; every response conforms."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from api.app import create_app
from recommender.privacy.access import SCOPES, ApiKeyStore
from tests.conftest import Infra, make_settings

pytestmark = pytest.mark.integration

#: Examples per operation; 12 operations (PUT and GET on one path count twice).
EXAMPLES = 40


async def _admin_key(redis_url: str) -> str:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return (await ApiKeyStore(client).create(set(SCOPES), "schemathesis")).token
    finally:
        await client.aclose()


async def _flush(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def served(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, key) of the API running in a thread for the whole module."""
    s = make_settings(
        Path(tmp_path_factory.mktemp("schema")),
        kafka_url=infra.kafka_url,
        redis_url=infra.redis_url,
        api_docs=True,
        api_rate_per_s=100_000,
        api_rate_burst=100_000,
    )
    asyncio.run(_flush(s.redis_url or ""))
    server = uvicorn.Server(
        uvicorn.Config(create_app(s), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", asyncio.run(_admin_key(s.redis_url or ""))
    finally:
        server.should_exit = True
        thread.join(30)


def test_generated_requests_get_conforming_answers(served: tuple[str, str]) -> None:
    base_url, token = served
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    cases: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def check(case: Any) -> None:
            cases.append(case.operation.label)
            case.call_and_validate(headers={"X-API-Key": token})

        check()
    print(f"\nschemathesis: {len(cases)} generated cases over {len(operations)} operations")
    assert len(cases) >= 200
