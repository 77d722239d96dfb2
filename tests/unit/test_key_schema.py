"""The key schema a Redis Cluster needs: every key of a user in one slot, every key of an item
in one, derived from `keys.py` itself (a key family added there is checked here too)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from redis.crc import key_slot

from recommender.store import keys
from recommender.store.migration import tagged


def _families(param: str) -> dict[str, Any]:
    """Every public function of `keys` naming a key whose first parameter is ``param``, but the
    legacy ones (only ever erased, under the names old versions gave them)."""
    found: dict[str, Any] = {}
    for name, fn in vars(keys).items():
        if name.startswith(("_", "legacy")) or not inspect.isfunction(fn):
            continue
        if fn.__module__ != keys.__name__:
            continue
        signature = inspect.signature(fn)
        params = list(signature.parameters)
        if params and params[0] == param and signature.return_annotation == "str":
            found[name] = fn
    return found


@pytest.mark.parametrize(
    "p", ["0123456789abcdef0123456789abcdef", "ffffffffffffffffffffffffffffffff"]
)
def test_every_key_of_a_user_is_in_the_slot_of_their_pseudonym(p: str):
    families = _families("pseudonym")
    assert {"user_items", "user_recent", "data_key", "erased", "seen", "user_lists"} <= set(
        families
    )
    named = {n: fn(p, "event-1") if n == "seen" else fn(p) for n, fn in families.items()}
    slots = {n: key_slot(str(k).encode()) for n, k in named.items() if n != "pseudonymize"}
    assert set(slots.values()) == {key_slot(p[: keys.USER_TAG_CHARS].encode())}, slots
    assert p not in keys.seen(p, "event-1")  # a marker outlives an erasure: it names no user


@pytest.mark.parametrize("item", ["i1", "zz:image", "{evil}", "a}b{c", "üñí"])
def test_every_key_of_an_item_is_in_one_slot_whatever_its_id(item: str):
    families = _families("item_id")
    assert {"item_meta", "item_users", "item_image"} <= set(families)
    slots = {key_slot(fn(item).encode()) for fn in families.values()}
    assert len(slots) == 1
    assert keys.item_users(item) != keys.item_meta(f"{item}:users")  # no id makes another's key


def test_schema_1_names_map_to_their_schema_2_names():
    p = "0123456789abcdef0123456789abcdef"
    assert tagged(f"u:{p}:items") == keys.user_items(p)
    assert tagged(f"u:{p}:profile") == keys.user_profile(p)
    assert tagged(f"dek:{p}") == keys.data_key(p)
    assert tagged(f"erased:{p}") == keys.erased(p)
    assert tagged("item:i42") == keys.item_meta("i42")
    assert tagged("item:i42:users") == keys.item_users("i42")
    assert tagged("item:i%3A42:image") == keys.item_image("i:42")
    assert tagged("model:cf:current") == keys.model_current("cf")
    assert tagged("model:cf:20261207T000000-abcdef:users") == keys.user_vectors(
        "20261207T000000-abcdef"
    )
    assert tagged("model:cf:pending-x:recs") is None  # dropped: transient
    assert tagged("train:content") == keys.CONTENT_EXAMPLES
    assert tagged("train:cursor:train:reviews") == keys.train_cursor(keys.REVIEW_EXAMPLES)
    kept = [keys.user_items(p), keys.item_meta("x"), "items:popular", "dek:_canary"]
    kept += [f"u:{p}:imps", "seen:e1", "stats", "users:active", keys.model_current("cf")]
    assert [name for name in kept if tagged(name) is not None] == []


def test_a_cluster_spreads_a_versions_vectors_over_buckets_of_their_own_slots():
    users = [keys.pseudonymize(b"k", f"u{n}") for n in range(20_000)]
    buckets = {keys.vector_bucket(p, cluster=True) for p in users}
    assert buckets <= set(keys.vector_buckets(True))
    assert len(buckets) == keys.CLUSTER_VECTOR_BUCKETS  # 20,000 users fill every bucket
    slots = {key_slot(keys.user_vectors("v1", b).encode()) for b in buckets}
    assert len(slots) > 0.95 * keys.CLUSTER_VECTOR_BUCKETS
    b = keys.vector_bucket(users[0], cluster=True)
    pending = keys.pending_recs("t")  # a refit's candidates are renamed within one slot
    assert key_slot(keys.in_bucket(pending, b).encode()) == key_slot(
        keys.user_recs("v1", b).encode()
    )
    # One node keeps one hash per version, as before buckets.
    assert keys.vector_bucket(users[0], cluster=False) == ""
    assert keys.user_vectors("v1") == "model:{cf}:v1:users"
    assert set(keys.version_keys(keys.CF, "v1")) == {
        keys.user_vectors("v1"),
        keys.user_recs("v1"),
        keys.item_vectors("v1"),
        keys.item_vectors_order("v1"),
    }
