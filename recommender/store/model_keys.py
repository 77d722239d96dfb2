"""The keys of model families (`model:{family}:...`) and of CF versions' vectors in Redis,
re-exported by `keys`, which owns every key name (this part is apart for its length only)."""

from __future__ import annotations

import zlib

MODEL_PREFIX = "model:"
#: Promotions remembered for `streamrec models rollback`.
MODEL_HISTORY_LEN = 50
#: Lifecycle decisions remembered for `streamrec models list`.
MODEL_LOG_LEN = 200


def family_base(family: str) -> str:
    """`model:{<family>}`: a family's keys (pointer, history, challenger, log, and a CF
    version's vectors and candidates) under one hash tag, so that a cluster can move them in a
    transaction and rename a refit's candidates into its version. (A pub/sub channel is no key:
    `model_channel` keeps its name.)"""
    return f"{MODEL_PREFIX}{{{family}}}"


def model_current(family: str) -> str:
    """The family's served version: version, data watermark, pinned, and family extras."""
    return f"{family_base(family)}:current"


def model_history(family: str) -> str:
    """The family's served versions, newest first: a stack that `rollback` walks down."""
    return f"{family_base(family)}:history"


def model_challenger(family: str) -> str:
    """The family's newest version that was kept but not served, and why."""
    return f"{family_base(family)}:challenger"


def model_log(family: str) -> str:
    """The family's lifecycle decisions (JSON), newest first."""
    return f"{family_base(family)}:log"


def model_channel(family: str) -> str:
    """Pub/sub channel told the version a family now serves."""
    return f"{MODEL_PREFIX}{family}:changed"


#: The collaborative-filtering family, whose versions also keep vectors in Redis.
CF = "cf"


USER_VECTORS_SUFFIX = ":users"
USER_RECS_SUFFIX = ":recs"

#: On a Redis Cluster a CF version's user vectors and cached candidates are spread over this many
#: hashes by the user, each under a tag of its own (`vector_bucket`): in one hash they were one
#: slot that every fold-in wrote and every serving read read (649.7 times the mean slot's CPU in
#: `bench scale`), and at 100M users 40 GB on one node. One node keeps one hash per version.
CLUSTER_VECTOR_BUCKETS = 1024


def vector_bucket(pseudonym: str, cluster: bool) -> str:
    """The part of a user's vector and candidates keys that spreads them on a cluster
    (`:{cf.<n>}`, n < CLUSTER_VECTOR_BUCKETS, from the pseudonym's hex), or '' on one node."""
    if not cluster:
        return ""
    return f":{{{CF}.{int(pseudonym[4:12], 16) % CLUSTER_VECTOR_BUCKETS}}}"


def item_vector_bucket(item_id: str, cluster: bool) -> str:
    """The bucket of an item's factors (`item_vectors`), by a CRC of its id, or '' on one node:
    in one hash they were the cluster's busiest slot by writes (633.6x the mean slot in
    `bench scale`, 8.1% of all writes)."""
    if not cluster:
        return ""
    return f":{{{CF}.{zlib.crc32(item_id.encode()) % CLUSTER_VECTOR_BUCKETS}}}"


def vector_buckets(cluster: bool) -> list[str]:
    """Every `vector_bucket`: what a version's vectors and candidates are spread over."""
    if not cluster:
        return [""]
    return [f":{{{CF}.{n}}}" for n in range(CLUSTER_VECTOR_BUCKETS)]


def in_bucket(key: str, bucket: str) -> str:
    """A CF version's key as one node names it (`model:{cf}:...`), as ``bucket`` names it on a
    cluster: `model:cf:...:{cf.<n>}` (a name's first `{...}` is its tag)."""
    if not bucket:
        return key
    return f"{MODEL_PREFIX}{CF}{key.removeprefix(family_base(CF))}{bucket}"


def user_vectors(version: str, bucket: str = "") -> str:
    """CF version ``version``'s user vectors (pseudonym -> `as_of:base64 float32`), those of
    ``bucket`` (`vector_bucket`) on a cluster."""
    return in_bucket(f"{family_base(CF)}:{version}{USER_VECTORS_SUFFIX}", bucket)


def user_recs(version: str, bucket: str = "") -> str:
    """CF version ``version``'s cached recommendation candidates (pseudonym -> the top items
    of the user's vector, recent items and history as of `as_of`; see `recommender.cf.vectors`),
    those of ``bucket`` on a cluster.
    """
    return in_bucket(f"{family_base(CF)}:{version}{USER_RECS_SUFFIX}", bucket)


#: How long candidates a refit computed wait for their version to be served.
PENDING_RECS_TTL_S = 3600


def pending_recs(token: str, bucket: str = "") -> str:
    """Candidates a refit computed before its version has a name (`user_recs`' format): the
    worker renames the key to `user_recs(version)` before the version serves, or deletes it
    when the version is held back. TTL: PENDING_RECS_TTL_S. On a cluster, one per bucket (a
    rename stays in its slot)."""
    return in_bucket(f"{family_base(CF)}:pending-{token}{USER_RECS_SUFFIX}", bucket)


#: The `pending_recs` keys (without a bucket) a refit has written and not yet adopted or
#: discarded (erasure reaches them through this set, not a scan).
PENDING_RECS_INDEX = f"{MODEL_PREFIX}{{{CF}}}:pending"


def item_vectors(version: str, bucket: str = "") -> str:
    """Factors of items newer than CF version ``version``'s fit, folded in by the worker (those
    of ``bucket``, `item_vector_bucket`, on a cluster)."""
    return in_bucket(f"{family_base(CF)}:{version}:items", bucket)


def item_vectors_order(version: str) -> str:
    """The ids `item_vectors(version)` was written, in order (a list as long as the version's
    `items_written`): a reader that holds the first n reads only the rest."""
    return f"{family_base(CF)}:{version}:items-order"


def version_keys(family: str, version: str, cluster: bool = False) -> list[str]:
    """Keys that belong to one served version of ``family``: kept while it serves, expired
    `RETIRED_MODEL_TTL_S` after another replaces it."""
    if family != CF:
        return []
    buckets = vector_buckets(cluster)
    return [
        *(user_vectors(version, b) for b in buckets),
        *(user_recs(version, b) for b in buckets),
        *(item_vectors(version, b) for b in buckets),
        item_vectors_order(version),
    ]


def items_written_field(version: str) -> str:
    """`model:cf:current` field counting item-vector writes for ``version`` (readers reload
    the extra items when it moves)."""
    return f"items_written:{version}"


#: How long a replaced model version's user vectors stay readable for requests in flight.
RETIRED_MODEL_TTL_S = 60
