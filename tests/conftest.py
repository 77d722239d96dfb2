"""Shared fixtures. Integration tests share one embedded Tansu and Valkey per test session."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from cryptography.fernet import Fernet

from recommender.settings import Settings
from streamrec.embedded import EmbeddedInfrastructure
from streamrec.supervisor import Supervisor

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

TEST_SECRET = "test-pseudonym-key-0123456789"
TEST_MASTER_KEY = Fernet.generate_key().decode()


@dataclass(frozen=True)
class Infra:
    kafka_url: str
    redis_url: str


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """One embedded broker and Valkey for the whole session (real sockets)."""
    supervisor = Supervisor(tmp_path_factory.mktemp("infra-logs"))
    embedded = EmbeddedInfrastructure(supervisor, tmp_path_factory.mktemp("infra"))
    try:
        embedded.start()
        yield Infra(embedded.kafka_url, embedded.redis_url)
    finally:
        supervisor.stop_all()


@dataclass(frozen=True)
class S3:
    """A local S3 server (moto's), started once per session; a bucket per test."""

    endpoint: str
    credentials = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                   "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip

    def bucket(self) -> str:
        import boto3

        name = f"b-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id="test",
            aws_secret_access_key="test", region_name="us-east-1",
        ).create_bucket(Bucket=name)  # fmt: skip
        return name

    @property
    def storage_options(self) -> dict[str, Any]:
        """s3fs options reaching this server."""
        return {"endpoint_url": self.endpoint, "key": "test", "secret": "test"}


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    import sys

    from streamrec.embedded import free_port, wait_for_port

    supervisor = Supervisor(tmp_path_factory.mktemp("s3-logs"))
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    supervisor.start("moto", [str(moto), "-H", "127.0.0.1", "-p", str(port)])
    try:
        wait_for_port(port)
        yield S3(f"http://127.0.0.1:{port}")
    finally:
        supervisor.stop_all()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-primary Valkey Cluster with a replica each, started once; its `redis+cluster://` URL.
    Tests on it flush it first (`flush_cluster`)."""
    from streamrec.embedded_cluster import EmbeddedCluster

    supervisor = Supervisor(tmp_path_factory.mktemp("cluster-logs"))
    embedded = EmbeddedCluster(supervisor, tmp_path_factory.mktemp("cluster"), replicas=1)
    try:
        embedded.start()
        yield embedded.url.replace("redis://", "redis+cluster://", 1)
    finally:
        supervisor.stop_all()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings isolated by unique topic names, consumer group and data dir."""
    run = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "pseudonym_key": TEST_SECRET,
        "master_keys": TEST_MASTER_KEY,
        "api_key_cache_s": 0,
        "api_model_check_s": 0,
        "data_dir": tmp_path / "data",
        "topic_events": f"events-{run}",
        "topic_content": f"content-{run}",
        "topic_metrics": f"metrics-{run}",
        "topic_dead_letter": f"dead-letter-{run}",
        "worker_id": f"worker-{run}",
        "topic_partitions": 2,
        "als_factors": 8,
        "als_iterations": 10,
        "als_min_events": 50,
        "refit_min_interval_s": 0,
        # The sequential family is off unless a test turns it on (test_sessions does; the README
        # test runs it as a user would): its trainer's first fit competes for the machine's two
        # cores with what a test waits for (measured: the content test took 72 s with it, 25 s
        # without).
        "sequential_weight": 0.0,
        # Tiny fixtures overfit with little regularisation (measured: 10 of 10 seeds at 0.05).
        "als_regularization": 1.0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def unit_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, kafka_url=infra.kafka_url, redis_url=infra.redis_url)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client on an emptied Valkey database (tests run one at a time)."""
    client = aioredis.Redis.from_url(settings.redis_url or "", decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app under uvicorn on a free loopback port, in this event loop; a client for it."""
    from api.app import create_app

    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                raise RuntimeError("the API did not start") from task.exception()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def run_cli(argv: list[str]) -> int:
    """`streamrec ARGV` as a user runs it; in a thread, since the CLI runs its own event loop."""
    from streamrec.cli import main

    def run() -> int:
        try:
            return main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)

    return await asyncio.to_thread(run)


def read_topics(settings: Settings, *topics: str, **config: object) -> list[Any]:
    """Every record of ``topics`` from the start (kafka-python messages), once no more come."""
    from kafka import KafkaConsumer

    from streams.kafka import bootstrap_servers

    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers(settings.infra.kafka_url),
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        **config,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()
