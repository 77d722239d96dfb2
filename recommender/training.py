"""Collaborative filtering's full refits: when (`refit_policy`), on what, judged how, published
through the shared lifecycle. A fit runs on ``fit_executor`` (in the worker, a process of its
own), so ingestion goes on meanwhile; the per-event half lives in `cf_updater`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.als import ALSModel, FittedALS, fit_als
from models.content_map import ContentMap
from models.data import InteractionMatrix
from models.errors import ModelNotFoundError
from models.features import item_text
from models.registry import FamilyRegistry
from recommender.cf_updater import CFUpdater
from recommender.cf_vectors import CFVectors
from recommender.evaluation import Split, evaluate, forward_split
from recommender.feature_store import FeatureStore
from recommender.lifecycle import Gate, GateResult, ModelLifecycle
from recommender.model_state import ModelState, ServedModel
from recommender.refit_policy import RefitClock, RefitDecision, RefitPolicy, decide_refit
from recommender.settings import Settings

log = logging.getLogger(__name__)

#: Users the quality gate looks at (a sample, beyond that).
GATE_MAX_USERS = 5000


def gate_scores(
    split: Split,
    served_item_ids: npt.NDArray[np.str_],
    served_item_factors: npt.NDArray[np.float32],
    params: dict[str, Any],
) -> tuple[float, float]:
    """(challenger, served) NDCG@10 on what users did since the served model was fitted.

    The challenger is fitted with ``params`` on everything but that; the served model keeps its
    item factors, which never saw it either. Both fold the users in from the same training
    histories, so the comparison is like for like. A top-level function, so that it runs in the
    worker's fit process."""
    users = list(split.train)
    data = InteractionMatrix.from_histories(users, [split.train[u] for u in users])
    challenger = fit_als(data, **params).model(**params)
    served = ALSModel.from_factors(served_item_ids, served_item_factors, **params)
    return evaluate(challenger, split).ndcg, evaluate(served, split).ndcg


@dataclass(frozen=True)
class ContentInputs:
    """What the cold-start map is fitted on (sent to the fit process, so plain data)."""

    item_ids: list[str]
    texts: list[str]
    categories: list[dict[str, float]]
    text_model: str  # the text model's artifact
    text_version: str


def fit_cf(data: InteractionMatrix, content: ContentInputs | None, **params: Any) -> FittedALS:
    """ALS (`fit_als`) and, given the items' content, the map from content to item factors
    (`models.content_map`). A top-level function: it runs in the worker's fit process."""
    fitted = fit_als(data, **params)
    if content is None or not content.item_ids:
        return fitted
    import torch

    from models.text import TextClassifier

    torch.set_num_threads(1)  # the fit process is niced; one core stays with ingestion
    text = TextClassifier.load(Path(content.text_model))
    row = {str(item): i for i, item in enumerate(fitted.item_ids)}
    embeddings = text.embed(content.texts)
    factors = fitted.item_factors[[row[i] for i in content.item_ids]]
    cmap = ContentMap.fit(
        embeddings, content.categories, text.labels, factors, content.text_version
    )
    return fitted._replace(content_map=cmap)


def refit_policy(settings: Settings) -> RefitPolicy:
    return RefitPolicy(
        settings.als_min_events,
        settings.refit_growth,
        settings.refit_min_interval_s,
        settings.refit_idle_s,
        settings.refit_interval_s,
    )


