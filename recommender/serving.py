"""Serving: recommendations through a fallback chain, similar items, and popular or trending
lists; every item with a short reason.

The chain: the ALS score blended with the neighbours of the user's latest items; then, for what
the model cannot fill (no model yet, a user it cannot place), the popular items of the user's
favourite categories; then popular items.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

from models.als import ALSModel
from models.base import FactorModel
from models.registry import FamilyRegistry
from recommender.ab_split import CHALLENGER, CONTROL, ChallengerModel, in_challenger_share
from recommender.cf_vectors import (
    UNCHANGED,
    CachedCandidates,
    CFVectors,
    UserVector,
    decode_candidates,
    decode_vector,
)
from recommender.feature_store import FeatureStore, ItemCard
from recommender.memo import ExpiringMemo
from recommender.model_state import ModelState
from recommender.served import ServedALS
from recommender.types import ScoredItem

log = logging.getLogger(__name__)

REASON_CF = "people with similar taste liked it"
REASON_NEW = "new, and close to your taste"
REASON_POPULAR = "popular right now"
REASON_SIMILAR = "liked by the same people"
REASON_TRENDING = "trending in the last hour"

#: How many recent items an explanation looks through for the closest one.
EXPLAIN_RECENT = 20
TITLE_CACHE_SIZE = 100_000
#: Categories the affinity step looks at, the user's strongest first.
AFFINITY_TOP = 3
#: Users whose last answer a process keeps (`RecommendationService.answers`). Each answer is a
#: dozen objects the garbage collector walks in a full collection: 20,000 answers made one take
#: 26 ms longer (ad hoc), which a request waits out.
ANSWERS_KEPT = 10_000


def reason_popular_in(window: str) -> str:
    return f"popular in the last {window}"


def reason_affinity(category: str) -> str:
    return f"popular in {category}, which you like"


def reason_because(title: str) -> str:
    return f"because you liked {title}"


def reason_new_like(title: str) -> str:
    """A brand-new item placed from its content, near a known one."""
    return f"new, like {title}"


@dataclass(frozen=True, slots=True)
class Recommendations:
    user_id: str
    items: list[ScoredItem]
    model_version: str | None
    user_event_ms: int | None = None  # newest event folded into the user's vector
    bucket: str = CONTROL


@dataclass(frozen=True, slots=True)
class _Answered:
    """An answer from a user's cached candidates, and what it stands on: the served model
    object (its new items fill the last places) and the vector's `as_of`."""

    model: ALSModel
    as_of: int
    recs: Recommendations


def best_candidates(
    model: ALSModel,
    vec: UserVector,
    seen: AbstractSet[str],
    recent: Sequence[str],
    n: int,
    knn_weight: float,
    recent_decay: float,
    fitted_knows: Callable[[str], bool],
) -> CachedCandidates:
    """A user's best ``n`` items by the whole chain's first step (the factors and the
    neighbours of their recent items, their history left out), as of their vector. Items newer
    than the fit that they touched are kept with them: the new-item places, filled at request
    time, must skip them. Serving computes them on a cache miss; a refit, for its users, before
    its version serves (`recommender.refit_job`)."""
    ids, scores = model.recommend_vector(
        vec.vector, n, seen, None, recent, knn_weight, recent_decay
    )
    return CachedCandidates(
        vec.as_of,
        [(str(i), float(s)) for i, s in zip(ids, scores, strict=True)],
        frozenset(i for i in seen if not fitted_knows(i)),
    )


