"""API keys with scopes, and a per-key rate limit; both kept in Redis.

A key is shown once, when it is created: `sr_<key id>_<secret>`. Redis holds only the SHA-256 of
the secret (the secret is 256 random bits, so a fast hash is enough: there is nothing to guess),
and the comparison is constant-time. The key id is public: it names the key in `keys list`,
in logs and in the rate limiter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import redis.asyncio as aioredis

from recommender.errors import StreamrecError
from recommender.memo import ExpiringMemo
from recommender.store import keys, scripts
from recommender.store.faults import is_infrastructure_fault

#: read: recommendations, similar, popular, trending, metrics; explain: `explain=true` (it names
#: items from the user's history); write: publish events and items; profile: read and write
#: users' profiles (personal data, decrypted); admin: export and erase users. Keys are held by
#: services, not end users: a key is not bound to the users it may ask about.
Scope = Literal["read", "explain", "write", "profile", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
TOKEN_PREFIX = "sr"  # noqa: S105 (the visible prefix of every key)


class InvalidScopeError(StreamrecError):
    """A scope that does not exist."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]
    created_at: int

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    token: str  # shown once; only its hash is stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1].isalnum():
        return None
    return parts[1], parts[2]


#: Verified keys a process keeps (by the digest of their secret).
KEYS_KEPT = 10_000


class ApiKeyStore:
    """Creates, lists, revokes and verifies API keys.

    ``cache_s`` lets a process trust a key it verified for that long without asking Redis again:
    the serving path then costs no extra round trip, and a revocation takes effect within it.
    While Redis cannot be read (a restart loading its AOF, a failover), a key this process
    verified before is still taken (a revocation then waits for Redis to answer again).
    """

    def __init__(self, redis: aioredis.Redis, cache_s: float = 0.0) -> None:
        self._redis = redis
        self._cache: ExpiringMemo[str, ApiKey] = ExpiringMemo(cache_s, KEYS_KEPT)
        self._known: dict[str, ApiKey] = {}  # every key verified, for while Redis is away

    async def create(self, scopes: set[str], name: str = "") -> IssuedKey:
        unknown = set(scopes) - set(SCOPES)
        if not scopes or unknown:
            raise InvalidScopeError(
                f"scopes must be some of {', '.join(SCOPES)}; got {sorted(scopes)}"
            )
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        key = ApiKey(key_id, name, frozenset(scopes), int(time.time()))
        await self._redis.hset(
            keys.api_key(key_id),
            mapping={
                "hash": _digest(secret),
                "name": name,
                "scopes": " ".join(sorted(scopes)),
                "created_at": key.created_at,
            },
        )
        return IssuedKey(key, f"{TOKEN_PREFIX}_{key_id}_{secret}")

    async def revoke(self, key: str) -> bool:
        """Revoke a key named by its id or by the whole key; True if it existed. Its rate-limit
        bucket goes with it."""
        split = _split(key)
        key_id = split[0] if split is not None else key
        return bool(await self._redis.delete(keys.api_key(key_id), keys.rate_bucket(key_id)))

    async def list(self) -> list[ApiKey]:
        found = []
        async for name in self._redis.scan_iter(match=f"{keys.API_KEY_PREFIX}*", count=1000):
            raw = await self._redis.hgetall(name)
            if raw:
                found.append(_parse(str(name).removeprefix(keys.API_KEY_PREFIX), raw))
        return sorted(found, key=lambda k: (k.created_at, k.key_id))

    async def verify(self, token: str) -> ApiKey | None:
        """The key ``token`` stands for, or None (unknown, revoked, or a wrong secret)."""
        split = _split(token)
        if split is None:
            return None
        key_id, secret = split
        digest = _digest(secret)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        try:
            raw = await self._redis.hgetall(keys.api_key(key_id))
        except Exception as exc:
            known = self._known.get(digest)
            if known is None or not is_infrastructure_fault(exc):
                raise
            return known
        if not raw or not hmac.compare_digest(str(raw.get("hash", "")), digest):
            self._known.pop(digest, None)
            return None
        key = _parse(key_id, raw)
        self._cache.put(digest, key)
        if len(self._known) >= KEYS_KEPT:
            self._known.clear()
        self._known[digest] = key
        return key


