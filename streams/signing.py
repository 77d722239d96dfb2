"""Signed records on the `metrics` topic: the monitor acts only on what streamrec published.

The monitor promotes, rolls back and refits on what the `metrics` topic says, and anyone who can
produce to that topic could say anything (forged records once rolled back a healthy version).
Every worker and API replica signs its records: `signature` is an HMAC-SHA256 of the record
without it, under a key derived from `STREAMREC_PSEUDONYM_KEY` (a secret they already share;
derived, so that a signature reveals nothing of the pseudonyms' key). The monitor ignores, and
counts (`streamrec_metrics_unsigned`), a record that is unsigned or whose signature is wrong.
Other consumers may read every record as before; they can check signatures with the same key.
"""

from __future__ import annotations

import hashlib
import hmac

from streams.records import DecisionV1, MetricV1, encode

#: What the metrics key is derived for (a new label, a new key).
LABEL = b"streamrec metrics signature v1"

Record = MetricV1 | DecisionV1


def metrics_key(pseudonym_secret: bytes) -> bytes:
    """The key that signs metric records, derived from the pseudonyms' secret."""
    return hmac.new(pseudonym_secret, LABEL, hashlib.sha256).digest()


def _mac(record: Record, key: bytes) -> str:
    body = encode(record.model_copy(update={"signature": None}))
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def signed(record: Record, key: bytes) -> bytes:
    """``record`` as JSON, with its signature."""
    return encode(record.model_copy(update={"signature": _mac(record, key)}))


def is_signed(record: Record, key: bytes) -> bool:
    """Whether ``record`` carries a signature made with ``key``."""
    return record.signature is not None and hmac.compare_digest(record.signature, _mac(record, key))
