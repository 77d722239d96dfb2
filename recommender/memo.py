"""A process's short memory of answers it computed: forgotten wholesale, never entry by entry.

Serving keeps each user's last answer while it stands (`recommender.serving.service`) and the
item cards it shows (`recommender.serving.cards`); the API keeps the answer's JSON beside it
(`api.fast_path`) and the keys it verified (`recommender.privacy.access`). An entry may hold
what a user was recommended, so nothing in it outlives `lifetime_s`: the whole memo is dropped
when its lifetime is up (an erasure on another replica reaches this one's memory within it), when
it is full, and on `clear`. Each drop moves `generation`, so a memo kept beside this one can
drop itself too.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringMemo(Generic[K, V]):
    """Entries live at most ``lifetime_s`` (0: nothing is kept); at most ``max_entries``."""

    def __init__(self, lifetime_s: float, max_entries: int) -> None:
        self._lifetime_s = lifetime_s
        self._max_entries = max_entries
        self._entries: dict[K, V] = {}
        self._until = time.monotonic() + lifetime_s
        self.generation = 0

    def get(self, key: K) -> V | None:
        if time.monotonic() >= self._until:
            self.clear()
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        if self._lifetime_s <= 0:
            return
        if len(self._entries) >= self._max_entries or time.monotonic() >= self._until:
            self.clear()
        self._entries[key] = value

    def clear(self) -> None:
        self._entries.clear()
        self._until = time.monotonic() + self._lifetime_s
        self.generation += 1

    def __len__(self) -> int:
        return len(self._entries)