def _parse(key_id: str, raw: Mapping[Any, Any]) -> ApiKey:
    return ApiKey(
        key_id,
        str(raw.get("name", "")),
        frozenset(str(raw.get("scopes", "")).split()),
        int(raw.get("created_at", 0)),
    )


@dataclass(slots=True)
class _Lease:
    tokens: int  # taken from the shared bucket, not yet used
    size: int  # how many were taken
    until: float  # monotonic time the unused ones are dropped
    empty_until: float = 0.0  # the bucket had none; the monotonic time one is due


class RateLimiter:
    """A token bucket per API key, in Redis so that every API replica shares it.

    A replica takes tokens from the bucket in leases rather than one per request: a lease
    used up before it ends is followed by one twice its size, one that ends with tokens left by
    one half its size, never more than the bucket refills in a tenth of a second. A key at a
    steady rate then costs one Redis call per lease, not per request (the call was a tenth of a
    request's time in a py-spy profile of `bench serve`); a key whose bucket refills less than
    two tokens in a tenth of a second is served one token at a time, exactly. The price: a
    replica may hold up to that tenth of a second's tokens for LEASE_S unused, which other
    replicas cannot use meanwhile; a key is never admitted past its rate. A key over its rate
    is answered from the wait the bucket gave, with no call, until a token is due.
    """

    LEASE_S = 1.0

    def __init__(
        self,
        redis: aioredis.Redis,
        rate_per_s: float,
        burst: int,
        ingest: tuple[float, int] = (10_000.0, 20_000),
    ) -> None:
        """``ingest``: the rate and burst of what a key may publish (`charge`)."""
        self._bucket = redis.register_script(scripts.RATE_LIMIT_LUA)
        self._charge = redis.register_script(scripts.RATE_CHARGE_LUA)
        self._ingest = ingest
        self._rate = rate_per_s
        self._burst = burst
        self._max_lease = max(1, int(min(burst, rate_per_s * 0.1)))
        self._leases: dict[str, _Lease] = {}

    async def charge(self, key_id: str, cost: int) -> float:
        """Charge ``cost`` units of publishing to the key's ingest bucket: 0 when admitted
        (the bucket may go into debt), else the seconds until it may publish again."""
        rate, burst = self._ingest
        wait_ms = await self._charge(
            keys=[keys.ingest_bucket(key_id)],
            args=[int(time.time() * 1000), rate, burst, cost],
        )
        return int(wait_ms) / 1000

    async def acquire(self, key_id: str) -> float:
        """0 when the request may go ahead; otherwise the seconds until it may."""
        now = time.monotonic()
        lease = self._leases.get(key_id)
        if lease is not None and lease.tokens > 0 and now < lease.until:
            lease.tokens -= 1
            return 0.0
        if lease is not None and now < lease.empty_until:
            return lease.empty_until - now  # over the rate: no Redis call until a token is due
        want = 1
        if lease is not None:
            used_up = lease.tokens == 0
            want = min(self._max_lease, lease.size * 2) if used_up else max(1, lease.size // 2)
        taken, wait_ms = await self._bucket(
            keys=[keys.rate_bucket(key_id)],
            args=[int(time.time() * 1000), self._rate, self._burst, want],
        )
        if len(self._leases) > 10_000:
            self._leases.clear()
        if int(taken) == 0:
            wait_s = int(wait_ms) / 1000
            size = lease.size if lease is not None else 1
            self._leases[key_id] = _Lease(0, size, now, empty_until=now + wait_s)
            return wait_s
        self._leases[key_id] = _Lease(int(taken) - 1, int(taken), now + self.LEASE_S)
        return 0.0
