"""Envelope encryption against a real Valkey: round trips, rotation, shredding, tampering."""

import pytest
from cryptography.fernet import Fernet, InvalidToken

from recommender.errors import ConfigurationError
from recommender.privacy.crypto import DataKeyMissingError, UserDataCipher, master_cipher

pytestmark = pytest.mark.integration


@pytest.fixture
def old_key() -> str:
    return Fernet.generate_key().decode()


async def test_round_trip_and_per_user_keys(redis, old_key):
    cipher = UserDataCipher(redis, master_cipher([old_key]))
    a = await cipher.encrypt("p-alice", b"alice@example.com")
    b = await cipher.encrypt("p-bob", b"alice@example.com")
    assert a != b and b"alice" not in a
    assert await cipher.decrypt("p-alice", a) == b"alice@example.com"
    with pytest.raises(InvalidToken):  # bob's key cannot open alice's data
        await cipher.decrypt("p-bob", a)
    stored = [await redis.get(k) async for k in redis.scan_iter(match="dek:*")]
    assert len(stored) == 2
    # What Redis holds is wrapped: on its own it opens nothing.
    for wrapped in stored:
        with pytest.raises((ValueError, InvalidToken)):
            Fernet(wrapped.encode()).decrypt(a)


async def test_rotation_rewraps_every_key_and_the_new_key_alone_decrypts(redis, old_key):
    old = UserDataCipher(redis, master_cipher([old_key]))
    tokens = {f"p{i}": await old.encrypt(f"p{i}", f"secret {i}".encode()) for i in range(20)}
    new_key = Fernet.generate_key().decode()
    rotated = await UserDataCipher(redis, master_cipher([new_key, old_key])).rotate()
    assert rotated == 20
    new_only = UserDataCipher(redis, master_cipher([new_key]))
    for p, token in tokens.items():
        assert await new_only.decrypt(p, token) == f"secret {p[1:]}".encode()


async def test_shredding_makes_every_copy_unreadable_and_is_idempotent(redis, old_key):
    cipher = UserDataCipher(redis, master_cipher([old_key]))
    token = await cipher.encrypt("p-carol", b"carol")
    assert await cipher.shred("p-carol") is True
    assert await cipher.shred("p-carol") is False
    with pytest.raises(DataKeyMissingError):
        await cipher.decrypt("p-carol", token)


async def test_a_flipped_byte_is_rejected(redis, old_key):
    cipher = UserDataCipher(redis, master_cipher([old_key]))
    token = bytearray(await cipher.encrypt("p-dan", b"dan"))
    token[len(token) // 2] ^= 1
    with pytest.raises(InvalidToken):
        await cipher.decrypt("p-dan", bytes(token))


async def test_bad_or_wrong_master_keys_fail_clearly(redis, old_key):
    with pytest.raises(ConfigurationError, match="valid Fernet key"):
        master_cipher(["not-a-key"])
    with pytest.raises(ConfigurationError, match="master key"):
        master_cipher([])
    await UserDataCipher(redis, master_cipher([old_key])).encrypt("p-eve", b"eve")
    wrong = UserDataCipher(redis, master_cipher([Fernet.generate_key().decode()]))
    with pytest.raises(ConfigurationError, match="unwrapped"):
        await wrong.encrypt("p-eve", b"again")
