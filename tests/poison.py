"""Hostile payloads, each invalid by construction (not by asking our own decoder)."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable

VALID = {"event_id": "x", "user_id": "u", "item_id": "i", "type": "click", "ts": 1}
WRONG_TYPES: list[object] = [None, True, 1.5, -3, [], {}, "", "0", 10**40, "∞"]


def _wrong_type(rng: random.Random, i: int) -> bytes:
    event = {**VALID, "event_id": f"p{i}"}
    field = rng.choice(["event_id", "user_id", "item_id", "type", "ts"])
    # Every choice is wrong for every field: ids need a non-empty string without blanks, type one
    # of six words, ts a non-negative int below 1e13; "0" and "∞" are strings, not ints or types.
    choices = [v for v in WRONG_TYPES if not (field.endswith("_id") and v in ("0", "∞"))]
    event[field] = rng.choice(choices)
    return json.dumps(event).encode()


def _missing_field(rng: random.Random, i: int) -> bytes:
    event = {**VALID, "event_id": f"p{i}"}
    del event[rng.choice(["event_id", "user_id", "item_id", "type", "ts"])]
    return json.dumps(event).encode()


def _huge_string(rng: random.Random, i: int) -> bytes:
    event = {**VALID, "event_id": f"p{i}"}
    field = rng.choice(["user_id", "item_id", "text"])
    event[field] = "x" * (rng.choice([129, 1000, 30_000]) if field != "text" else 20_001)
    return json.dumps(event).encode()


def _garbage(rng: random.Random, i: int) -> bytes:
    return rng.randbytes(rng.randint(0, 2000)).replace(b"{", b"(")  # never an object


def _deep(rng: random.Random, i: int) -> bytes:
    depth = rng.choice([300, 1000, 10_000])  # the parser's limit is ~200
    return b'{"a":' * depth + b"1" + b"}" * depth


def _bad_text(rng: random.Random, i: int) -> bytes:
    return rng.choice(
        [
            b"\xff\xfe\xfd not utf-8",
            b"",
            b"null",
            b"[1,2,3]",
            base64.b64encode(json.dumps(VALID).encode()),
            json.dumps({**VALID, "event_id": f"p{i}", "ts": -1}).encode(),
            json.dumps({**VALID, "event_id": f"has|pipe{i}"}).encode(),
            json.dumps({**VALID, "event_id": f"p{i}", "type": "rating", "value": "NaN"}).encode(),
            json.dumps({**VALID, "event_id": f"p{i}", "item_id": "tab\there"}).encode(),
        ]
    )


KINDS: list[Callable[[random.Random, int], bytes]] = [
    _wrong_type,
    _missing_field,
    _huge_string,
    _garbage,
    _deep,
    _bad_text,
]


def poison_payloads(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.choice(KINDS)(rng, i) for i in range(n)]


def valid_payloads(n: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"user{i % 97}",
            json.dumps(
                {
                    **VALID,
                    "event_id": f"ok{i}",
                    "user_id": f"user{i % 97}",
                    "item_id": f"item{i % 31}",
                    "ts": i,
                }
            ).encode(),
        )
        for i in range(n)
    ]
