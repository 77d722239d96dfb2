"""A full refit's heavy half, run in the worker's fit process: read every live user's history
from Redis, judge a challenger against the served model (the quality gate), fit ALS and the
cold-start map, and hand back plain data. The worker (`recommender.cf.refits.Trainer`) decides
when, and publishes what comes back.

Why a process reads the data itself: in the worker, parsing every user's history (200,000
events' worth), splitting it for the gate and pickling it to the fit process held the event loop
and the GIL for seconds: timed ad hoc, its steps held the loop for 10-74 ms at a time, and in
one run of `bench ingest`'s freshness phase (2,000 events/s) the per-second median from event to
feature was 11-28 ms before a refit started and 31-78 ms in the seconds after.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from models.als import ALSModel
from models.content_map import ContentMap
from models.data import InteractionMatrix
from models.features import item_text
from models.fitting import FittedALS, fit_als
from recommender.cf.candidates import SEQUENCE_ITEMS, best_candidates
from recommender.cf.vectors import CachedCandidates, CFVectors, UserVector
from recommender.evaluation.ranking import Split, evaluate, forward_split
from recommender.lifecycle.families import SEQUENTIAL, model_registry
from recommender.lifecycle.publishing import Gate, GateResult
from recommender.lifecycle.state import ModelState
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore

if TYPE_CHECKING:  # torch: loaded only while a sequential version serves
    from models.sequential import SequentialModel

#: Users the quality gate looks at (a sample, beyond that).
GATE_MAX_USERS = 5000
#: Users whose candidates a refit computes before its version serves, the most recently active
#: first; serving computes the others' on their first request. Without them, every user's first
#: request after a promotion scored the whole catalogue at once: in `bench serve`, the seconds
#: after a refit read a p99 of 18-20 ms against 6-7 before (ad hoc, 671 users).
PRECOMPUTED_USERS = 10_000


@dataclass(frozen=True)
class GatePlan:
    """What the gate judges against: the served version as fitted, and its data clock."""

    since: int  # the newest event time the served version was fitted on
    version: str
    item_ids: npt.NDArray[np.str_]
    item_factors: npt.NDArray[np.float32]


@dataclass(frozen=True)
class RefitJob:
    """What the fit process needs (plain data: it is pickled to the process)."""

    settings: Settings
    params: dict[str, Any]
    gate: GatePlan | Gate  # a plan to judge by, or the note saying why there is none
    text_model: tuple[str, str] | None  # the served text model's (version, artifact)


@dataclass(frozen=True)
class RefitData:
    """What a refit fitted, and on what."""

    watermark: int  # events applied before the data was read: the model has at least these
    clock: int  # the newest event time when it had been read: the model saw none newer
    users: list[str]  # pseudonyms, in the order of `fitted.user_vectors`
    as_of: dict[str, int]  # each user's newest event time
    fitted: FittedALS
    items: int
    nnz: int
    gate: Gate
    fit_seconds: float
    pending_recs: str | None  # the candidates computed for its users (`keys.pending_recs`)


@dataclass(frozen=True)
class ContentInputs:
    """What the cold-start map is fitted on."""

    item_ids: list[str]
    texts: list[str]
    categories: list[dict[str, float]]
    text_model: str  # the text model's artifact
    text_version: str


def run_refit(job: RefitJob) -> RefitData:
    """The entry point of the fit process (a top-level function, so that it pickles)."""
    return asyncio.run(_refit(job))


async def _refit(job: RefitJob) -> RefitData:
    _, redis_url = job.settings.require_infrastructure()
    redis = redis_async(redis_url)
    try:
        store = FeatureStore(redis, job.settings)
        # Events go on arriving while the data is read: the watermark is what was applied
        # before it (the model has at least that), the clock what was newest after it (the
        # gate's next holdout, what users did after this clock, holds nothing this model saw).
        watermark = (await store.stats.all()).get("events_applied", 0)
        users = await store.users.active()
        histories, as_of = await store.users.histories_and_last_seen(users)
        clock = (await store.stats.all()).get("clock", 0)
        data = InteractionMatrix.from_histories(users, histories)
        # After a drift: the item factors from everything, the users from their latest items.
        window = await store.users.drift_window_s()
        latest = (await store.users.histories_and_last_seen(users, window))[0] if window else None
        gate = job.gate
        if isinstance(gate, GatePlan):
            gate = await _judge(store, gate, users, histories, job)
        content = None
        if job.text_model is not None:
            content = await _content_inputs(store, data, *job.text_model)
        ahead: list[str] = []
        if job.settings.serve_candidates > 0:
            ahead = sorted(users, key=lambda p: -as_of.get(p, 0))[:PRECOMPUTED_USERS]
        sequential = await _served_sequential(redis, job.settings) if ahead else None
        n = SEQUENCE_ITEMS if sequential is not None else job.settings.serve_recent_items
        recent = await store.users.recent_items_of(ahead, n)
    finally:
        await redis.aclose()
    started = time.perf_counter()
    fitted = fit_cf(data, content, **job.params)
    if latest is not None:
        fitted = fitted._replace(user_vectors=fitted.model(**job.params).user_vectors(latest))
    fit_s = time.perf_counter() - started
    pending = None
    if ahead:
        found = _candidates_ahead(job, fitted, users, histories, as_of, ahead, recent, sequential)
        redis = redis_async(redis_url)
        try:
            vectors = CFVectors(redis, ModelState(redis))
            pending = await vectors.write_pending_candidates(uuid.uuid4().hex, found)
        finally:
            await redis.aclose()
    return RefitData(
        watermark, clock, users, as_of, fitted, len(data.item_ids), data.nnz, gate, fit_s, pending
    )


def _candidates_ahead(
    job: RefitJob,
    fitted: FittedALS,
    users: list[str],
    histories: list[dict[str, float]],
    as_of: dict[str, int],
    ahead: list[str],
    recent: list[list[str]],
    sequential: SequentialModel | None = None,
) -> dict[str, CachedCandidates]:
    """The candidates serving would compute for each of ``ahead`` from the new fit, as of the
    vectors it will serve them (`PRECOMPUTED_USERS`), with the served sequential family's
    scores blended in as serving blends them."""
    rows = {p: i for i, p in enumerate(users)}
    model = fitted.model(**job.params)
    s = job.settings
    sequences: list[Any] = [None] * len(ahead)
    if sequential is not None:
        index = sequential.index_of(model.item_ids)
        sequences = [
            None if a is None else (a, s.sequential_weight)
            for a in sequential.aligned(recent, index)
        ]
    return {
        p: best_candidates(
            model,
            UserVector(fitted.user_vectors[rows[p]], as_of.get(p, 0)),
            histories[rows[p]].keys(),
            mine[: s.serve_recent_items],
            s.serve_candidates,
            s.serve_knn_weight,
            s.serve_recent_decay,
            model.knows,
            sequence,
        )
        for p, mine, sequence in zip(ahead, recent, sequences, strict=True)
    }


async def _served_sequential(redis: aioredis.Redis, settings: Settings) -> SequentialModel | None:
    """The served sequential version's model, when the family is on and one serves."""
    if settings.sequential_weight <= 0:
        return None
    served = await ModelState(redis, SEQUENTIAL).current()
    if served is None:
        return None
    found = await asyncio.to_thread(
        model_registry(settings).family(SEQUENTIAL).load, served.version
    )
    return found.model  # type: ignore[no-any-return]


