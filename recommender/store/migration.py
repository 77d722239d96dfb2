"""Upgrading the keys of an existing deployment to the current schema.

Schema 2 (2026-12-07) puts every user key under the user's hash tag (`u:<p>:items` ->
`u:{<p[:4]>}:<p>:items`, `erased:{<p[:4]>}:<p>`, `dek:{<p[:4]>}:<p>`), every item key under the
item's (`item:<id>` -> `item:{<id>}`) and a model family's under the family's
(`model:cf:current` -> `model:{cf}:current`), so that a Redis Cluster keeps each in one slot.
A worker renames the keys of schema 1 on its first start after an upgrade, before it consumes
(one SCAN of the keyspace, about 0.8 s a million keys: `bench erasure`'s scan), and records the
schema so later starts skip it. Dedupe markers are not renamed (they name no user): the apply
script honours the old ones until they expire.
"""

from __future__ import annotations

import re

import redis

from recommender.store import keys

#: The user key suffixes schema 1 wrote as `u:<p>:<suffix>` (not the legacy impressions, which
#: are only erased until they expire, under their old names).
_USER_SUFFIXES = ("items", "recent", "counts", "cats", "profile", "reviews", "lists", "hits")
_USER = re.compile(rf"^{keys.USER_PREFIX}([0-9a-f]{{32}}):({'|'.join(_USER_SUFFIXES)})$")
_PSEUDONYMOUS = re.compile(rf"^({keys.ERASED_PREFIX}|{keys.DATA_KEY_PREFIX})([0-9a-f]{{32}})$")
_ITEM = re.compile(rf"^{keys.ITEM_PREFIX}([^{{}}]+?)(:users|:image)?$")
_MODEL = re.compile(rf"^{keys.MODEL_PREFIX}([a-z]+):(.+)$")
#: A refit's candidates waiting for their version, and their index: transient (an hour at
#: most), and the index lists key names, so they are dropped rather than renamed.
_PENDING = re.compile(rf"^{keys.MODEL_PREFIX}{keys.CF}:pending")


#: Schema 1's training streams, and their cursors, by their schema-2 names.
_TRAINING = {
    "train:content": keys.CONTENT_EXAMPLES,
    "train:reviews": keys.REVIEW_EXAMPLES,
    "train:cursor:train:content": keys.train_cursor(keys.CONTENT_EXAMPLES),
    "train:cursor:train:reviews": keys.train_cursor(keys.REVIEW_EXAMPLES),
}


def tagged(name: str) -> str | None:
    """The schema-2 name of a schema-1 key; None for a key that keeps its name."""
    if name in _TRAINING:
        return _TRAINING[name]
    if m := _USER.match(name):
        return f"{keys.user_base(m[1])}:{m[2]}"
    if m := _PSEUDONYMOUS.match(name):
        return keys.erased(m[2]) if m[1] == keys.ERASED_PREFIX else keys.data_key(m[2])
    if m := _ITEM.match(name):
        return f"{keys.ITEM_PREFIX}{{{m[1]}}}{m[2] or ''}"
    if (m := _MODEL.match(name)) and not _PENDING.match(name):
        return f"{keys.family_base(m[1])}:{m[2]}"
    return None


def migrate(client: redis.Redis) -> int:
    """Rename every schema-1 key; return how many. Idempotent, and a no-op once recorded."""
    if client.get(keys.SCHEMA) == str(keys.SCHEMA_VERSION):
        return 0
    renamed = 0
    for name in client.scan_iter(count=1000):
        if _PENDING.match(str(name)):
            client.delete(name)
            continue
        new = tagged(str(name))
        if new is None:
            continue
        # A key of the new schema already there (an API replica upgraded first wrote it) wins.
        if client.renamenx(name, new):
            renamed += 1
        else:
            client.delete(name)
    client.set(keys.SCHEMA, keys.SCHEMA_VERSION)
    return renamed
