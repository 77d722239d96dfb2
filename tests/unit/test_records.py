import base64
import json

import numpy as np
import pytest

from models.pixels import encode_png
from recommender.errors import InvalidRecordError
from streams.dead_letters import PAYLOAD_BYTES, dead_letter
from streams.records import DeadLetterV1, decode_content, decode_event

VALID = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "type": "rating",
    "value": 4.5,
    "ts": 1_700_000_000_000,
}
PNG = encode_png(np.zeros((4, 4), dtype=np.uint8))


def raw(**changes: object) -> bytes:
    record = {**VALID, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def test_valid_event_decodes_to_interaction():
    e = decode_event(raw())
    assert (e.event_id, e.user_id, e.item_id, e.type, e.value, e.ts) == (
        "e1",
        "u1",
        "i1",
        "rating",
        4.5,
        1_700_000_000_000,
    )


def test_an_events_recommendation_id_is_kept_for_attribution():
    """A client that quotes the API's `recommendation_id` used to have it silently dropped."""
    assert decode_event(raw(recommendation_id="4f1c0a")).recommendation_id == "4f1c0a"
    assert decode_event(raw()).recommendation_id is None


def test_content_keeps_its_image_for_the_image_model():
    image = base64.b64encode(PNG).decode()
    item = decode_content(
        json.dumps({"item_id": "m1", "title": "t", "image": image, "ts": 1}).encode()
    )
    assert item.image == image


def test_unknown_fields_are_ignored_for_forward_compatibility():
    assert decode_event(raw(source="mobile")).item_id == "i1"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (raw(type="like"), "type"),
        (raw(event_id=...), "event_id"),
        (raw(user_id=""), "user_id"),
        (raw(ts=-1), "ts"),
        (raw(ts="yesterday"), "ts"),
        (raw(ts=True), "ts"),
        (raw(ts=10**40), "ts"),
        (raw(item_id="nul\x00byte"), "item_id"),
        (b"[" * 100_000 + b"]" * 100_000, "recursion"),
        (b"", "json"),
        (b"null", "record"),
        (raw(text="x" * 20_001), "text"),
        (raw(item_id="has space"), "item_id"),
        (raw(recommendation_id="not|an id"), "recommendation_id"),
        (raw(recommendation_id=""), "recommendation_id"),
        (b"not json", "json"),
        (b"[1, 2]", "record"),
        (b"\xff\xfe\x00", ""),
    ],
)
def test_malformed_event_raises_with_reason(payload: bytes, reason: str):
    with pytest.raises(InvalidRecordError) as err:
        decode_event(payload)
    assert reason.lower() in str(err.value).lower()


def test_non_finite_or_huge_value_is_rejected():
    with pytest.raises(InvalidRecordError, match="value"):
        decode_event(
            b'{"event_id":"e","user_id":"u","item_id":"i","type":"rating","value":Infinity,"ts":1}'
        )


def test_content_with_png_image_decodes():
    item = decode_content(
        json.dumps(
            {
                "item_id": "m1",
                "title": "Alien",
                "categories": ["Sci-Fi"],
                "image": base64.b64encode(PNG).decode(),
                "ts": 1,
            }
        ).encode()
    )
    assert item.title == "Alien"
    assert item.categories == ("Sci-Fi",)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("***", "base64"),
        (base64.b64encode(b"GIF89a....").decode(), "PNG nor JPEG"),
        # The right first bytes, then nothing an image decoder can read.
        (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode(), "does not decode"),
        (base64.b64encode(b"\xff\xd8\xff" + b"garbage" * 10).decode(), "does not decode"),
    ],
)
def test_content_with_bad_image_is_rejected(image: str, reason: str):
    with pytest.raises(InvalidRecordError, match=reason):
        decode_content(
            json.dumps({"item_id": "m1", "title": "t", "image": image, "ts": 1}).encode()
        )


def test_dead_letter_keeps_the_origin_and_what_finds_the_original_not_its_bytes():
    letter = dead_letter("bad", "events", 3, 42, b"\x00garbage")
    record = DeadLetterV1.model_validate_json(letter)
    assert (record.reason, record.topic, record.partition, record.offset) == (
        "bad",
        "events",
        3,
        42,
    )
    # Not JSON: its personal fields cannot be told apart, so none of it is kept.
    assert base64.b64decode(record.original_b64) == b""
    assert record.original_bytes == 8 and len(record.original_sha256 or "") == 64
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000  # past Python's recursion limit
    assert (
        DeadLetterV1.model_validate_json(dead_letter("deep", "events", 0, 1, deep)).truncated
        is False
    )


def test_dead_letter_is_bounded_and_redacted_whatever_the_original():
    original = json.dumps(
        {**VALID, "user_id": "bob@example.com", "text": "private", "junk": "x" * 3_000_000}
    ).encode()
    letter = dead_letter("r" * 10_000, "events", 0, 1, original, lambda u: f"p-{len(u)}")
    assert len(letter) < 2 * PAYLOAD_BYTES + 5_000
    record = DeadLetterV1.model_validate_json(letter)
    kept = base64.b64decode(record.original_b64)
    assert record.truncated and len(kept) == PAYLOAD_BYTES
    assert b"bob" not in kept and b"private" not in kept and b'"pseudonym:p-15"' in kept


def test_an_image_of_too_many_pixels_is_refused_before_it_is_decoded():
    from models.pixels import MAX_PIXELS, ImageDecodeError, decode_image

    big = encode_png(np.zeros((4097, 4097), dtype=np.uint8))  # small on the wire: all zeros
    assert MAX_PIXELS < 4097 * 4097
    with pytest.raises(ImageDecodeError, match="pixels"):
        decode_image(big)