class Trainer:
    """Refits the CF model from scratch when the refit policy says so, and publishes it.

    Parameters
    ----------
    store, state, registry, settings
        The feature store, the CF family's pointer and versions, and the ALS settings.
    fit_executor
        Runs full fits (a process pool in the worker); None: a thread.
    updater
        The per-event listener serving the same versions (one is made when not given).
    """

    def __init__(
        self,
        store: FeatureStore,
        state: ModelState,
        registry: FamilyRegistry[ALSModel],
        settings: Settings,
        fit_executor: Executor | None = None,
        updater: CFUpdater | None = None,
        text_model: Callable[[], Awaitable[tuple[str, Path] | None]] | None = None,
    ) -> None:
        """``text_model``: the served text model's (version, artifact), if any: each fit then
        also learns where new items go from their content (cold start)."""
        self._store = store
        self._registry = registry
        self._settings = settings
        self._fit_executor = fit_executor
        self._policy = refit_policy(settings)
        vectors = CFVectors(store.redis, state)
        self.vectors = vectors
        self.updater = updater or CFUpdater(store, state, registry, vectors)
        self.lifecycle = ModelLifecycle(
            state, registry, prepare=self.updater.prepare, count=store.incr_stat
        )
        self._fitted_at_events = 0
        self._fitted_at = time.monotonic()
        self._synced_version: str | None = None
        self._fitting = False
        self._requested: str | None = None
        self._text_model = text_model
        self._map_tried: str | None = None  # the text version the last fit's map read
        self.last_decision = RefitDecision(False, "not checked yet")

    @property
    def version(self) -> str | None:
        return self.updater.version

    async def sync(self) -> ServedModel | None:
        """Follow the served version (another process may have promoted one)."""
        served = await self.updater.sync()
        if served is not None and served.version != self._synced_version:
            self._synced_version = served.version
            self._fitted_at_events = served.watermark
        return served

    def request_refit(self, why: str) -> None:
        """Ask for a refit at the next check (a monitor saw the served model degrade)."""
        self._requested = why

    async def maybe_refit(self) -> str | None:
        """Refit if due; return the new version, or None."""
        if self._fitting:
            return None
        served = await self.sync()
        applied = (await self._store.stats()).get("events_applied", 0)
        now = time.monotonic()
        self.last_decision = decide_refit(
            RefitClock(
                applied,
                self._fitted_at_events,
                now - self._fitted_at,
                now - self.updater.last_event,
                served is not None,
                self._requested,
                await self._content_changed(),
            ),
            self._policy,
        )
        if not self.last_decision.due:
            return None
        self._requested = None
        return await self.refit()

    def _params(self) -> dict[str, Any]:
        s = self._settings
        return {
            "factors": s.als_factors,
            "regularization": s.als_regularization,
            "iterations": s.als_iterations,
            "alpha": s.als_alpha,
            "neighbours": s.knn_neighbours,
        }

    async def refit(self) -> str:
        """Fit on every live user's history and publish it (served if the served version is
        not pinned and the gate passes; else the challenger); then re-fold the users touched
        meanwhile. Returns the new version, served or not."""
        self._fitting = True
        self.updater.track_touched()
        promoted = False
        try:
            await self.sync()
            stats = await self._store.stats()
            applied, clock = stats.get("events_applied", 0), stats.get("clock", 0)
            users = await self._store.active_users()
            histories, as_of = await self._store.histories_and_last_seen(users)
            # Off the event loop, as every step of a refit that walks all the data, so that the
            # loop applies events in between (they still share the GIL with it).
            data = await asyncio.to_thread(InteractionMatrix.from_histories, users, histories)
            params = self._params()
            # Judged even while pinned: `models unpin` then serves the best waiting version.
            gate = await self._gate(users, histories, params)
            content = await self._content_inputs(data)
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            fitted = await loop.run_in_executor(
                self._fit_executor, partial(fit_cf, data, content, **params)
            )
            fit_s = time.perf_counter() - started
            model = fitted.model(**params)

            async def serve(version: str) -> None:
                vectors = dict(zip(users, fitted.user_vectors, strict=True))
                await self.vectors.write_user_vectors(version, vectors, as_of)

            version, promoted = await self.lifecycle.publish(
                model,
                {
                    "watermark": applied,
                    "clock": clock,  # the newest event time in the data
                    "users": len(users),
                    "items": len(data.item_ids),
                    "nnz": data.nnz,
                    "fit_seconds": round(fit_s, 3),
                    "params": params,
                    "refit_reason": self.last_decision.reason,
                },
                gate,
                serve,
            )
            if promoted:
                self.updater.adopt(version, model)
                self._synced_version = version
                log.info(
                    "model %s fitted on %d users, %d items, %d events in %.2fs",
                    version,
                    len(users),
                    len(data.item_ids),
                    applied,
                    fit_s,
                )
            else:
                log.warning("model %s held back", version)
            self._fitted_at_events, self._fitted_at = applied, time.monotonic()
        finally:
            self._fitting = False
            touched = self.updater.touched()
        # Events applied while the fit ran were folded into the old version's vectors.
        if promoted and touched:
            await self.updater.update_users(touched)
        return version

    async def _content_changed(self) -> bool:
        """Whether a text model serves that the served CF model's cold-start map did not read."""
        found = await self._text_model() if self._text_model is not None else None
        model = self.updater.served.fitted
        if found is None or model is None or found[0] == self._map_tried:
            return False  # once per text version, even when a fit could not make a map
        return model.content_map is None or model.content_map.text_version != found[0]

    async def _content_inputs(self, data: InteractionMatrix) -> ContentInputs | None:
        """The fitted items' content, when a text model serves (None otherwise)."""
        found = await self._text_model() if self._text_model is not None else None
        if found is None:
            return None
        version, artifact = found
        self._map_tried = version
        items = [str(i) for i in data.item_ids]
        contents = await self._store.item_contents(items)
        have = [(i, c) for i, c in zip(items, contents, strict=True) if c is not None]
        return ContentInputs(
            [i for i, _ in have],
            [item_text(c.title, c.text) for _, c in have],
            [c.categories for _, c in have],
            str(artifact),
            version,
        )

    async def _gate(
        self, users: list[str], histories: list[dict[str, float]], params: dict[str, Any]
    ) -> Gate:
        """Challenger against served model on what users did since the served one was fitted;
        a note instead when there is no served model or too few such users to judge."""
        s = self._settings
        # As fitted: the items folded in since were placed by the very interactions the gate
        # holds out, which would flatter the served model (measured: 0.29 against 0.22 while
        # loading MovieLens, and every refit held back).
        model, version = self.updater.served.fitted, self.updater.version
        if model is None or version is None:
            return Gate(note="nothing served before")
        if self.last_decision.requested:
            # The monitor saw the served model's online quality fall: what users did since its
            # fit is mostly from before the change, and would hold back the very refit that
            # answers it. The monitor judges the new version online, and rolls it back if worse.
            return Gate(note="the monitor asked for it; judged online, not on the holdout")
        try:
            since = self._registry.metadata(version).get("clock")
        except ModelNotFoundError:
            since = None
        if since is None:
            return Gate(note=f"the served version {version} has no data clock")
        sample = users
        if len(users) > GATE_MAX_USERS:
            sample = random.Random(len(users)).sample(users, GATE_MAX_USERS)
        new_items = await self._store.items_since(sample, int(since))
        split = await asyncio.to_thread(
            forward_split, dict(zip(users, histories, strict=True)), new_items
        )
        if len(split.test) < s.quality_gate_min_users:
            return Gate(
                note=f"{len(split.test)} users active since the served fit "
                f"(STREAMREC_QUALITY_GATE_MIN_USERS is {s.quality_gate_min_users})"
            )
        loop = asyncio.get_running_loop()
        challenger, served = await loop.run_in_executor(
            self._fit_executor,
            partial(gate_scores, split, model.item_ids, model.item_factors, params),
        )
        return Gate(GateResult(challenger, served, s.quality_gate_margin, len(split.test), version))
