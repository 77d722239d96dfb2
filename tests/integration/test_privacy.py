"""Personal data through the API: encrypted profiles, export, and erasure by crypto-shredding,
proven by scanning every key and value Valkey holds afterwards."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet, InvalidToken

from recommender.cf.refits import Trainer
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.privacy.access import ApiKeyStore
from recommender.privacy.crypto import master_cipher
from recommender.serving import reasons
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import Interaction, ItemMeta
from tests.conftest import TEST_SECRET, serve_api
from tests.factories import SCI_FI, clustered_interactions, landed

pytestmark = pytest.mark.integration

USER = "erin.example@mail.test"
PROFILE = {
    "email": USER,
    "name": "Erin Example",
    "age": 41,
    "country": "NL",
    "attributes": {"newsletter": True},
}


@pytest.fixture
async def admin(redis) -> dict[str, str]:
    token = (await ApiKeyStore(redis).create({"read", "write", "profile", "admin"}, "t")).token
    return {"X-API-Key": token}


async def _all_bytes(settings) -> list[tuple[Any, list[Any]]]:
    """Every key in the database, with every value it holds, as raw bytes."""
    raw: Any = aioredis.Redis.from_url(settings.redis_url or "")
    found: list[tuple[Any, list[Any]]] = []
    try:
        async for name in raw.scan_iter(count=1000):
            kind = str(await raw.type(name), "ascii")
            values: list[Any]
            if kind == "string":
                values = [await raw.get(name)]
            elif kind == "hash":
                values = [x for kv in (await raw.hgetall(name)).items() for x in kv]
            elif kind == "list":
                values = await raw.lrange(name, 0, -1)
            elif kind == "set":
                values = list(await raw.smembers(name))
            elif kind == "zset":
                values = [m for m, _ in await raw.zrange(name, 0, -1, withscores=True)]
            else:
                raise AssertionError(f"unexpected type {kind} for {name!r}")
            found.append((name, values))
    finally:
        await raw.aclose()
    return found


async def test_profiles_are_stored_only_encrypted(settings, redis, admin):
    async with serve_api(settings) as api:
        assert (await api.get(f"/v1/users/{USER}/profile", headers=admin)).status_code == 404
        put = await api.put(f"/v1/users/{USER}/profile", json=PROFILE, headers=admin)
        assert put.status_code == 200
        assert (await api.get(f"/v1/users/{USER}/profile", headers=admin)).json() == PROFILE
        extra = await api.put("/v1/users/x/profile", json={"ssn": "1"}, headers=admin)
        assert extra.status_code == 422
    for name, values in await _all_bytes(settings):
        for blob in [name, *values]:
            assert b"Erin" not in blob and USER.encode() not in blob


async def test_erasure_leaves_nothing_readable_and_is_idempotent(settings, redis, admin):
    store = FeatureStore(redis, settings)
    p = keys.pseudonymize(TEST_SECRET.encode(), USER)
    await store.catalogue.upsert_items(
        [ItemMeta(i, f"Film {i}", 1, None, ("scifi",)) for i in SCI_FI]
    )
    mine = [
        Interaction(uuid.uuid4().hex, USER, item, "purchase", 1_780_000_000_000 + n)
        for n, item in enumerate(SCI_FI[:6])
    ]
    await store.apply_interactions(clustered_interactions() + mine)
    trainer = Trainer(store, ModelState(redis), cf_registry(settings.models_dir), settings)
    version = await trainer.refit()
    assert await redis.hexists(keys.user_vectors(version), p)

    async with serve_api(settings) as api:
        await api.put(f"/v1/users/{USER}/profile", json=PROFILE, headers=admin)
        export = (await api.get(f"/v1/users/{USER}/export", headers=admin)).json()
        assert export["profile"] == PROFILE and set(export["interactions"]) == set(SCI_FI[:6])
        assert len(export["recent"]) == 6 and export["has_data_key"]
        before = (await api.get(f"/v1/users/{USER}/recommendations", headers=admin)).json()
        assert {i["reason"] for i in before["items"]} == {reasons.CF}

        # What an attacker with a backup would hold: the wrapped data key and the ciphertext.
        master = master_cipher(settings.require_master_keys())
        data_key = Fernet(master.decrypt((await redis.get(keys.data_key(p))).encode()))
        token = await redis.get(keys.user_profile(p))
        assert data_key.decrypt(token.encode())  # readable before the erasure

        # The request cached them (a write the answer does not wait for).
        assert await landed(lambda: redis.hexists(keys.user_recs(version), p), bool)
        gone = (await api.delete(f"/v1/users/{USER}", headers=admin)).json()
        assert gone["data_key_destroyed"] is True
        assert gone["keys_deleted"] >= 5 and gone["model_vectors_removed"] == 1
        assert not await redis.hexists(keys.user_recs(version), p)  # the cached candidates too

        tombstone = keys.erased(p).encode()  # pseudonymous: when, not who or what
        for name, values in await _all_bytes(settings):
            if name == tombstone:
                continue
            for blob in [name, *values]:
                assert USER.encode() not in blob and p.encode() not in blob, name
            for value in values:
                with pytest.raises((InvalidToken, TypeError, ValueError)):
                    data_key.decrypt(value)
        assert not await redis.exists(keys.data_key(p))

        assert (await api.get(f"/v1/users/{USER}/export", headers=admin)).status_code == 404
        assert (await api.get(f"/v1/users/{USER}/profile", headers=admin)).status_code == 404
        await asyncio.sleep(0.3)  # the API's impression buffer flushed: the erasure took it too
        assert not await redis.exists(keys.user_lists(p), keys.user_hits(p))
        again = (await api.delete(f"/v1/users/{USER}", headers=admin)).json()
        assert again == {
            "user_id": USER,
            "data_key_destroyed": False,
            "keys_deleted": 0,
            "model_vectors_removed": 0,
        }
        # Served again afterwards, the user is a stranger.
        after = (await api.get(f"/v1/users/{USER}/recommendations", headers=admin)).json()
        cold = (await api.get("/v1/users/never-seen/recommendations", headers=admin)).json()
        assert {i["reason"] for i in after["items"]} == {reasons.POPULAR}
        assert [i["item_id"] for i in after["items"]] == [i["item_id"] for i in cold["items"]]
        # ... and being served brings back nothing of theirs (on main: their list of lists).
        await asyncio.sleep(0.3)
        names = [name for name, _ in await _all_bytes(settings) if p.encode() in name]
        assert names == [keys.erased(p).encode()]


def _per_user_key_builders() -> list[Callable[[str], str]]:
    """Every key builder in `recommender.store.keys` that takes a pseudonym: derived, not listed, so
    a new per-user key family is covered by the test below the day it is added."""
    return [
        f
        for name, f in vars(keys).items()
        if inspect.isfunction(f)
        and f.__module__ == keys.__name__
        and list(inspect.signature(f).parameters) == ["pseudonym"]
        and name not in ("user_bucket", "user_base")  # the parts of a name, not keys
    ]


async def test_erasure_forgets_every_per_user_key_family(settings, redis, admin):
    builders = _per_user_key_builders()
    assert {f.__name__ for f in builders} >= {
        "user_items",
        "user_recent",
        "user_counts",
        "user_categories",
        "user_profile",
        "user_reviews",
        "data_key",
    }
    p = keys.pseudonymize(TEST_SECRET.encode(), USER)
    for build in builders:
        await redis.set(build(p), "x")
    await redis.zadd(keys.USERS_ACTIVE, {p: 1})
    state = ModelState(redis)
    await state.promote("v1", 0)  # served before: a rollback's version keeps its vectors
    await state.promote("v2", 0)
    await redis.hset(keys.user_vectors("v1"), p, "1:AAAA")
    await redis.hset(keys.user_recs("v2"), p, "1|||")
    await redis.hset(keys.pending_recs("t"), p, "1|||")
    await redis.sadd(keys.PENDING_RECS_INDEX, keys.pending_recs("t"))
    async with serve_api(settings) as api:
        assert (await api.delete(f"/v1/users/{USER}", headers=admin)).status_code == 200
    left = [b.__name__ for b in builders if await redis.exists(b(p))]
    # The tombstone stays on purpose (keys.erased): what the erasure leaves, not forgets.
    assert left == ["erased"], f"erasure does not forget {left}: give their owner a `forget`"
    assert await redis.zscore(keys.USERS_ACTIVE, p) is None
    assert not await redis.hexists(keys.user_vectors("v1"), p)
    assert not await redis.hexists(keys.user_recs("v2"), p)
    assert not await redis.hexists(keys.pending_recs("t"), p)


async def test_reviews_are_kept_encrypted_exported_and_erased(settings, redis, admin):
    from recommender.privacy.crypto import UserDataCipher
    from recommender.privacy.reviews import ReviewStore

    store = FeatureStore(redis, settings)
    cipher = UserDataCipher(redis, master_cipher(settings.require_master_keys()))
    reviews = ReviewStore(redis, cipher, store.pseudonym_of, settings.user_ttl_s)
    said = "Erin thinks the ending is wonderful"
    event = Interaction("r-1", USER, SCI_FI[0], "review", 1_780_000_000_000, 5.0, said)
    await reviews.record([event])
    await reviews.record([event])  # a redelivery keeps one copy
    await store.apply_interactions([event])
    for name, values in await _all_bytes(settings):
        for blob in [name, *values]:
            assert b"wonderful" not in blob and USER.encode() not in blob
    async with serve_api(settings) as api:
        export = (await api.get(f"/v1/users/{USER}/export", headers=admin)).json()
        assert [(r["text"], r["value"], r["item_id"]) for r in export["reviews"]] == [
            (said, 5.0, SCI_FI[0])
        ]
        assert (await api.delete(f"/v1/users/{USER}", headers=admin)).status_code == 200
    p = keys.pseudonymize(TEST_SECRET.encode(), USER)
    assert not await redis.exists(keys.user_reviews(p))
    assert await reviews.reviews(p) == []


async def test_an_event_from_before_an_erasure_never_brings_the_user_back(settings, redis, admin):
    """On main a review event redelivered after DELETE minted a new data key and stored the
    text again: the erased review was back in the user's export."""
    from streams.handlers import RawRecord

    store = FeatureStore(redis, settings)
    review = {
        "event_id": "r-1", "user_id": USER, "item_id": SCI_FI[0], "type": "review",
        "value": 5, "text": "a secret opinion", "ts": 1_780_000_000_000,
    }  # fmt: skip
    record = RawRecord(settings.topic_events, 0, 7, USER.encode(), json.dumps(review).encode())
    async with serve_api(settings) as api:
        handler = _handler(settings, redis, store)
        assert await handler.handle_events([record]) == 1
        export = (await api.get(f"/v1/users/{USER}/export", headers=admin)).json()
        assert [r["text"] for r in export["reviews"]] == ["a secret opinion"]
        assert (await api.delete(f"/v1/users/{USER}", headers=admin)).status_code == 200
        # Redelivered (a crash before the commit), republished under a new id, or stamped
        # before the erasure: none of it is applied or kept.
        again = RawRecord(settings.topic_events, 0, 8, USER.encode(), record.value)
        other_id = json.dumps({**review, "event_id": "r-2", "ts": 1_780_000_000_001}).encode()
        assert await handler.handle_events([again]) == 0
        assert (
            await handler.handle_events([RawRecord(settings.topic_events, 0, 9, None, other_id)])
            == 0
        )
        assert (await api.get(f"/v1/users/{USER}/export", headers=admin)).status_code == 404
        p = keys.pseudonymize(TEST_SECRET.encode(), USER)
        assert not await redis.exists(keys.data_key(p), keys.user_reviews(p), keys.user_items(p))
        # A genuinely new event afterwards (stamped after the erasure) starts a fresh profile.
        fresh = json.dumps({**review, "event_id": "r-3", "ts": int(time.time() * 1000)}).encode()
        assert (
            await handler.handle_events([RawRecord(settings.topic_events, 0, 10, None, fresh)]) == 1
        )
        export = (await api.get(f"/v1/users/{USER}/export", headers=admin)).json()
        assert [r["event_id"] for r in export["reviews"]] == ["r-3"]
        assert export["interactions"] == {
            SCI_FI[0]: pytest.approx(export["interactions"][SCI_FI[0]])
        }


def _handler(settings: Any, redis: Any, store: FeatureStore) -> Any:
    """The worker's record handler, with its review recorder (what keeps a review's text)."""
    from recommender.monitoring.metrics import MetricsWindow
    from streams.wiring import build_handler

    trainer = Trainer(store, ModelState(redis), cf_registry(settings.models_dir), settings)

    async def nowhere(**_: object) -> None:
        raise AssertionError("nothing here is a dead letter")

    handler, _ = build_handler(settings, redis, store, trainer, None, MetricsWindow(), nowhere)
    return handler
