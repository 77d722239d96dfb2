"""What a dead letter keeps of the record it stands for: always small enough to publish, and no
personal field in clear.

A dead letter that cannot be published must not take its batch with it (a 750 KB invalid record
once made a dead letter over the producer's 1 MB limit, and the 2,000 valid events fetched with
it were acked unapplied), so it keeps a prefix of at most `PAYLOAD_BYTES` of the original, with
the original's size and SHA-256; the topic, partition and offset find the whole record while
Kafka keeps it. Events carry a user id and may carry review text: a dead letter keeps the user's
pseudonym and the text's length instead, and nothing of a record that is not a JSON object (its
personal fields cannot be told apart).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable

from streams.records import DeadLetterV1

#: Bytes of the (redacted) original a dead letter keeps.
PAYLOAD_BYTES = 16 * 1024
#: Characters of the reason a dead letter keeps.
REASON_CHARS = 2000
#: Fields of a record that hold personal data (`EventV1.user_id`, a review's `text`).
PERSONAL_FIELDS = ("user_id", "text")


def redacted(original: bytes, pseudonym: Callable[[str], str] | None) -> bytes:
    """``original`` with its personal fields replaced (b"" when it is not a JSON object)."""
    try:
        obj = json.loads(original)
    except (ValueError, RecursionError):  # not JSON, or nested past Python's recursion limit
        return b""
    if not isinstance(obj, dict):
        return b""
    for field in PERSONAL_FIELDS:
        value = obj.get(field)
        if value is None:
            continue
        if field == "user_id" and isinstance(value, str) and pseudonym is not None:
            obj[field] = f"pseudonym:{pseudonym(value)}"
        else:
            obj[field] = f"[redacted: {len(str(value))} characters]"
    return json.dumps(obj, separators=(",", ":")).encode()


def dead_letter(
    reason: str,
    topic: str,
    partition: int | None,
    offset: int | None,
    original: bytes,
    pseudonym: Callable[[str], str] | None = None,
) -> bytes:
    """The dead letter of ``original`` (at most about 30 KB, whatever the original's size)."""
    kept = redacted(original, pseudonym)
    record = DeadLetterV1(
        reason=reason[:REASON_CHARS],
        topic=topic,
        partition=partition,
        offset=offset,
        original_b64=base64.b64encode(kept[:PAYLOAD_BYTES]).decode(),
        original_bytes=len(original),
        original_sha256=hashlib.sha256(original).hexdigest(),
        truncated=len(kept) > PAYLOAD_BYTES,
        failed_at=int(time.time() * 1000),
    )
    return record.model_dump_json().encode()


def dead_letter_key(key: bytes | None, pseudonym: Callable[[str], str] | None) -> bytes | None:
    """The dead letter's Kafka key: events are keyed by user id, which it keeps only as the
    pseudonym (one user's dead letters still share a partition)."""
    if key is None or pseudonym is None:
        return key
    return pseudonym(key.decode("utf-8", "replace")).encode()