async def _judge(
    store: FeatureStore,
    plan: GatePlan,
    users: list[str],
    histories: list[dict[str, float]],
    job: RefitJob,
) -> Gate:
    """Challenger against the served model on what users did since the served one was fitted;
    a note instead when too few users did anything to judge on."""
    s = job.settings
    sample = users
    if len(users) > GATE_MAX_USERS:
        sample = random.Random(len(users)).sample(users, GATE_MAX_USERS)
    new_items = await store.users.items_since(sample, plan.since)
    split = forward_split(dict(zip(users, histories, strict=True)), new_items)
    if len(split.test) < s.quality_gate_min_users:
        return Gate(
            note=f"{len(split.test)} users active since the served fit "
            f"(STREAMREC_QUALITY_GATE_MIN_USERS is {s.quality_gate_min_users})"
        )
    challenger, served = gate_scores(split, plan.item_ids, plan.item_factors, job.params)
    return Gate(
        GateResult(challenger, served, s.quality_gate_margin, len(split.test), plan.version)
    )


def gate_scores(
    split: Split,
    served_item_ids: npt.NDArray[np.str_],
    served_item_factors: npt.NDArray[np.float32],
    params: dict[str, Any],
) -> tuple[float, float]:
    """(challenger, served) NDCG@10 on what users did since the served model was fitted.

    The challenger is fitted with ``params`` on everything but that; the served model keeps its
    item factors, which never saw it either. Both fold the users in from the same training
    histories, so the comparison is like for like."""
    users = list(split.train)
    data = InteractionMatrix.from_histories(users, [split.train[u] for u in users])
    challenger = fit_als(data, **params).model(**params)
    served = ALSModel.from_factors(served_item_ids, served_item_factors, **params)
    return evaluate(challenger, split).ndcg, evaluate(served, split).ndcg


async def _content_inputs(
    store: FeatureStore, data: InteractionMatrix, version: str, artifact: str
) -> ContentInputs:
    """The fitted items' content, for the map from a text model's features to item factors."""
    items = [str(i) for i in data.item_ids]
    contents = await store.catalogue.item_contents(items)
    have = [(i, c) for i, c in zip(items, contents, strict=True) if c is not None]
    return ContentInputs(
        [i for i, _ in have],
        [item_text(c.title, c.text) for _, c in have],
        [c.categories for _, c in have],
        artifact,
        version,
    )


def fit_cf(data: InteractionMatrix, content: ContentInputs | None, **params: Any) -> FittedALS:
    """ALS (`fit_als`) and, given the items' content, the map from content to item factors
    (`models.content_map`)."""
    fitted = fit_als(data, **params)
    if content is None or not content.item_ids:
        return fitted
    import torch

    from models.text import TextClassifier

    torch.set_num_threads(1)  # a background process: one core stays with ingestion
    text = TextClassifier.load(Path(content.text_model))
    row = {str(item): i for i, item in enumerate(fitted.item_ids)}
    embeddings = text.embed(content.texts)
    factors = fitted.item_factors[[row[i] for i in content.item_ids]]
    cmap = ContentMap.fit(
        embeddings, content.categories, text.labels, factors, content.text_version
    )
    return fitted._replace(content_map=cmap)
