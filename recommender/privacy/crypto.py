"""Envelope encryption of user data, with erasure by crypto-shredding.

Each user has a data key (a Fernet key) of their own. It is stored only wrapped by the master keys
(a `MultiFernet`; the first key encrypts, all of them decrypt), so rotating a master key re-wraps
data keys without touching the data. Deleting a user's data key makes every copy of their
ciphertext unreadable, wherever it lives (a backup, a Kafka record): that is the erasure.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from recommender.errors import ConfigurationError, StreamrecError
from recommender.store import keys, scripts


class DataKeyMissingError(StreamrecError):
    """The user has no data key: never had data, or was erased (shredded)."""


def master_cipher(master_keys: Sequence[str]) -> MultiFernet:
    """A MultiFernet from the configured keys, or a clear start-up error."""
    if not master_keys:
        raise ConfigurationError(
            "at least one master key is needed to encrypt user data (Fernet.generate_key())"
        )
    try:
        return MultiFernet([Fernet(k.encode()) for k in master_keys])
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"a master key is not a valid Fernet key: {exc}") from None


class UserDataCipher:
    """Encrypts and decrypts one user's data under their own data key."""

    def __init__(self, redis: aioredis.Redis, master: MultiFernet) -> None:
        self._redis = redis
        self._master = master
        self._cas = redis.register_script(scripts.COMPARE_AND_SET_LUA)

    async def _data_key(self, pseudonym: str, create: bool) -> Fernet:
        wrapped = await self._redis.get(keys.data_key(pseudonym))
        if wrapped is None:
            if not create:
                raise DataKeyMissingError("no data key for this user")
            fresh = self._master.encrypt(Fernet.generate_key()).decode()
            # NX: two writers racing for a new user must end up with one key.
            await self._redis.set(keys.data_key(pseudonym), fresh, nx=True)
            wrapped = await self._redis.get(keys.data_key(pseudonym))
        try:
            return Fernet(self._master.decrypt(str(wrapped).encode()))
        except InvalidToken:
            raise ConfigurationError(
                "a user's data key cannot be unwrapped with the configured master keys"
            ) from None

    async def encrypt(self, pseudonym: str, plaintext: bytes) -> bytes:
        return (await self._data_key(pseudonym, create=True)).encrypt(plaintext)

    async def decrypt(self, pseudonym: str, token: bytes) -> bytes:
        """Raises `DataKeyMissingError` after erasure, `InvalidToken` for a tampered token."""
        return (await self._data_key(pseudonym, create=False)).decrypt(token)

    async def shred(self, pseudonym: str) -> bool:
        """Destroy the user's data key; True if there was one. Idempotent."""
        return bool(await self._redis.delete(keys.data_key(pseudonym)))

    async def rotate(self) -> int:
        """Re-wrap every data key under the primary master key; return how many.

        Raises `ConfigurationError` (before changing anything, thanks to the canary) when the
        configured keys cannot unwrap what is stored."""
        await check_master_keys(self._redis, self._master, create=False)
        rotated = 0
        async for key in self._redis.scan_iter(match=f"{keys.DATA_KEY_PREFIX}*", count=1000):
            wrapped = await self._redis.get(key)
            if wrapped is None:
                continue  # erased meanwhile
            try:
                fresh = self._master.rotate(str(wrapped).encode()).decode()
            except InvalidToken:
                raise ConfigurationError(
                    f"STREAMREC_MASTER_KEYS cannot unwrap {key}: keep every old master key after "
                    "the new one until `streamrec keys rotate` has run"
                ) from None
            # Only if unchanged since read, so a concurrent shred is never undone.
            rotated += int(await self._cas(keys=[key], args=[wrapped, fresh]))
        return rotated


async def check_master_keys(
    redis: aioredis.Redis, master: MultiFernet, create: bool = True
) -> None:
    """Fail at start-up, not at the first request, when the configured master keys cannot
    unwrap what is stored. One canary, wrapped like a data key (so `rotate` re-wraps it too),
    is written by the first start and unwrapped by every later one: O(1), and it catches a wrong
    key even before any user has data."""
    canary = await redis.get(keys.MASTER_KEY_CANARY)
    if canary is None:
        if not create:
            return
        await redis.set(keys.MASTER_KEY_CANARY, master.encrypt(b"streamrec").decode(), nx=True)
        return
    try:
        master.decrypt(str(canary).encode())
    except InvalidToken:
        raise ConfigurationError(
            "STREAMREC_MASTER_KEYS cannot unwrap the data keys already stored: a wrong key, or "
            "the old key was dropped before `streamrec keys rotate` ran (to rotate, put the new "
            "key first and keep the old one after it)"
        ) from None
