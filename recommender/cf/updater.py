"""The per-event half of collaborative filtering: a listener on the event path.

After every applied batch it recomputes the touched users' vectors from their *full* weighted
history against the served item factors (what implicit's `partial_fit_users` does) and writes them
where the API reads them. Items the served fit does not know are remembered with the users who
touched them and folded in on a timer (`fold_in_new_items`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from models.als import ALSModel
from models.registry import FamilyRegistry
from recommender.cf.served import ServedALS
from recommender.cf.vectors import CFVectors, decode_vector
from recommender.lifecycle.state import ModelState, ServedModel
from recommender.store.features import FeatureStore
from recommender.types import Interaction

#: Users whose vectors place a new item before the next refit (the first ones to touch it).
NEW_ITEM_MAX_USERS = 1000
#: Users whose vectors are solved and written per step (`CFUpdater._fold_in_users`).
FOLD_CHUNK = 500
#: Fewer users than this are solved on the event loop (a batch's); more, in a thread.
INLINE_SOLVES = 100


class CFUpdater:
    """Keeps the served CF version's user vectors (and new items) current, event by event."""

    def __init__(
        self,
        store: FeatureStore,
        state: ModelState,
        registry: FamilyRegistry[ALSModel],
        vectors: CFVectors,
    ) -> None:
        self._store = store
        self._vectors = vectors
        self.served = ServedALS(state, registry, vectors)
        self.last_event = time.monotonic()
        self._tracking: set[str] | None = None  # users touched while a refit runs
        #: Items newer than the served fit -> the users who touched them since, with each one's
        #: weight for the item as last read with their history (bounded).
        self._new_item_users: dict[str, dict[str, float]] = {}
        self._new_item_solved: dict[str, int] = {}  # item -> users at its last solve

    @property
    def version(self) -> str | None:
        return self.served.version

    async def sync(self) -> ServedModel | None:
        """Load the served version if another process promoted a newer one; the pointer."""
        served, _ = await self.served.current()
        return served

    def adopt(self, version: str, model: ALSModel) -> None:
        """Serve a version this process has just fitted and promoted."""
        self.served.adopt(version, model)
        self._new_item_users, self._new_item_solved = {}, {}

    def track_touched(self) -> None:
        """Remember the users touched from now on (a refit is starting)."""
        self._tracking = set()

    def touched(self) -> set[str]:
        """The users touched since `track_touched`; stops tracking."""
        found, self._tracking = self._tracking or set(), None
        return found

    async def on_applied(self, events: Sequence[Interaction]) -> None:
        pseudonyms = {self._store.pseudonym_of(e) for e in events}
        if not pseudonyms:
            return
        self.last_event = time.monotonic()
        if self._tracking is not None:
            self._tracking |= pseudonyms
        histories = await self.update_users(pseudonyms)
        if self.served.model is not None:
            for e in events:
                if not self.served.fitted_knows(e.item_id):
                    users = self._new_item_users.setdefault(e.item_id, {})
                    p = self._store.pseudonym_of(e)
                    if p in users or len(users) < NEW_ITEM_MAX_USERS:
                        # The weight the fold-in of the item will use, from the history just
                        # read: no read of its own (re-reading them was a third of the worker).
                        users[p] = histories.get(p, {}).get(e.item_id, 0.0)

    async def update_users(self, pseudonyms: Iterable[str]) -> dict[str, dict[str, float]]:
        """Fold the users in again from their full histories; the histories read, by user
        ({} when no version is served)."""
        model, version = self.served.model, self.served.version
        if model is None or version is None:
            return {}
        return await self._fold_in_users(model, version, sorted(pseudonyms))

    async def _fold_in_users(
        self, model: ALSModel, version: str, users: Sequence[str]
    ) -> dict[str, dict[str, float]]:
        """Each user's vector for ``version`` from their full history, written with its `as_of`,
        FOLD_CHUNK users per round trip; the histories read, by user. A batch's few users are
        solved on the event loop; more (a refit's touched users, a whole version) in a thread."""
        read: dict[str, dict[str, float]] = {}
        window = await self._store.users.drift_window_s()  # after a drift: the latest items
        for start in range(0, len(users), FOLD_CHUNK):
            chunk = users[start : start + FOLD_CHUNK]
            histories, as_of = await self._store.users.histories_and_last_seen(chunk, window)
            if len(chunk) < INLINE_SOLVES:
                vectors = model.user_vectors(histories)
            else:
                vectors = await asyncio.to_thread(model.user_vectors, histories)
            await self._vectors.write_user_vectors(
                version, dict(zip(chunk, vectors, strict=True)), as_of
            )
            read.update(zip(chunk, histories, strict=True))
        return read

    async def fold_in_new_items(self) -> None:
        """Fold in items the served fit does not know, from the vectors of the users who touched
        them since (`ALSModel.partial_fit_items`), and write them where readers find them.

        On a timer, not per batch, and an item only when its users doubled since its last solve
        (about log2(NEW_ITEM_MAX_USERS) solves per item): per batch, re-reading every such
        user's weight halved the worker's rate in `bench ingest`. The weights are the ones
        `on_applied` kept; the solves run off the event loop (numpy releases the GIL)."""
        model, version = self.served.model, self.served.version
        if model is None or version is None:
            return
        items = sorted(
            item
            for item, users in self._new_item_users.items()
            if len(users) >= 2 * self._new_item_solved.get(item, 0)
        )
        if not items:
            return
        for item in items:
            self._new_item_solved[item] = len(self._new_item_users[item])
        pairs = [(p, item, w) for item in items for p, w in self._new_item_users[item].items()]
        raw = await self._vectors.raw_user_vectors_of(version, [p for p, _, _ in pairs])
        # Decoding, the solves and the model's copy with the new items, in one step off the
        # event loop: on it they held the events behind them for tens of milliseconds a tick.
        solved = await asyncio.to_thread(_solve_new_items, model, items, pairs, raw)
        if solved is None or self.served.version != version:
            return  # no user vectors yet, or a refit was adopted meanwhile (it has its own items)
        ready, factors, extended = solved
        await self._vectors.write_item_vectors(version, dict(zip(ready, factors, strict=True)))
        self.served.replace_model(extended, len(ready))

    async def prepare(self, version: str, model: ALSModel) -> int:
        """Before ``version`` is served: every live user's vector for it, unless it has them
        (a replaced version's expire after a minute). Returns how many users were folded in."""
        if await self._vectors.has_vectors(version):
            return 0
        users = await self._store.users.active()
        await self._fold_in_users(model, version, users)
        return len(users)


def _solve_new_items(
    model: ALSModel,
    items: list[str],
    pairs: list[tuple[str, str, float]],
    raw: Sequence[str | bytes | None],
) -> tuple[list[str], npt.NDArray[np.float32], ALSModel] | None:
    """The new items' factors from their users' stored vectors and weights, and the model
    with them; None when none of the items has a user with a vector."""
    ys: dict[str, list[npt.NDArray[np.float32]]] = {item: [] for item in items}
    ws: dict[str, list[float]] = {item: [] for item in items}
    for (_, item, w), stored in zip(pairs, raw, strict=True):
        vec = decode_vector(stored)
        if vec is not None and w > 0:
            ys[item].append(vec.vector)
            ws[item].append(w)
    ready = [item for item in items if ys[item]]
    if not ready:
        return None
    factors = model.partial_fit_items(
        [np.stack(ys[i]) for i in ready], [np.asarray(ws[i], dtype=np.float32) for i in ready]
    )
    return ready, factors, model.with_items(ready, factors)
