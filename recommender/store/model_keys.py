"""The keys of model families (`model:{family}:...`) and of CF versions' vectors in Redis,
re-exported by `keys`, which owns every key name (this part is apart for its length only)."""

from __future__ import annotations

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
#: Every key of every CF version (user vectors, cached candidates, new items' factors).
CF_VERSION_KEYS_PATTERN = f"{MODEL_PREFIX}{{{CF}}}:*:*"


def user_vectors(version: str) -> str:
    """CF version ``version``'s user vectors (pseudonym -> `as_of:base64 float32`)."""
    return f"{family_base(CF)}:{version}{USER_VECTORS_SUFFIX}"


def user_recs(version: str) -> str:
    """CF version ``version``'s cached recommendation candidates (pseudonym -> the top items
    of the user's vector, recent items and history as of `as_of`; see `recommender.cf.vectors`).
    """
    return f"{family_base(CF)}:{version}{USER_RECS_SUFFIX}"


#: How long candidates a refit computed wait for their version to be served.
PENDING_RECS_TTL_S = 3600


def pending_recs(token: str) -> str:
    """Candidates a refit computed before its version has a name (`user_recs`' format): the
    worker renames the key to `user_recs(version)` before the version serves, or deletes it
    when the version is held back. TTL: PENDING_RECS_TTL_S."""
    return f"{family_base(CF)}:pending-{token}{USER_RECS_SUFFIX}"


#: The `pending_recs` keys a refit has written and not yet adopted or discarded (erasure
#: reaches them through this set, not a scan).
PENDING_RECS_INDEX = f"{MODEL_PREFIX}{{{CF}}}:pending"


def item_vectors(version: str) -> str:
    """Factors of items newer than CF version ``version``'s fit, folded in by the worker."""
    return f"{family_base(CF)}:{version}:items"


def version_keys(family: str, version: str) -> list[str]:
    """Keys that belong to one served version of ``family``: kept while it serves, expired
    `RETIRED_MODEL_TTL_S` after another replaces it."""
    return (
        [user_vectors(version), user_recs(version), item_vectors(version)] if family == CF else []
    )


def items_written_field(version: str) -> str:
    """`model:cf:current` field counting item-vector writes for ``version`` (readers reload
    the extra items when it moves)."""
    return f"items_written:{version}"


#: How long a replaced model version's user vectors stay readable for requests in flight.
RETIRED_MODEL_TTL_S = 60
