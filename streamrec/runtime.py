"""`Runtime`: brings the whole system up (infrastructure, topics, worker, API) and down again."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import redis
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from recommender import keys
from recommender.access import ApiKeyStore
from recommender.feature_store import parse_stats
from recommender.model_state import ServedModel
from recommender.settings import Settings
from streamrec.embedded import EmbeddedInfrastructure, free_port
from streamrec.supervisor import Child, Supervisor
from streams.kafka import create_topics


@dataclass(frozen=True)
class Progress:
    """How far the system got: the feature store's counters and the served model."""

    stats: dict[str, int]
    served: ServedModel | None

    @property
    def applied(self) -> int:
        return self.stats.get("events_applied", 0)

    @property
    def model_watermark(self) -> int:
        return self.served.watermark if self.served else 0


def applied_at_least(n: int) -> Callable[[Progress], bool]:
    """A `Runtime.wait_for` condition: the worker applied ``n`` events or more."""
    return lambda progress: progress.applied >= n


class Runtime:
    """One streamrec system: embedded Tansu and Valkey unless URLs are configured.

    Parameters
    ----------
    settings
        As read from the environment.
    api_port
        Port for the API; None takes `settings.api_port`, 0 a free one.
    """

    def __init__(self, settings: Settings, api_port: int | None = None) -> None:
        self.embedded = not (settings.kafka_url and settings.redis_url)
        self._workdir = Path(tempfile.mkdtemp(prefix="streamrec-"))
        self.log_dir = self._workdir / "logs"
        self.log_dir.mkdir()
        self.supervisor = Supervisor(self.log_dir)
        self._infra = (
            EmbeddedInfrastructure(self.supervisor, self._workdir) if self.embedded else None
        )
        port = settings.api_port if api_port is None else api_port
        self._api_port = port or free_port()
        self._base_settings = settings
        self.settings = settings
        self._clients: dict[str, redis.Redis] = {}

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self._api_port}"

    def start(self, worker: bool = True, api: bool = True) -> None:
        updates: dict[str, object] = {"api_port": self._api_port}
        if self._infra is not None:
            self._infra.start()
            updates |= {
                "kafka_url": self._infra.kafka_url,
                "redis_url": self._infra.redis_url,
                # The embedded broker and Valkey forget everything; so do the models.
                "data_dir": self._workdir / "data",
            }
        if self.embedded:
            # Throwaway secrets for a throwaway store; configured ones always win.
            if self._base_settings.pseudonym_key is None:
                updates["pseudonym_key"] = SecretStr(secrets.token_urlsafe(32))
            if self._base_settings.master_keys is None:
                updates["master_keys"] = SecretStr(Fernet.generate_key().decode())
        self.settings = self._base_settings.model_copy(update=updates)
        self.settings.require_secrets()
        create_topics(self.settings)
        if worker:
            self.start_worker()
        if api:
            self.start_api()

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
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_children()
            try:
                if httpx.get(f"{self.api_url}/v1/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the API did not answer on {self.api_url} in {timeout_s}s")

    def create_api_key(self, scopes: set[str], name: str) -> str:
        """A new API key on this runtime's Redis; returns the token (shown once)."""

        async def create() -> str:
            client = aioredis.Redis.from_url(self.settings.redis_url or "", decode_responses=True)
            try:
                return (await ApiKeyStore(client).create(scopes, name)).token
            finally:
                await client.aclose()

        return asyncio.run(create())

    def check_children(self) -> None:
        """Raise, with the end of its log, if a child died."""
        for child in self.supervisor.dead():
            raise RuntimeError(
                f"{child.name} exited with code {child.process.returncode}:\n"
                f"{self.supervisor.tail(child)}"
            )

    def progress(self, redis_url: str | None = None) -> Progress:
        """Counters and served model, read in one round trip (default: the runtime's Redis)."""
        url = redis_url or self.settings.redis_url or ""
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = redis.Redis.from_url(url, decode_responses=True)
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.STATS)
        pipe.hgetall(keys.MODEL_CURRENT)
        stats, current = pipe.execute()
        return Progress(parse_stats(stats), ServedModel.from_hash(current))

    def wait_for(
        self,
        done: Callable[[Progress], bool],
        timeout_s: float,
        redis_url: str | None = None,
        poll_s: float = 0.05,
    ) -> Progress:
        """Poll `progress` until ``done``; raise if a child dies or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_children()
            progress = self.progress(redis_url)
            if done(progress):
                return progress
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not done after {timeout_s}s: {progress.stats}, model {progress.served}"
                )
            time.sleep(poll_s)

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
