"""`Runtime`: brings the whole system up (infrastructure, topics, worker, API) and down again."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from recommender.errors import ConfigurationError, StreamrecError
from recommender.privacy.access import ApiKeyStore
from recommender.settings import Settings
from recommender.store.connections import cluster_url, redis_async, redis_sync
from streamrec.embedded import LOCAL_S3_CREDENTIALS, EmbeddedInfrastructure, free_port
from streamrec.progress import Progress, applied_at_least, read_progress, wait_for as poll_until
from streamrec.supervisor import Child, Supervisor
from streams.kafka import check_kafka, create_topics

__all__ = ["ChildExitedError", "PortInUseError", "Progress", "Runtime", "applied_at_least"]


class PortInUseError(ConfigurationError):
    """The API's port is taken (by another streamrec, most likely)."""


class ChildExitedError(StreamrecError):
    """A process the runtime started exited on its own."""


def ensure_port_free(host: str, port: int) -> None:
    """Raise `PortInUseError` if ``host:port`` cannot be bound (as uvicorn will bind it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigurationError(
                    f"cannot listen on {host}:{port}: {exc.strerror}"
                ) from None
            raise PortInUseError(
                f"port {port} on {host} is already in use (another `streamrec up`?): pass "
                "--port N, or set STREAMREC_API_PORT"
            ) from None


def _instance_of(resp: httpx.Response) -> object:
    """The `instance` a streamrec readiness answer names (None from anything else)."""
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("instance") if isinstance(body, dict) else None


def last_line(text: str) -> str:
    """What a dying process said last: the last exception line of its log (a traceback's last
    line, `ValueError: ...`), else its last non-blank line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", ln)]
    return (errors or lines or ["(no output)"])[-1]


#: The embedded fleet (`streamrec up --cluster`): partitions a topic, workers.
CLUSTER_PARTITIONS, CLUSTER_WORKERS = 6, 2

#: The consumer group session timeout with the embedded broker (see `Runtime.start`).
EMBEDDED_SESSION_TIMEOUT_S = 2.0


