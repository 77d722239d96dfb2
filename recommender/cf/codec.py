"""How the CF family's vectors and cached candidates are written in Redis (one string each, so
that one text client reads every key); `vectors` stores and reads them."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: A hash field as Redis answers it.
Raw = str | bytes | None


@dataclass(frozen=True, slots=True)
class UserVector:
    vector: npt.NDArray[np.float32]
    as_of: int  # epoch ms of the newest event folded in


def decode_vector(raw: Raw) -> UserVector | None:
    """A user vector as `write_user_vectors` stored it (`as_of:base64 float32`), or None."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    as_of, _, encoded = text.partition(":")
    return UserVector(np.frombuffer(base64.b64decode(encoded), dtype=np.float32), int(as_of))


@dataclass(frozen=True, slots=True)
class CachedCandidates:
    """A user's best items by the served version (their history left out), best first, and
    the items newer than its fit that they touched, as of their vector's `as_of`."""

    as_of: int
    items: list[tuple[str, float]]
    seen_new: frozenset[str]


def encode_candidates(c: CachedCandidates) -> str:
    # Ids hold no spaces or `|` (`recommender.types.ID_PATTERN`); repr keeps a float exactly.
    ids = " ".join(i for i, _ in c.items)
    scores = " ".join(repr(s) for _, s in c.items)
    return f"{c.as_of}|{' '.join(sorted(c.seen_new))}|{ids}|{scores}"


def decode_candidates(raw: Raw, n: int | None = None) -> CachedCandidates | None:
    """What `encode_candidates` wrote, with only its first ``n`` items (a request wants ten of
    a hundred: turning the rest into floats was a twentieth of the API's time)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    as_of, seen_new, ids, scores = text.split("|", 3)
    # Split no further than needed: the rest of the hundred stays one string.
    id_list = ids.split(" ", n)[:n] if n is not None and ids else ids.split()
    score_list = scores.split(" ", n)[:n] if n is not None and scores else scores.split()
    return CachedCandidates(
        int(as_of),
        [(i, float(score)) for i, score in zip(id_list, score_list, strict=True)],
        frozenset(seen_new.split()),
    )


def b64(vec: npt.NDArray[np.float32]) -> str:
    # base64 keeps one decode_responses=True client for every key.
    return base64.b64encode(vec.astype(np.float32).tobytes()).decode()
