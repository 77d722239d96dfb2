"""Which Redis errors are the infrastructure's, not the record's, and how a writer waits them out.

A record is only ever dead-lettered for something about the record. Redis that is away, that is
out of memory under `noeviction` (OOM), that cannot persist (MISCONF), that was demoted by a
failover (READONLY), that is still loading its AOF (LOADING) or busy with a script (BUSY) refuses
every record alike: the writer stalls, retries with backoff, reports the stall, and resumes with
nothing lost. The apply script aborts on the same reply codes (`scripts.INFRASTRUCTURE_CODES`),
before any write of its call, so a retry applies the whole batch once.

The memory policy streamrec needs is `noeviction`: an evicting policy drops data keys (an erasure
no one asked for) and dedupe markers (a replay then counts an event twice). `prepare_store`
refuses to start a worker against anything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    ConnectionError as RedisConnectionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
    TryAgainError,
)

from recommender.errors import StreamrecError

log = logging.getLogger(__name__)

#: Reply codes that say Redis cannot take writes now, whatever the command.
INFRASTRUCTURE_CODES = (
    "OOM",
    "MISCONF",
    "READONLY",
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "NOREPLICAS",
    "CLUSTERDOWN",
    "TRYAGAIN",
)

#: What redis-py raises for those codes it knows (it drops the code from the message); the rest
#: arrive as `ResponseError` with the code first. BusyLoadingError (LOADING) is a ConnectionError.
REFUSALS = (
    NoScriptError,  # a restarted or failed-over Redis forgot the scripts: loaded again on retry
    RedisConnectionError,
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    # A cluster in motion: the client's redirects and retries ran out (a slot still migrating:
    # TRYAGAIN until its keys have moved; a failover's election not yet over).
    ClusterError,
)

#: The longest wait between two tries while Redis refuses.
MAX_BACKOFF_S = 5.0

T = TypeVar("T")


class EvictingPolicyError(StreamrecError):
    """Redis may evict keys: streamrec would lose data and count replays twice."""


def is_infrastructure_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing every write (retry), not one record's fault."""
    if isinstance(exc, REFUSALS):
        return True
    if isinstance(exc, ResponseError):
        text = str(exc).lstrip("-").lstrip()
        # A script's error carries the command's reply first (`OOM command not allowed ...`).
        return text.split(" ", 1)[0] in INFRASTRUCTURE_CODES
    return False


class StallReport:
    """What a writer tells while Redis refuses it: since when, how often, the last reason.

    The worker's readiness and metrics read it (`stalled_s`, `stalls`)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.stalls = 0
        self.reason = ""

    def stalled(self, reason: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.stalls += 1
        self.reason = reason

    def resumed(self) -> None:
        self.since = None

    @property
    def stalled_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


async def with_retry(
    what: str,
    call: Callable[[], Awaitable[T]],
    report: StallReport | None = None,
    retry_if: Callable[[Exception], bool] = is_infrastructure_fault,
) -> T:
    """``call()``, retried with backoff while ``retry_if`` the error (by default: Redis
    refusing for a reason of its own): blocking the stream loses nothing, skipping or
    dead-lettering would. Other errors propagate."""
    delay = 0.1
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not retry_if(exc):
                raise
            if report is not None:
                report.stalled(f"{type(exc).__name__}: {exc}")
            log.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
        else:
            if report is not None:
                report.resumed()
            return result


#: Policies that never drop a key on their own (`volatile-*` ones drop keys with a TTL: every
#: feature and dedupe marker of streamrec has one).
SAFE_POLICIES = ("noeviction",)


def check_memory_policy(info_memory: dict[str, Any]) -> None:
    """Raise `EvictingPolicyError` unless ``info_memory`` (`INFO memory`) says `noeviction`.

    `INFO` and not `CONFIG GET`: managed Redis services often refuse CONFIG."""
    policy = str(info_memory.get("maxmemory_policy", "noeviction"))
    if policy not in SAFE_POLICIES:
        raise EvictingPolicyError(
            f"Redis' maxmemory-policy is {policy}: streamrec needs noeviction (an evicting "
            "policy silently drops features, which is an erasure no one asked for, and dedupe "
            "markers, which counts replayed events twice). Set `maxmemory-policy noeviction`; "
            "when memory is full, streamrec's worker stalls and resumes instead."
        )


def write_refusal(info: dict[str, Any]) -> str | None:
    """Why Redis, by its `INFO`, refuses writes now (None: it takes them), for readiness."""
    if str(info.get("role", "master")) != "master":
        return "READONLY: this Redis is a replica (after a failover?)"
    if info.get("aof_last_write_status", "ok") != "ok":
        return "MISCONF: Redis cannot write its append-only file (disk full?)"
    maxmemory = int(info.get("maxmemory", 0) or 0)
    if maxmemory and int(info.get("used_memory", 0) or 0) >= maxmemory:
        return "OOM: Redis has used its maxmemory; the worker waits until it has room"
    return None
