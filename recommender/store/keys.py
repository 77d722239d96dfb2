"""Every Redis key name and TTL of streamrec lives here, and only here (its Lua scripts, which
build key names from the prefixes below, are in `scripts`).

User ids never appear in a key in clear: `pseudonymize` maps them to a keyed HMAC-SHA256
(ENISA's recommended pseudonymisation: a plain hash could be reversed by enumerating ids).

Every key, its type, meaning and bound is listed in the "Features in Redis" table of
docs/architecture.md; `tests/unit/test_deployment.py` checks that each key family is there.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import zlib
from dataclasses import dataclass

from recommender.store.model_keys import (  # re-exported: `keys` names every key
    CF as CF,
    CLUSTER_VECTOR_BUCKETS as CLUSTER_VECTOR_BUCKETS,
    MODEL_HISTORY_LEN as MODEL_HISTORY_LEN,
    MODEL_LOG_LEN as MODEL_LOG_LEN,
    MODEL_PREFIX as MODEL_PREFIX,
    PENDING_RECS_INDEX as PENDING_RECS_INDEX,
    PENDING_RECS_TTL_S as PENDING_RECS_TTL_S,
    RETIRED_MODEL_TTL_S as RETIRED_MODEL_TTL_S,
    family_base as family_base,
    in_bucket as in_bucket,
    item_vector_bucket as item_vector_bucket,
    item_vectors as item_vectors,
    item_vectors_order as item_vectors_order,
    items_written_field as items_written_field,
    model_challenger as model_challenger,
    model_channel as model_channel,
    model_current as model_current,
    model_history as model_history,
    model_log as model_log,
    pending_recs as pending_recs,
    user_recs as user_recs,
    user_vectors as user_vectors,
    vector_bucket as vector_bucket,
    vector_buckets as vector_buckets,
    version_keys as version_keys,
)

#: What an id may hold that a key name must not: the separator `:` (an item `zz:image` would
#: be item `zz`'s image key), braces (a cluster's hash tags) and `%`, the escape itself.
_RESERVED = re.compile(r"[%:{}]")


def key_part(id_: str) -> str:
    """``id_`` as it appears in a key name: the reserved characters percent-encoded (`:` ->
    `%3A`), so no two ids and no id and suffix make the same key. Ids without any (nearly all)
    are unchanged. The Lua scripts encode the same way (`scripts.KEY_PART_LUA`)."""
    if _RESERVED.search(id_) is None:
        return id_
    return _RESERVED.sub(lambda m: f"%{ord(m.group()):02X}", id_)


#: The key schema this code writes (`recommender.store.migration` upgrades older ones).
SCHEMA = "schema"
SCHEMA_VERSION = 2

USERS_ACTIVE = "users:active"
ITEMS_CATALOGUE = "items:catalogue"
#: Items that came without categories (the content models predict theirs).
ITEMS_UNCATEGORISED = "items:uncategorised"
ITEMS_POPULAR = "items:popular"
STATS = "stats"
#: Worker instance -> `{lag}|{epoch ms}`: each worker's consumer lag, written every metrics
#: window (readiness reads it); entries an hour old are dropped by the next write.
WORKERS = "workers"
POP_PREFIX = "pop:"


def shard_tag(shard: int) -> str:
    """On a Redis Cluster, what every event touches (popularity, its windows, the stream clock,
    the counters, the active users) is split into `STREAMREC_REDIS_CLUSTER_SHARDS` shards, each
    under a hash tag of its own, so that no one slot takes every write; readers merge them. An
    item's counts live in one shard (`item_shard`), so the top k of all is among the shards'
    top k. On one node there is one unsharded copy (`shard` None), named as before."""
    return f"{{g{shard}}}"


def _sharded(name: str, shard: int | None) -> str:
    return name if shard is None else f"{name}:{shard_tag(shard)}"


def _shard_of(value: str, shards: int) -> int:
    return zlib.crc32(value.encode()) % shards


def item_shard(item_id: str, shards: int) -> int:
    """The shard that counts ``item_id``'s interactions (and marks the events on it)."""
    return _shard_of(item_id, shards)


def user_shard(pseudonym: str, shards: int) -> int:
    """The shard whose active-users index holds ``pseudonym``."""
    return _shard_of(pseudonym, shards)


def items_popular(shard: int | None = None) -> str:
    return _sharded(ITEMS_POPULAR, shard)


def stats_key(shard: int | None = None) -> str:
    """The counters the apply script keeps (one shard's, on a cluster); `STATS` keeps the rest."""
    return _sharded(STATS, shard)


