"""How every streamrec process opens Redis, and what it says when Redis is not there.

One place, so that the worker, the API and the CLI share one timeout and one error message: an
unreachable URL is a clear line within seconds, not a hang and a traceback.
"""

from __future__ import annotations

import re
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from recommender.errors import StreamrecError
from recommender.store.faults import check_memory_policy
from recommender.store.migration import migrate

#: How long a connection attempt may take before the URL counts as unreachable.
CONNECT_TIMEOUT_S = 5.0


class UnreachableError(StreamrecError):
    """Kafka or Redis does not answer at the configured URL."""


def redacted(url: str) -> str:
    """``url`` without its password (`redis://:secret@host` -> `redis://:***@host`)."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


#: The URL schemes of a Redis/Valkey Cluster (one node's address or several, comma-separated;
#: the client finds the rest).
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """``url`` as redis-py's cluster client takes it, when it names a cluster; else None."""
    scheme, sep, rest = url.partition("://")
    return f"{CLUSTER_SCHEMES[scheme]}://{rest}" if sep and scheme in CLUSTER_SCHEMES else None


def seed_nodes(seed: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL naming several seed nodes (`redis+cluster://u:p@node-1:6379,node-2:6379`)
    as redis-py takes it: the URL of the first, and the others. Any live seed is enough to find
    the cluster, so a process started while one node is down still connects."""
    scheme, _, rest = seed.partition("://")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    first, *others = hosts.split(",")
    nodes = []
    for other in others:
        host, _, port = other.partition(":")
        nodes.append((host, int(port or 6379)))
    return f"{scheme}://{auth}{at}{first}{slash}{path}", nodes


def redis_async(url: str) -> aioredis.Redis:
    """An asyncio client (text replies); connects on first use. A cluster URL gives redis-py's
    `RedisCluster` (it routes by slot and follows MOVED/ASK), typed as the common interface."""
    seed = cluster_url(url)
    if seed is not None:
        first, others = seed_nodes(seed)
        client: Any = aioredis.RedisCluster.from_url(
            first,
            startup_nodes=[aioredis.cluster.ClusterNode(h, p) for h, p in others] or None,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        return cast(aioredis.Redis, client)
    return aioredis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT_S
    )


def redis_sync(url: str) -> redis.Redis:
    """A blocking client (text replies), for the CLI and the runtime's polling."""
    seed = cluster_url(url)
    if seed is not None:
        first, others = seed_nodes(seed)
        client: Any = redis.RedisCluster.from_url(
            first,
            startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in others] or None,  # type: ignore[no-untyped-call]
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        return cast(redis.Redis, client)
    return redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT_S
    )


def prepare_store(url: str) -> int:
    """What a worker checks and does before it consumes: raise `faults.EvictingPolicyError`
    unless Redis at ``url`` keeps every key it is given (`maxmemory-policy noeviction`), and
    bring an older deployment's keys to the current schema (`migration`); return how many keys
    were renamed. `UnreachableError` when Redis does not answer."""
    client = redis_sync(url)
    try:
        if cluster_url(url):  # every primary's policy
            info: Any = client.info("memory", target_nodes=redis.RedisCluster.PRIMARIES)
            nodes = list(info.values())
        else:
            nodes = [client.info("memory")]
        for node in nodes:
            check_memory_policy(node)
        return migrate(client)
    except redis.RedisError as exc:
        raise unreachable_redis(url, exc) from None
    finally:
        client.close()


def unreachable_redis(url: str, exc: BaseException) -> UnreachableError:
    return UnreachableError(f"cannot reach Redis at {redacted(url)} (STREAMREC_REDIS_URL): {exc}")


def check_redis(url: str) -> None:
    """Raise `UnreachableError` unless Redis answers PING at ``url``."""
    client = redis_sync(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise unreachable_redis(url, exc) from None
    finally:
        client.close()