class RecommendationService:
    """Answers recommendation requests from the feature store and the served model.

    The served version is checked on every request (one Redis read) through `ServedModelCache`,
    so a promoted model is served without a restart.
    """

    def __init__(
        self,
        store: FeatureStore,
        state: ModelState,
        registry: FamilyRegistry[ALSModel],
        pointer_check_s: float = 0.0,
        title_ttl_s: float = 0.0,
        knn_weight: float = 0.0,
        recent_items: int = 0,
        recent_decay: float = 0.95,
        new_item_slots: int = 0,
        new_item_within: int = 100,
        challenger_share: float = 0.0,
        candidates: int = 0,
    ) -> None:
        """``knn_weight`` and ``recent_items``: how much the neighbours of the user's latest
        items count against the ALS score (see `ALSModel.recommend_vector`)."""
        self._candidates = candidates  # cached per user (0: every request computes its answer)
        self._new_item_slots = new_item_slots
        self._new_item_within = new_item_within
        self._knn_weight = knn_weight
        self._recent_items = recent_items
        self._recent_decay = recent_decay
        self._store = store
        self._state = state
        self._vectors = CFVectors(store.redis, state)
        self._served = ServedALS(state, registry, self._vectors, pointer_check_s)
        self._challenger_share = challenger_share
        self._challenger = ChallengerModel(state, registry, max(pointer_check_s, 1.0))
        self._title_ttl_s = title_ttl_s
        self._titles: dict[str, tuple[float, ItemCard]] = {}
        # The common request's last answer per user and k, while the user's vector and the
        # served model stay what it was computed from; no older than a title may be.
        self.answers: ExpiringMemo[tuple[str, str, int], _Answered] = ExpiringMemo(
            title_ttl_s, ANSWERS_KEPT
        )
        self._writes: set[asyncio.Future[None]] = set()  # candidates on their way, referenced

    async def _cards_of(self, item_ids: Sequence[str]) -> dict[str, ItemCard]:
        """Titles and what else an answer shows of an item, from a short-lived in-process cache
        when ``title_ttl_s`` > 0 (titles change rarely; reading ten per request was an eighth of
        the API's time in a profile)."""
        now = time.monotonic()
        found: dict[str, ItemCard] = {}
        missing = []
        for item in dict.fromkeys(item_ids):
            hit = self._titles.get(item)
            if hit is not None and hit[0] > now:
                found[item] = hit[1]
            else:
                missing.append(item)
        if missing:
            fetched = await self._store.cards(missing)
            if self._title_ttl_s > 0:
                if len(self._titles) > TITLE_CACHE_SIZE:
                    self._titles.clear()
                expires = now + self._title_ttl_s
                self._titles.update(
                    {i: (expires, t) for i, t in zip(missing, fetched, strict=True)}
                )
            found.update(zip(missing, fetched, strict=True))
        return found

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
        *,
        _again: bool = False,
    ) -> Recommendations:
        """Top-k unseen items for ``user_id`` (in ``category`` if given); an unknown user, or
        one the model cannot fill k for, gets popular items.

        The common request (the served version, no category, no explanation, k within the
        cached candidates) is answered from the user's cached candidates in one round trip,
        while they are as fresh as the user's vector; the first request after the worker folded
        the user in computes them (`_candidates_of`). Without ``exclude``, the answer is kept
        (`answers`) and returned as the same object while the user's vector keeps its `as_of`
        and the served model is the same: that round trip then carries no vector and no
        candidates, and nothing is decoded or scored again. The same round trip reads the
        served-model pointer: if a promotion moved it since the last look (the worker now folds
        the user into the new version), the request starts again from it, once."""
        served, model = await self._served.current()
        version = served.version if served and model is not None else None
        pseudonym = self._store.pseudonym(user_id)
        challenger = None
        if in_challenger_share(pseudonym, self._challenger_share):
            challenger = await self._challenger.current(version)
        if challenger is not None:
            (version, model), bucket = challenger, CHALLENGER
        else:
            bucket = CONTROL
        excluded_here = set(exclude)
        cacheable = (
            model is not None
            and version is not None
            and challenger is None
            and category is None
            and not explain
            and k <= self._candidates
        )
        vec: UserVector | None = None
        if cacheable:
            assert model is not None and version is not None
            memo_key = (version, pseudonym, k)
            held = self.answers.get(memo_key) if not excluded_here else None
            if held is not None and held.model is not model:
                held = None
            read = await self._vectors.serving_read(
                version, pseudonym, self._recent_items, held.as_of if held is not None else None
            )
            if self._served.moved(read.pointer) and not _again:
                return await self.recommend(user_id, k, exclude, category, explain, _again=True)
            if read.vector == UNCHANGED and held is not None:
                return held.recs
            vec = decode_vector(read.vector)
            # Enough to fill k even when every excluded item is among the first.
            cached = decode_candidates(read.candidates, k + len(excluded_here))
            if vec is not None and (cached is None or cached.as_of != vec.as_of) and read.state:
                # The worker folded the user in since: their state came with the read.
                seen, recent = self._store.parse_serving_state(read.state, self._recent_items)
                cached = self._candidates_of(model, version, pseudonym, vec, seen, recent)
            if vec is not None and cached is not None and cached.as_of == vec.as_of:
                found = await self._from_candidates(
                    user_id, version, bucket, model, vec, k, cached, excluded_here
                )
                if found is not None:
                    if not excluded_here:
                        self.answers.put(memo_key, _Answered(model, vec.as_of, found))
                    return found
        # One round trip for the user's features and, unless just read, their vector (each
        # store queues its own). A vector read first is at most as new as the features: the
        # candidates cached from them carry its `as_of`, and go stale with it.
        read_vector = version is not None and challenger is None and not cacheable
        pipe = self._store.redis.pipeline(transaction=False)
        self._store.queue_serving_state(pipe, pseudonym, self._recent_items)
        if read_vector:
            assert version is not None
            self._vectors.queue_user_vector(pipe, version, pseudonym)
        rows = await pipe.execute()
        seen, recent = self._store.parse_serving_state(rows, self._recent_items)
        if read_vector:
            vec = decode_vector(rows[2])
        if challenger is not None and model is not None:
            # The worker folds users into the served version only: the challenger's vector is
            # solved here, from the same history (one least-squares solve).
            vec = await self._challenger_vector(model, pseudonym)
        excluded = seen | excluded_here
        allowed = await self._store.items_in(category) if category is not None else None
        items: list[tuple[str, float, str]] = []
        if model is not None and vec is not None:
            ids, scores = model.recommend_vector(
                vec.vector, k, excluded, allowed, recent, self._knn_weight, self._recent_decay
            )
            items = [(str(i), float(s), REASON_CF) for i, s in zip(ids, scores, strict=True)]
            items = self._with_new_items(model, vec.vector, k, items, excluded, allowed)
        if len(items) < k and category is None:
            items += await self._by_affinity(user_id, k - len(items), excluded, items)
        if len(items) < k:
            taken = excluded | {i for i, _, _ in items}
            popular = await self._store.popular(k - len(items), taken, category)
            reason = REASON_POPULAR if category is None else f"popular in {category}"
            items += [(i, s, reason) for i, s in popular]
        because: dict[str, str] = {}
        if explain and model is not None:
            because = await self._explain(
                user_id, model, [i for i, _, r in items if r == REASON_CF]
            )
        return Recommendations(
            user_id,
            await self._scored(items, because),
            version,
            vec.as_of if vec else None,
            bucket,
        )

    async def forget(self, pseudonym: str) -> int:
        """An erased user's kept answers go, with every other user's (they are recomputed:
        erasure is rare, and the memo of the encoded answers beside it follows a clear).
        Returns 0: process memory, not keys of the store that an erasure reports."""
        self.answers.clear()
        return 0

    def _candidates_of(
        self,
        model: ALSModel,
        version: str,
        pseudonym: str,
        vec: UserVector,
        seen: set[str],
        recent: list[str],
    ) -> CachedCandidates:
        """The user's best `candidates` items (`best_candidates`), cached until the worker
        folds them in again. The answer does not wait for the cache's write: a request that
        comes before it lands computes them again, and writes the same."""
        cached = best_candidates(
            model,
            vec,
            seen,
            recent,
            self._candidates,
            self._knn_weight,
            self._recent_decay,
            self._served.fitted_knows,
        )
        write = asyncio.ensure_future(self._vectors.write_candidates(version, {pseudonym: cached}))
        self._writes.add(write)
        write.add_done_callback(self._written)
        return cached

    def _written(self, write: asyncio.Future[None]) -> None:
        self._writes.discard(write)
        if not write.cancelled() and write.exception() is not None:
            log.warning("could not cache a user's candidates: %s", write.exception())

    async def _from_candidates(
        self,
        user_id: str,
        version: str,
        bucket: str,
        model: ALSModel,
        vec: UserVector,
        k: int,
        cached: CachedCandidates,
        exclude: set[str],
    ) -> Recommendations | None:
        """The answer from cached candidates, or None when they cannot fill k (the whole chain,
        with its fallbacks, then answers)."""
        items = [(i, s, REASON_CF) for i, s in cached.items if i not in exclude][:k]
        if len(items) < k:
            return None
        items = self._with_new_items(model, vec.vector, k, items, cached.seen_new | exclude, None)
        return Recommendations(user_id, await self._scored(items), version, vec.as_of, bucket)

    async def _challenger_vector(self, model: ALSModel, pseudonym: str) -> UserVector | None:
        histories, as_of = await self._store.histories_and_last_seen([pseudonym])
        if not histories or not histories[0]:
            return None
        return UserVector(model.user_vectors(histories)[0], as_of.get(pseudonym, 0))

    def _with_new_items(
        self,
        model: ALSModel,
        vector: np.ndarray,
        k: int,
        items: list[tuple[str, float, str]],
        excluded: AbstractSet[str],
        allowed: set[str] | None,
    ) -> list[tuple[str, float, str]]:
        """Keep up to `new_item_slots` places at the end of the list for items newer than the
        fit that suit the user (`ALSModel.new_items_for`): a new item's factor comes from its
        content or a few users, and its score would rarely reach a top k on its own."""
        taken = {i for i, _, _ in items}
        new_ids, cos = model.new_items_for(
            vector, self._new_item_slots, self._new_item_within, excluded | taken, allowed
        )
        if not len(new_ids):
            return items
        fresh = [(str(i), float(c), REASON_NEW) for i, c in zip(new_ids, cos, strict=True)]
        return items[: max(k - len(fresh), 0)] + fresh

    async def _by_affinity(
        self,
        user_id: str,
        n: int,
        excluded: set[str],
        chosen: Sequence[tuple[str, float, str]],
    ) -> list[tuple[str, float, str]]:
        """The chain's step between the model and plain popularity: popular items of the
        categories the user likes most (for users the model cannot place yet)."""
        affinity = await self._store.category_affinity(user_id)
        found: list[tuple[str, float, str]] = []
        taken = excluded | {i for i, _, _ in chosen}
        for cat, _ in sorted(affinity.items(), key=lambda kv: (-kv[1], kv[0]))[:AFFINITY_TOP]:
            for item, score in await self._store.popular(n - len(found), taken, cat):
                found.append((item, score, reason_affinity(cat)))
                taken.add(item)
            if len(found) >= n:
                break
        return found

    async def _explain(
        self, user_id: str, model: FactorModel, recommended: Sequence[str]
    ) -> dict[str, str]:
        """For each CF item, the user's recent item closest to it in the model's item space."""
        recent = [r.item_id for r in await self._store.recent(user_id, EXPLAIN_RECENT)]
        mine = model.item_vectors(dict.fromkeys(recent))
        theirs = model.item_vectors(recommended)
        if not mine or not theirs:
            return {}
        mine_ids = list(mine)
        sims = np.stack([theirs[i] for i in theirs]) @ np.stack([mine[i] for i in mine_ids]).T
        return {i: mine_ids[int(j)] for i, j in zip(theirs, sims.argmax(axis=1), strict=True)}

    async def _scored(
        self, items: Sequence[tuple[str, float, str]], because: dict[str, str] | None = None
    ) -> list[ScoredItem]:
        because = because or {}
        cards = await self._cards_of([i for i, _, _ in items])
        likes = [c.placed_like for c in cards.values() if c.placed_like]
        names = {
            **cards,
            **await self._cards_of([because[i] for i, _, _ in items if i in because] + likes),
        }
        out = []
        for item, score, reason in items:
            card, cause = cards[item], because.get(item)
            if cause is not None:
                reason = reason_because(names[cause].title or cause)
            elif (
                reason in {REASON_CF, REASON_NEW}
                and card.placed_like is not None
                and not self._served.fitted_knows(item)
            ):
                reason = reason_new_like(names[card.placed_like].title or card.placed_like)
            out.append(ScoredItem(item, score, card.title, reason, cause, card.predicted))
        return out

    async def similar(self, item_id: str, k: int) -> tuple[list[ScoredItem], str | None] | None:
        """Items most like ``item_id`` by the served model; None when the item is unknown."""
        served, model = await self._served.current()
        if model is not None:
            ids, scores = model.similar_items(item_id, k)
            if len(ids):
                items = [
                    (str(i), float(s), REASON_SIMILAR) for i, s in zip(ids, scores, strict=True)
                ]
                return await self._scored(items), served.version if served else None
        if not await self._store.known_item(item_id):
            return None
        # Known, but too new for the model: the popular items of its categories.
        (cats,) = await self._store.categories([item_id])
        found: dict[str, float] = {}
        for c in cats:
            for i, s in await self._store.popular(k, {item_id}, c):
                found[i] = max(found.get(i, 0.0), s)
        ranked = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        items = [(i, s, f"popular in {', '.join(cats)}") for i, s in ranked]
        return await self._scored(items), served.version if served else None

    async def popular(self, window: str | None, k: int) -> list[ScoredItem]:
        """All-time popular items, or those of a window (`1h`, `24h`, `7d`)."""
        if window is None:
            rows = await self._store.popular(k)
            reason = REASON_POPULAR
        else:
            rows = await self._store.popular_in(window, k)
            reason = reason_popular_in(window)
        return await self._scored([(i, s, reason) for i, s in rows])

    async def trending(self, k: int) -> list[ScoredItem]:
        rows = await self._store.trending(k)
        return await self._scored([(i, s, REASON_TRENDING) for i, s in rows])