def counter_keys(shards: int | None) -> list[str]:
    """Every hash that holds counters: `STATS`, and on a cluster each shard's (readers merge
    them: `stats.merged_counters`)."""
    return [STATS, *(stats_key(s) for s in range(shards or 0))]


def users_active(shard: int | None = None) -> str:
    return _sharded(USERS_ACTIVE, shard)


def shard_seen(shard: int, event_id: str) -> str:
    """On a cluster, the marker of an event counted in a shard's popularity: the shard's side of
    an event is applied once by its own marker, as the user's side by `seen`."""
    return f"{SEEN_PREFIX}{shard_tag(shard)}:{key_part(event_id)}"


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding popularity window, kept as `buckets` time buckets of `bucket_ms` each."""

    name: str
    bucket_ms: int
    buckets: int

    @property
    def ttl_s(self) -> int:
        return self.bucket_ms * (self.buckets + 1) // 1000

    def keys_ending_at(self, ts_ms: int, shard: int | None = None, buckets: int = 0) -> list[str]:
        """The window's bucket keys (one shard's, on a cluster); the last ``buckets`` only."""
        last, n = ts_ms // self.bucket_ms, buckets or self.buckets
        head = POP_PREFIX if shard is None else f"{POP_PREFIX}{shard_tag(shard)}:"
        return [f"{head}{self.name}:{b}" for b in range(last - n + 1, last + 1)]


#: Popularity windows; a window's edge is accurate to one bucket.
WINDOWS: dict[str, Window] = {
    "1h": Window("1h", 5 * 60_000, 12),
    "24h": Window("24h", 3_600_000, 24),
    "7d": Window("7d", 6 * 3_600_000, 28),
}

#: Category affinity decays with this time constant (scores are kept in log space, see Lua).
AFFINITY_TAU_MS = 30 * 86_400_000


def pseudonymize(secret: bytes, user_id: str) -> str:
    """Keyed, stable pseudonym of a user id (128 bits of HMAC-SHA256, hex)."""
    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()[:32]


USER_PREFIX = "u:"
SEEN_PREFIX = "seen:"


#: A user's hash tag: the first characters of their pseudonym (65,536 tags, four to a slot), not
#: the whole of it, so that a dedupe marker, which outlives an erasure until it expires, names
#: no user: `seen:{ab12}:<event id>` says only that one of 1/65,536 of the users sent it.
USER_TAG_CHARS = 4


def user_bucket(pseudonym: str) -> str:
    """`{<first USER_TAG_CHARS characters>}`: the hash tag every key of the user carries
    (features, lists, profile, reviews, tombstone, data key, dedupe markers), so that a Redis
    Cluster keeps them in one slot and one script call can write them atomically. Not a key."""
    return f"{{{pseudonym[:USER_TAG_CHARS]}}}"


def user_base(pseudonym: str) -> str:
    """`u:{<tag>}:<pseudonym>`, the start of every per-user key name. Not a key."""
    return f"{USER_PREFIX}{user_bucket(pseudonym)}:{pseudonym}"


def user_items(pseudonym: str) -> str:
    return f"{user_base(pseudonym)}:items"


def user_recent(pseudonym: str) -> str:
    return f"{user_base(pseudonym)}:recent"


def user_counts(pseudonym: str) -> str:
    return f"{user_base(pseudonym)}:counts"


ITEM_PREFIX = "item:"


def item_base(item_id: str) -> str:
    """`item:{<id>}`: every key of the item under one hash tag, so a cluster keeps them in one
    slot (the id is `key_part`-encoded: it holds no brace to break the tag)."""
    return f"{ITEM_PREFIX}{{{key_part(item_id)}}}"


def item_meta(item_id: str) -> str:
    return item_base(item_id)


def item_users(item_id: str) -> str:
    return f"{item_base(item_id)}:users"


def user_categories(pseudonym: str) -> str:
    return f"{user_base(pseudonym)}:cats"


def user_item_times(pseudonym: str) -> str:
    """Item -> the time of the user's newest event on it: the ages a fit weighs by
    (`weights.with_recency`), kept while a recency half-life is set."""
    return f"{user_base(pseudonym)}:times"


def user_profile(pseudonym: str) -> str:
    """The user's personal data, only ever as a Fernet token under their data key."""
    return f"{user_base(pseudonym)}:profile"


def user_reviews(pseudonym: str) -> str:
    """The user's review texts, each a Fernet token under their data key (never in clear)."""
    return f"{user_base(pseudonym)}:reviews"


def item_image(item_id: str) -> str:
    """The item's image (base64 PNG or JPEG, as published), for the content models."""
    return f"{item_base(item_id)}:image"


