"""`streamrec keys ...` against the embedded Valkey: create, list, revoke, rotate."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from recommender.privacy.access import ApiKeyStore
from recommender.privacy.crypto import UserDataCipher, master_cipher
from tests.conftest import run_cli as asyncio_main

pytestmark = pytest.mark.integration


def _env(monkeypatch, settings, master_keys: str) -> None:
    monkeypatch.setenv("STREAMREC_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("STREAMREC_MASTER_KEYS", master_keys)


async def test_create_list_revoke(monkeypatch, capsys, settings, redis):
    _env(monkeypatch, settings, settings.require_master_keys()[0])
    assert (
        await asyncio_main(
            ["keys", "create", "--scope", "read", "--scope", "write", "--name", "shop"]
        )
        == 0
    )
    out = capsys.readouterr().out
    token = next(line.split()[1] for line in out.splitlines() if line.startswith("key:"))
    key = await ApiKeyStore(redis).verify(token)
    assert key is not None and key.scopes == {"read", "write"} and key.name == "shop"
    assert token.split("_", 2)[2] not in str(await redis.hgetall(f"apikey:{key.key_id}"))

    assert await asyncio_main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key.key_id in listed and "read write" in listed and token not in listed

    assert await asyncio_main(["keys", "revoke", key.key_id]) == 0
    assert await ApiKeyStore(redis).verify(token) is None
    assert await asyncio_main(["keys", "revoke", key.key_id]) == 1
    assert await asyncio_main(["keys", "create", "--scope", "root"]) == 2  # argparse refuses


async def test_revoke_takes_the_whole_key_too(monkeypatch, capsys, settings, redis):
    """A newcomer pastes the key they were given; `revoke` used to answer "no key"."""
    _env(monkeypatch, settings, settings.require_master_keys()[0])
    assert await asyncio_main(["keys", "create", "--scope", "read", "--quiet"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("sr_") and await ApiKeyStore(redis).verify(token) is not None
    assert await asyncio_main(["keys", "revoke", token]) == 0
    assert await ApiKeyStore(redis).verify(token) is None
    assert await asyncio_main(["keys", "revoke", token]) == 1
    assert "keys list" in capsys.readouterr().err


async def test_rotate_rewraps_under_the_new_primary(monkeypatch, capsys, settings, redis):
    old = settings.require_master_keys()[0]
    cipher = UserDataCipher(redis, master_cipher([old]))
    tokens = {p: await cipher.encrypt(p, p.encode()) for p in ("p1", "p2", "p3")}
    new = Fernet.generate_key().decode()
    _env(monkeypatch, settings, f"{new},{old}")
    assert await asyncio_main(["keys", "rotate"]) == 0
    assert "re-wrapped 3 data keys" in capsys.readouterr().out
    only_new = UserDataCipher(redis, master_cipher([new]))
    for p, token in tokens.items():
        assert await only_new.decrypt(p, token) == p.encode()
