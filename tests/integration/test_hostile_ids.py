"""Ids a producer may send (issue 24, finding 8): with `:`, braces, `*`, `%`, unicode. On main
ids were spliced into key names, so item `zz:image` was item `zz`'s image key: its events hit
WRONGTYPE in the apply script, popular items answered 500 and a new user's request lost its
connection."""

from __future__ import annotations

import base64

import pytest

from models.pixels import encode_png
from recommender.privacy.access import ApiKeyStore
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import Interaction, ItemMeta
from tests.conftest import serve_api

pytestmark = pytest.mark.integration

HOSTILE = ["zz:image", "zz:users", "zz", "a{b}c", "*", "50%3A", "50:", "ü:日本", "cat:x"]


def test_no_two_ids_and_no_id_and_suffix_make_one_key():
    names = [f(i) for i in HOSTILE for f in (keys.item_meta, keys.item_users, keys.item_image)]
    assert len(set(names)) == len(names)
    assert keys.key_part("plain-id_1.2") == "plain-id_1.2"  # ids as most are: unchanged
    assert keys.item_meta("a{b}c") == "item:{a%7Bb%7Dc}"  # the tag is ours alone


async def test_items_whose_ids_look_like_keys_apply_and_serve(redis, settings):
    import numpy as np

    store = FeatureStore(redis, settings)
    png = base64.b64encode(encode_png(np.zeros((8, 8), dtype=np.uint8))).decode()
    await store.catalogue.upsert_items(
        [ItemMeta("zz", "Zed", 1, categories=("x:y", "{x}"), image=png)]
    )
    events = [
        Interaction(f"e{n}:{i}", f"user{n}", item, "purchase", 1_000 + n)
        for n in range(3)
        for i, item in enumerate(HOSTILE)
    ]
    result = await store.apply_interactions(events)
    assert result.failed == [] and len(result.applied) == len(events)
    assert await redis.get(keys.item_image("zz")) == png  # untouched by item `zz:image`
    assert await store.catalogue.distinct_users("zz:image") == 3
    assert (await store.apply_interactions(events)).applied == []  # replays dedupe
    token = (await ApiKeyStore(redis).create({"read"}, "r")).token
    async with serve_api(settings) as api:
        headers = {"X-API-Key": token}
        popular = await api.get("/v1/items/popular", params={"k": 20}, headers=headers)
        assert popular.status_code == 200, popular.text
        assert {i["item_id"] for i in popular.json()["items"]} == set(HOSTILE)
        fresh = await api.get("/v1/users/newcomer/recommendations", headers=headers)
        assert fresh.status_code == 200 and len(fresh.json()["items"]) > 0
        similar = await api.get("/v1/items/zz:image/similar", headers=headers)
        assert similar.status_code in (200, 404), similar.text
