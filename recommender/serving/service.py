"""Serving a user's recommendations: one chain of steps over one exclude set, each item with a
short reason.

The chain: the ALS score blended with the neighbours of the user's latest items (with places
kept for items newer than the fit); then, for what the model cannot fill (no model yet, a user
it cannot place), the popular items of the user's favourite categories; then popular items.
The common request skips the chain: it is answered from the user's cached candidates, or from
the answer kept while the user's vector and the served model stand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.als import ALSModel
from models.registry import FamilyRegistry
from recommender.cf.candidates import best_candidates
from recommender.cf.served import ServedALS
from recommender.cf.vectors import (
    UNCHANGED,
    CachedCandidates,
    CFVectors,
    UserVector,
    decode_candidates,
    decode_vector,
)
from recommender.lifecycle.served import ServedModelCache
from recommender.lifecycle.state import ModelState
from recommender.memo import ExpiringMemo
from recommender.serving import reasons
from recommender.serving.ab_split import CHALLENGER, CONTROL, ChallengerModel, in_challenger_share
from recommender.serving.answers import ANSWERS_KEPT, Answered, Recommendations
from recommender.serving.cards import Cards, Item, ids_of
from recommender.serving.config import ServingConfig
from recommender.serving.degraded import PopularFallback
from recommender.serving.lists import ItemLists
from recommender.serving.sequence import SequenceScores
from recommender.serving.sessions import SessionRecommender
from recommender.store.features import FeatureStore

if TYPE_CHECKING:
    from models.sequential import SequentialModel

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Request:
    """One request, with the model that answers it (the served one, or the challenger's)."""

    user_id: str
    pseudonym: str
    k: int
    exclude: set[str]  # what the caller asked to leave out
    category: str | None
    explain: bool
    version: str | None
    model: ALSModel | None
    bucket: str
    #: The served sequential family's model, read only where a list is computed (`_scored`):
    #: the common request, answered from cached candidates, never waits for it to load.
    sequential: SequentialModel | None = None


_MOVED = object()  # the served-model pointer moved since it was last read: start again


class RecommendationService:
    """Answers recommendation requests from the feature store and the served model.

    The served version is checked on every request (at most every `pointer_check_s`) through
    `ServedALS`, so a promoted model is served without a restart.
    """

    def __init__(
        self,
        store: FeatureStore,
        state: ModelState,
        registry: FamilyRegistry[ALSModel],
        config: ServingConfig | None = None,
        sequential: ServedModelCache[Any] | None = None,
    ) -> None:
        self._config = config = config or ServingConfig()
        self._store = store
        self._state = state
        self._vectors = CFVectors(store.redis, state)
        self._served = ServedALS(state, registry, self._vectors, config.pointer_check_s)
        self._challenger = ChallengerModel(state, registry, max(config.pointer_check_s, 1.0))
        self._cards = Cards(store, config.title_ttl_s, self._served.fitted_knows)
        self.lists = ItemLists(store, self._served, self._cards)
        self._sequence = SequenceScores(sequential, config.sequential_weight)
        self.sessions = SessionRecommender(
            store, self._served, self._sequence, self._cards, config, self.lists
        )
        self.fallback = PopularFallback(store, self._cards)  # while Redis cannot be read
        # The common request's last answer per user and k, while the user's vector and the
        # served model stay what it was computed from; no older than a title may be.
        self.answers: ExpiringMemo[tuple[str, str, int], Answered] = ExpiringMemo(
            config.title_ttl_s, ANSWERS_KEPT
        )
        self._writes: set[asyncio.Future[None]] = set()  # candidates on their way, referenced

    async def served_version(self) -> str | None:
        """The pointer only: a health check must not load a model."""
        served = await self._state.current()
        return served.version if served else None

    async def recommend(
        self,
        user_id: str,
        k: int,
        exclude: Iterable[str] = (),
        category: str | None = None,
        explain: bool = False,
    ) -> Recommendations:
        """Top-k unseen items for ``user_id`` (in ``category`` if given); an unknown user, or
        one the model cannot fill k for, gets popular items.

        The common request (the served version, no category, no explanation, k within the
        cached candidates) is answered from the user's cached candidates in one round trip
        (`_from_cache`); anything else, or a miss, goes through the chain."""
        excluded = set(exclude)
        for again in (False, True):
            req = await self._request(user_id, k, excluded, category, explain)
            if not self._cacheable(req):
                return await self._chain(req, None, read_vector=True)
            found, vec = await self._from_cache(req, again)
            if found is not _MOVED:  # else once more: the read moved this process's pointer
                break
        if isinstance(found, Recommendations):
            return found
        return await self._chain(req, vec, read_vector=False)

    async def forget(self, pseudonym: str) -> int:
        """An erased user's kept answers go, with every other user's (they are recomputed:
        erasure is rare, and the memo of the encoded answers beside it follows a clear).
        Returns 0: process memory, not keys of the store that an erasure reports."""
        self.answers.clear()
        return 0

    async def _request(
        self, user_id: str, k: int, exclude: set[str], category: str | None, explain: bool
    ) -> _Request:
        served, model = await self._served.current()
        version = served.version if served and model is not None else None
        pseudonym = self._store.pseudonym(user_id)
        bucket = CONTROL
        if in_challenger_share(pseudonym, self._config.challenger_share):
            challenger = await self._challenger.current(version)
            if challenger is not None:
                (version, model), bucket = challenger, CHALLENGER
        return _Request(user_id, pseudonym, k, exclude, category, explain, version, model, bucket)

    def _cacheable(self, req: _Request) -> bool:
        return (
            req.model is not None
            and req.version is not None
            and req.bucket == CONTROL
            and req.category is None
            and not req.explain
            and req.k <= self._config.candidates
        )

    async def _from_cache(
        self, req: _Request, again: bool
    ) -> tuple[object | None, UserVector | None]:
        """The answer from the user's cached candidates, as fresh as their vector: one round
        trip. Without ``exclude``, the answer is kept (`answers`) and returned as the same
        object while the user's vector keeps its `as_of` and the served model is the same:
        that round trip then carries no vector and no candidates. The same round trip reads
        the served-model pointer: `_MOVED` when a promotion moved it (the worker now folds the
        user into the new version). Else the answer, or None, with the vector read."""
        assert req.model is not None and req.version is not None
        memo_key = (req.version, req.pseudonym, req.k)
        held = self.answers.get(memo_key) if not req.exclude else None
        if held is not None and held.model is not req.model:
            held = None
        read = await self._vectors.serving_read(
            req.version,
            req.pseudonym,
            self._sequence.items_read(self._config.recent_items),
            held.as_of if held is not None else None,
        )
        if read.pointer_read and self._served.moved(read.pointer) and not again:
            return _MOVED, None
        if read.vector == UNCHANGED and held is not None:
            return held.recs, None
        vec = decode_vector(read.vector)
        # Enough to fill k even when every excluded item is among the first.
        cached = decode_candidates(read.candidates, req.k + len(req.exclude))
        if vec is not None and (cached is None or cached.as_of != vec.as_of) and read.state:
            # The worker folded the user in since: their state came with the read.
            seen, recent = self._store.users.parse_serving_state(
                read.state, self._sequence.items_read(self._config.recent_items)
            )
            req.sequential = await self._sequence.model()
            cached = self._candidates_of(req, vec, seen, recent)
        if vec is None or cached is None or cached.as_of != vec.as_of:
            return None, vec
        items = [(i, s, reasons.CF) for i, s in cached.items if i not in req.exclude][: req.k]
        if len(items) < req.k:
            return None, vec  # the whole chain, with its fallbacks, answers
        items = self._with_new_items(req, vec.vector, items, cached.seen_new | req.exclude)
        found = Recommendations(
            req.user_id, await self._cards.scored(items), req.version, vec.as_of, req.bucket
        )
        if not req.exclude:
            self.answers.put(memo_key, Answered(req.model, vec.as_of, found))
        return found, vec

    async def _chain(
        self, req: _Request, vec: UserVector | None, read_vector: bool
    ) -> Recommendations:
        """The chain's steps, each filling what the ones before left, over one exclude set:
        the user's history, what the caller excluded, and what the steps chose."""
        seen, recent, vec = await self._state_of(req, vec, read_vector)
        excluded = seen | req.exclude
        allowed = (
            await self._store.catalogue.items_in(req.category) if req.category is not None else None
        )
        items: list[Item] = []
        if req.model is not None and vec is not None:
            req.sequential = await self._sequence.model()
            items = self._by_model(req, vec, recent, excluded, allowed)
        if len(items) < req.k and req.category is None:
            items += await self.lists.by_affinity(
                req.user_id, req.k - len(items), excluded | ids_of(items)
            )
        items += await self.lists.fill(req.k - len(items), excluded | ids_of(items), req.category)
        because: dict[str, str] = {}
        if req.explain and req.model is not None:
            cf_items = [i for i, _, r in items if r == reasons.CF]
            because = await self._cards.explain(req.user_id, req.model, cf_items)
        return Recommendations(
            req.user_id,
            await self._cards.scored(items, because),
            req.version,
            vec.as_of if vec else None,
            req.bucket,
        )

    async def _state_of(
        self, req: _Request, vec: UserVector | None, read_vector: bool
    ) -> tuple[set[str], list[str], UserVector | None]:
        """The user's items and latest items and, unless just read, their vector: one round
        trip (each store queues its own). A vector read first is at most as new as the
        features: the candidates cached from them carry its `as_of`, and go stale with it."""
        read_vector = read_vector and req.version is not None and req.bucket == CONTROL
        pipe = self._store.redis.pipeline(transaction=False)
        n = self._sequence.items_read(self._config.recent_items)
        self._store.users.queue_serving_state(pipe, req.pseudonym, n)
        if read_vector:
            assert req.version is not None
            self._vectors.queue_user_vector(pipe, req.version, req.pseudonym)
        rows = await pipe.execute()
        seen, recent = self._store.users.parse_serving_state(rows, n)
        if read_vector:
            vec = decode_vector(rows[2])
        if req.bucket == CHALLENGER and req.model is not None:
            # The worker folds users into the served version only: the challenger's vector is
            # solved here, from the same history (one least-squares solve).
            vec = await self._challenger_vector(req.model, req.pseudonym)
        return seen, recent, vec

    def _by_model(
        self,
        req: _Request,
        vec: UserVector,
        recent: list[str],
        excluded: AbstractSet[str],
        allowed: set[str] | None,
    ) -> list[Item]:
        assert req.model is not None
        c = self._config
        knn = (c.knn_weight, c.recent_decay)
        sequence = self._sequence.scores(req.sequential, req.model, recent)
        ids, scores = req.model.recommend_vector(
            vec.vector, req.k, excluded, allowed, recent[: c.recent_items], *knn, sequence
        )
        items = [(str(i), float(s), reasons.CF) for i, s in zip(ids, scores, strict=True)]
        return self._with_new_items(req, vec.vector, items, excluded, allowed)

    def _candidates_of(
        self, req: _Request, vec: UserVector, seen: set[str], recent: list[str]
    ) -> CachedCandidates:
        """The user's best `candidates` items (`best_candidates`), cached until the worker
        folds them in again. The answer does not wait for the cache's write: a request that
        comes before it lands computes them again, and writes the same."""
        assert req.model is not None and req.version is not None
        c = self._config
        sequence = self._sequence.scores(req.sequential, req.model, recent)
        knn = (c.knn_weight, c.recent_decay)
        cached = best_candidates(
            req.model, vec, seen, recent[: c.recent_items], c.candidates, *knn,
            self._served.fitted_knows, sequence,
        )  # fmt: skip
        write = asyncio.ensure_future(
            self._vectors.write_candidates(req.version, {req.pseudonym: cached})
        )
        self._writes.add(write)
        write.add_done_callback(self._written)
        return cached

    def _written(self, write: asyncio.Future[None]) -> None:
        self._writes.discard(write)
        if not write.cancelled() and write.exception() is not None:
            log.warning("could not cache a user's candidates: %s", write.exception())

    async def _challenger_vector(self, model: ALSModel, pseudonym: str) -> UserVector | None:
        histories, as_of = await self._store.users.histories_and_last_seen([pseudonym])
        if not histories or not histories[0]:
            return None
        return UserVector(model.user_vectors(histories)[0], as_of.get(pseudonym, 0))

    def _with_new_items(
        self,
        req: _Request,
        vector: np.ndarray,
        items: list[Item],
        excluded: AbstractSet[str],
        allowed: set[str] | None = None,
    ) -> list[Item]:
        """Keep up to `new_item_slots` places at the end of the list for items newer than the
        fit that suit the user (`ALSModel.new_items_for`): a new item's factor comes from its
        content or a few users, and its score would rarely reach a top k on its own."""
        assert req.model is not None
        new_ids, cos = req.model.new_items_for(
            vector,
            self._config.new_item_slots,
            self._config.new_item_within,
            excluded | ids_of(items),
            allowed,
        )
        if not len(new_ids):
            return items
        fresh = [(str(i), float(c), reasons.NEW) for i, c in zip(new_ids, cos, strict=True)]
        return items[: max(req.k - len(fresh), 0)] + fresh