class Runtime:
    """One streamrec system: embedded Tansu and Valkey unless URLs are configured.

    Parameters
    ----------
    settings
        As read from the environment.
    api_port
        Port for the API; None takes `settings.api_port`, 0 a free one.
    aof
        The embedded Valkey keeps an append-only file (`infra.restart_valkey` restores it).
    cluster
        The embedded fleet (`streamrec up --cluster`): a 3-primary Valkey Cluster, topics of
        `CLUSTER_PARTITIONS` partitions, `CLUSTER_WORKERS` workers, two API processes, and
        model versions in a local S3 server (moto's, where it is installed).
    cluster_replicas
        With ``cluster``, a replica for each primary (a failover's replacement).
    """

    def __init__(
        self,
        settings: Settings,
        api_port: int | None = None,
        aof: bool = False,
        cluster: bool = False,
        cluster_replicas: int = 0,
    ) -> None:
        self.embedded = not (settings.kafka_url and settings.redis_url)
        self._cluster = cluster and self.embedded
        self._workdir = Path(tempfile.mkdtemp(prefix="streamrec-"))
        self.log_dir = self._workdir / "logs"
        self.log_dir.mkdir()
        self.supervisor = Supervisor(self.log_dir)
        self._infra = (
            EmbeddedInfrastructure(
                self.supervisor,
                self._workdir,
                aof=aof,
                cluster=cluster,
                cluster_replicas=cluster_replicas,
            )
            if self.embedded
            else None
        )
        port = settings.api_port if api_port is None else api_port
        self._api_port = port or free_port()
        self._base_settings = settings
        self.settings = settings
        self.instance_id = secrets.token_hex(8)
        self._clients: dict[str, redis.Redis] = {}

    @property
    def infra(self) -> EmbeddedInfrastructure:
        """The embedded broker and Valkey (only when this runtime started them)."""
        if self._infra is None:
            raise RuntimeError("this runtime uses Kafka and Redis it did not start")
        return self._infra

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self._api_port}"

    def start(self, worker: bool = True, api: bool = True) -> None:
        if api:
            ensure_port_free(self.settings.api_host, self._api_port)
        updates: dict[str, object] = {"api_port": self._api_port, "instance_id": self.instance_id}
        if self._infra is None:
            check_kafka(self._base_settings.kafka_url or "")
        else:
            self._infra.start()
            updates |= {
                "kafka_url": self._infra.kafka_url,
                "redis_url": self._infra.redis_url,
                # The embedded broker and Valkey forget everything; so do the models.
                "data_dir": self._workdir / "data",
            }
        if self.embedded:
            if "worker_session_timeout_s" not in self._base_settings.model_fields_set:
                # Tansu takes a session this short (Apache Kafka refuses less than its
                # group.min.session.timeout.ms, 6 s by default): a killed worker's partitions
                # move in about 2 s instead of 6.
                updates["worker_session_timeout_s"] = EMBEDDED_SESSION_TIMEOUT_S
            # Throwaway secrets for a throwaway store; configured ones always win.
            if self._base_settings.pseudonym_key is None:
                updates["pseudonym_key"] = SecretStr(secrets.token_urlsafe(32))
            if self._base_settings.master_keys is None:
                updates["master_keys"] = SecretStr(Fernet.generate_key().decode())
        if self._cluster:
            updates |= self._fleet()
        self.settings = self._base_settings.model_copy(update=updates)
        self.settings.require_secrets()
        create_topics(self.settings)
        if worker:
            self.start_worker()
            for n in range(2, (CLUSTER_WORKERS if self._cluster else 1) + 1):
                self.start_worker(f"worker-{n}")
        if api:
            self.start_api()

    def _fleet(self) -> dict[str, object]:
        """What the embedded fleet changes in the settings (`cluster`)."""
        fleet: dict[str, object] = {"topic_partitions": CLUSTER_PARTITIONS, "api_processes": 2}
        endpoint = self.infra.start_object_store()
        if endpoint is not None:
            fleet["models_url"] = "s3://models/versions"
            fleet["models_storage_options"] = {"endpoint_url": endpoint, **LOCAL_S3_CREDENTIALS}
        return fleet

    def start_worker(self, name: str = "worker", settings: Settings | None = None) -> Child:
        """Start a worker; ``settings`` (e.g. another consumer group) default to the runtime's."""
        argv = [sys.executable, "-m", "streamrec", "worker"]
        return self.supervisor.start(name, argv, self._child_env(settings))

    def start_api(self) -> Child:
        argv = [sys.executable, "-m", "streamrec", "api"]
        child = self.supervisor.start("api", argv, self._child_env())
        self.wait_api_ready()
        return child

    def _child_env(self, settings: Settings | None = None) -> dict[str, str]:
        env = (settings or self.settings).as_env()
        return {**os.environ, **env, "OPENBLAS_NUM_THREADS": "1"}

    def wait_api_ready(self, timeout_s: float = 60.0) -> None:
        """Until our own API answers ready: an answer from another process on the port (whose
        instance id is not ours) is an error, not a success."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_children()
            try:
                resp = httpx.get(f"{self.api_url}/v1/health/ready", timeout=1.0)
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            if _instance_of(resp) != self.instance_id:
                raise PortInUseError(
                    f"another process answers on {self.api_url} (not the API this command "
                    "started): pass --port N, or set STREAMREC_API_PORT"
                )
            if resp.status_code == 200:
                return
            time.sleep(0.1)
        raise TimeoutError(f"the API did not answer on {self.api_url} in {timeout_s}s")

    def create_api_key(self, scopes: set[str], name: str) -> str:
        """A new API key on this runtime's Redis; returns the token (shown once)."""

        async def create() -> str:
            client = redis_async(self.settings.infra.redis_url)
            try:
                return (await ApiKeyStore(client).create(scopes, name)).token
            finally:
                await client.aclose()

        return asyncio.run(create())

    def check_children(self) -> None:
        """Raise, with the end of its log, if a child died."""
        for child in self.supervisor.dead():
            raise ChildExitedError(
                f"the {child.name} process exited with code {child.process.returncode}: "
                f"{last_line(self.supervisor.tail(child))}"
            )

    def progress(self, redis_url: str | None = None) -> Progress:
        """Counters and served model, read in one round trip (default: the runtime's Redis)."""
        url = redis_url or self.settings.infra.redis_url
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = redis_sync(url)
        shards = self.settings.redis_cluster_shards if cluster_url(url) else None
        return read_progress(client, shards)

    def wait_for(
        self,
        done: Callable[[Progress], bool],
        timeout_s: float,
        redis_url: str | None = None,
        poll_s: float = 0.05,
    ) -> Progress:
        """Poll `progress` until ``done``; raise if a child dies or the time runs out."""
        return poll_until(
            lambda: self.progress(redis_url), done, timeout_s, poll_s, self.check_children
        )

    def stop(self) -> None:
        """Stop every child, the API and worker before the infrastructure, and remove the
        run's directory (the embedded infrastructure keeps its data inside it)."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self.supervisor.stop_all()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Runtime:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
