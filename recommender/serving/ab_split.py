"""A/B buckets: a stable share of users is served the family's challenger instead of the served
version, so that the two can be compared on what users do (`attribution.py`).

A user's bucket comes from their pseudonym (an HMAC, so uniformly spread and stable for as long
as the pseudonym key is): the same user is in the same bucket on every replica and every request.
Users are in `challenger` only while there is a challenger to serve them; otherwise everyone is
in `control`, and every answer names the bucket it was served from.
"""

from __future__ import annotations

import asyncio
import time

from models.als import ALSModel
from models.errors import ModelNotFoundError
from models.registry import FamilyRegistry
from recommender.lifecycle.state import ModelState

CONTROL = "control"
CHALLENGER = "challenger"


def in_challenger_share(pseudonym: str, share: float) -> bool:
    """Whether the user falls in the first ``share`` of the hash space."""
    if share <= 0:
        return False
    return int(pseudonym[:8], 16) / 16**8 < share


class ChallengerModel:
    """The family's challenger version, loaded for the users in the challenger share.

    Checks the challenger hash at most every ``check_every_s``; a challenger that became the
    served version (promoted) or whose artifact is missing serves no one."""

    def __init__(
        self, state: ModelState, registry: FamilyRegistry[ALSModel], check_every_s: float = 1.0
    ) -> None:
        self._state = state
        self._registry = registry
        self._check_every_s = check_every_s
        self._checked = float("-inf")
        self._lock = asyncio.Lock()
        self.version: str | None = None
        self.model: ALSModel | None = None

    async def current(self, served_version: str | None) -> tuple[str, ALSModel] | None:
        now = time.monotonic()
        if now - self._checked >= self._check_every_s:
            self._checked = now
            found = (await self._state.challenger()).get("version")
            if found != self.version:
                async with self._lock:
                    await self._load(found)
        if self.version is None or self.model is None or self.version == served_version:
            return None
        return self.version, self.model

    async def _load(self, version: str | None) -> None:
        if version is None:
            self.version, self.model = None, None
            return
        try:
            model = await asyncio.to_thread(self._registry.load, version)
        except ModelNotFoundError:
            self.version, self.model = None, None
            return
        self.version, self.model = version, model
