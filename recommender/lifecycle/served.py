"""The served model of a family, loaded once per version: what the API and every worker hold in
memory. `current` reads the pointer and loads a newer version from the registry when it moved,
so a promoted model is picked up without a restart."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Generic, TypeVar

from models.base import Artifact
from models.errors import ModelNotFoundError
from models.registry import FamilyRegistry
from recommender.lifecycle.state import ModelState, ServedModel

M = TypeVar("M", bound=Artifact)
log = logging.getLogger(__name__)

#: How long a version that could not be read is not tried again.
UNREADABLE_RETRY_S = 10.0


class ServedModelCache(Generic[M]):
    """One family's served model. `adopt` installs a model this process has just fitted and
    promoted, without reading it back from disk."""

    def __init__(
        self, state: ModelState, registry: FamilyRegistry[M], check_every_s: float = 0.0
    ) -> None:
        self._state = state
        self._registry = registry
        self._lock = asyncio.Lock()
        self._check_every_s = check_every_s
        self._checked: tuple[float, ServedModel | None] | None = None
        self.version: str | None = None
        self.model: M | None = None
        self._base: M | None = None  # as loaded: without the updates folded in since
        self._updates_seen = 0
        #: The served version this process could not read (missing or damaged), and how often
        #: that happened; tried again every `UNREADABLE_RETRY_S`, not on every request.
        self.unreadable: str | None = None
        self.load_failures = 0
        self._unreadable_at = 0.0

    async def _pointer(self) -> ServedModel | None:
        # A hot API need not read the pointer on every request: a promotion reaches it within
        # `check_every_s`, and the read it saves is a fifth of a request's Redis round trips.
        now = time.monotonic()
        if self._checked is not None and now - self._checked[0] < self._check_every_s:
            return self._checked[1]
        served = await self._state.current()
        self._checked = (now, served)
        return served

    def due(self) -> bool:
        """Whether `current` would read the pointer now (its check interval has passed)."""
        return self._checked is None or time.monotonic() - self._checked[0] >= self._check_every_s

    def moved(self, served: ServedModel | None) -> bool:
        """Whether ``served``, the pointer as read just now along with other data, is not the
        one this cache last read; if so, `current` goes on from it without reading it again."""
        if self._checked is not None and self._checked[1] == served:
            return False
        self._checked = (time.monotonic(), served)
        return True

    async def current(self) -> tuple[ServedModel | None, M | None]:
        served = await self._pointer()
        if served is not None and (
            served.version != self.version or served.updates != self._updates_seen
        ):
            async with self._lock:
                if served.version != self.version:
                    if self._recently_unreadable(served.version):
                        return served, None
                    try:
                        loaded = await asyncio.to_thread(self._registry.load, served.version)
                    except ModelNotFoundError as exc:
                        # Missing (another data directory?) or damaged (`CorruptModelError`):
                        # serve without it rather than fail every request; the worker's leader
                        # falls back to the last good version (`Trainer.maybe_refit`).
                        if self.unreadable != served.version:
                            log.error("%s; serving without it", exc)
                            self.load_failures += 1
                        self.unreadable, self._unreadable_at = served.version, time.monotonic()
                        return served, None
                    self.adopt(served.version, loaded)
                if served.updates != self._updates_seen and self._base is not None:
                    self.model = await self._with_updates(
                        served.version, self._base, served.updates
                    )
                    self._updates_seen = served.updates
        return served, self.model

    def _recently_unreadable(self, version: str) -> bool:
        return (
            version == self.unreadable
            and time.monotonic() - self._unreadable_at < UNREADABLE_RETRY_S
        )

    async def _with_updates(self, version: str, base: M, updates: int) -> M:
        """``base`` with what was folded into ``version`` since its fit, ``updates`` in all (a
        family's hook)."""
        return base

    @property
    def fitted(self) -> M | None:
        """The served version as fitted, without the updates folded in since."""
        return self._base

    def adopt(self, version: str, model: M) -> None:
        self.version, self.model, self._base = version, model, model
        self._updates_seen = 0