def user_lists(pseudonym: str) -> str:
    """The lists served to the user, newest first (at most
    `recommender.monitoring.impressions.MAX_IMPRESSIONS_PER_USER`), one entry each:
    `{recommendation id}|{time ms}|{model version}|{bucket}| {item} {item} ... ` (ids hold no `|`
    or spaces, so an item is found as ` {item} `). TTL: the attribution window, from the newest."""
    return f"{user_base(pseudonym)}:lists"


#: Impressions as versions before 2026-12-05 kept them (a hash per list, `imp:{id}`, listed in
#: `legacy_user_impressions`): no longer written or read, only erased, until they expire within
#: the attribution window after an upgrade.
LEGACY_IMPRESSION_PREFIX = "imp:"


def legacy_user_impressions(pseudonym: str) -> str:
    """(Before 2026-12-05) the user's served lists: a sorted set of recommendation ids."""
    return f"{USER_PREFIX}{pseudonym}:imps"


def legacy_user_shown(pseudonym: str) -> str:
    """(Before 2026-12-05) item -> the newest list that showed it to the user."""
    return f"{USER_PREFIX}{pseudonym}:shown"


def user_hits(pseudonym: str) -> str:
    """Recommendation ids of the user's lists that an outcome has hit (a list is a hit once),
    scored by the list's time; those out of the attribution window go. TTL: the window."""
    return f"{user_base(pseudonym)}:hits"


CATEGORY_PREFIX = "cat:"


def category_items(category: str) -> str:
    return f"{CATEGORY_PREFIX}{key_part(category)}"


def seen(pseudonym: str, event_id: str) -> str:
    """The dedupe marker of an applied event, under its user's hash tag (written atomically with
    the user's features). TTL: STREAMREC_DEDUPE_TTL_S."""
    return f"{SEEN_PREFIX}{user_bucket(pseudonym)}:{key_part(event_id)}"


def legacy_seen(event_id: str) -> str:
    """(Before 2026-12-07) an event's dedupe marker without its user: still honoured by the
    single-node apply script until the last one expires (STREAMREC_DEDUPE_TTL_S after an
    upgrade), never written."""
    return f"{SEEN_PREFIX}{key_part(event_id)}"


ERASED_PREFIX = "erased:"


def erased(pseudonym: str) -> str:
    """The user's erasure tombstone: when they were erased (epoch ms). Kept after everything
    else of theirs is gone (STREAMREC_ERASURE_TOMBSTONE_S), so that no writer brings back what
    happened before it: a redelivered or retried event, one stamped before the erasure."""
    return f"{ERASED_PREFIX}{user_bucket(pseudonym)}:{pseudonym}"


DATA_KEY_PREFIX = "dek:"


def data_key(pseudonym: str) -> str:
    return f"{DATA_KEY_PREFIX}{user_bucket(pseudonym)}:{pseudonym}"


#: What the content trainer has yet to learn from, in order: items whose content arrived (field
#: `item`), and reviews (fields `p`, `review`: the pseudonym and the review's field in
#: `u:{p}:reviews`; erasure deletes a user's entries). The trainer trims what it consumed.
#: Both under one hash tag: the trainer reads them in one blocking XREAD, which a cluster serves
#: only within one slot.
CONTENT_EXAMPLES = "train:{examples}:content"
REVIEW_EXAMPLES = "train:{examples}:reviews"
#: Entries kept at most in a training stream (approximate trim), should the trainer be away.
TRAIN_STREAM_MAXLEN = 100_000
#: Which process trains the content models (one at a time, whatever the number of workers).
TRAIN_LEASE = "train:lease"
TRAIN_LEASE_MS = 15_000


def train_cursor(stream: str) -> str:
    """The last entry of ``stream`` the content trainer has learned from."""
    return f"train:cursor:{stream}"


#: Set for a while after the monitor detected a drift: users are folded in from the items of
#: their last this many seconds (`UserFeatures.drift_window_s`).
DRIFT_WINDOW = "drift:window"

#: Wrapped like a data key (pseudonyms are hex, so no user's), for the start-up key check.
MASTER_KEY_CANARY = f"{DATA_KEY_PREFIX}_canary"


API_KEY_PREFIX = "apikey:"


def api_key(key_id: str) -> str:
    return f"{API_KEY_PREFIX}{key_id}"


RATE_PREFIX = "rate:"


def rate_bucket(key_id: str) -> str:
    return f"{RATE_PREFIX}{key_id}"


def ingest_bucket(key_id: str) -> str:
    """The key's bucket of what it may publish (records and KiB), apart from its requests'."""
    return f"{RATE_PREFIX}{key_id}:ingest"
