"""Incremental training: per-batch user updates, and full refits that never block ingestion."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from concurrent.futures import Executor
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from models.als import fit_als
from models.data import InteractionMatrix
from models.errors import ModelNotFoundError
from models.registry import ModelRegistry
from recommender.evaluation import forward_split
from recommender.feature_store import FeatureStore
from recommender.lifecycle import GateResult, gate_scores
from recommender.model_state import ModelState, ServedModel, ServedModelCache
from recommender.settings import Settings
from recommender.types import Interaction

log = logging.getLogger(__name__)

#: Users the quality gate looks at (a sample, beyond that).
GATE_MAX_USERS = 5000
#: Users whose vectors place a new item before the next refit (the first ones to touch it).
NEW_ITEM_MAX_USERS = 1000


class Trainer:
    """Keeps the served ALS model current.

    `on_applied` runs after every feature-store batch: it recomputes the vectors of the users the
    batch touched from their *full* history (a partial fit) and writes them for the API.
    `maybe_refit` runs on a timer: it refits from scratch when the data grew enough, when the stream
    has gone quiet, or when the interval has passed, on ``fit_executor`` (in the worker, a process
    of its own), so ingestion goes on meanwhile.
    """

    def __init__(
        self,
        store: FeatureStore,
        state: ModelState,
        registry: ModelRegistry,
        settings: Settings,
        fit_executor: Executor | None = None,
    ) -> None:
        """``fit_executor`` runs full fits (a process pool in the worker); None: a thread."""
        self._store = store
        self._state = state
        self._registry = registry
        self._settings = settings
        self._fit_executor = fit_executor
        self._served = ServedModelCache(state, registry)
        self._fitted_at_events = 0
        self._fitted_at = time.monotonic()
        self._last_event = time.monotonic()
        self._fitting = False
        self._touched_during_fit: set[str] = set()
        #: Items newer than the served fit -> the users who touched them since (bounded).
        self._new_item_users: dict[str, set[str]] = {}
        self._new_item_solved: dict[str, int] = {}  # item -> users at its last solve

    @property
    def version(self) -> str | None:
        return self._served.version

    async def sync(self) -> ServedModel | None:
        """Load the served version if another process promoted a newer one; return the pointer."""
        before = self._served.version
        served, _ = await self._served.current()
        if served is not None and served.version != before:
            self._fitted_at_events = served.watermark
        return served

    async def on_applied(self, events: Iterable[Interaction]) -> None:
        pseudonyms = {self._store.pseudonym(e.user_id) for e in events}
        if not pseudonyms:
            return
        self._last_event = time.monotonic()
        if self._fitting:
            self._touched_during_fit |= pseudonyms
        await self.update_users(pseudonyms)
        if self._served.model is not None:
            for e in events:
                if not self._served.fitted_knows(e.item_id):
                    users = self._new_item_users.setdefault(e.item_id, set())
                    if len(users) < NEW_ITEM_MAX_USERS:
                        users.add(self._store.pseudonym(e.user_id))

    async def fold_in_new_items(self) -> None:
        """Fold in items the served fit does not know, from the vectors of the users who touched
        them since (`ALSModel.partial_fit_items`), and write them where readers find them.

        On a timer, not per batch, and an item only when its users doubled since its last solve
        (about log2(NEW_ITEM_MAX_USERS) solves per item): per batch, re-reading every such
        user's weight halved the worker's rate in `bench ingest`."""
        version = self._served.version
        if self._served.model is None or version is None:
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
        pairs = [(p, item) for item in items for p in sorted(self._new_item_users[item])]
        weights = await self._store.weights_of(pairs)
        vectors = await self._state.user_vectors_of(version, [p for p, _ in pairs])
        ys: dict[str, list[npt.NDArray[np.float32]]] = {item: [] for item in items}
        ws: dict[str, list[float]] = {item: [] for item in items}
        for (_, item), w, vec in zip(pairs, weights, vectors, strict=True):
            if vec is not None and w > 0:
                ys[item].append(vec.vector)
                ws[item].append(w)
        ready = [item for item in items if ys[item]]
        if not ready:
            return
        model = self._served.model
        factors = model.partial_fit_items(
            [np.stack(ys[i]) for i in ready], [np.asarray(ws[i], dtype=np.float32) for i in ready]
        )
        await self._state.write_item_vectors(version, dict(zip(ready, factors, strict=True)))
        self._served.extend(ready, factors)

    async def update_users(self, pseudonyms: Iterable[str]) -> None:
        model, version = self._served.model, self._served.version
        if model is None or version is None:
            return
        users = sorted(pseudonyms)
        histories, as_of = await self._store.histories_and_last_seen(users)
        vectors = model.user_vectors(histories)
        await self._state.write_user_vectors(version, dict(zip(users, vectors, strict=True)), as_of)

    def _refit_due(self, applied: int) -> bool:
        s = self._settings
        new = applied - self._fitted_at_events
        if applied < s.als_min_events or new <= 0:
            return False
        if self._served.model is None:
            return True
        now = time.monotonic()
        # Users are folded in per batch, so a refit is about item factors and new items; during a
        # bulk load, back-to-back refits would only take CPU from ingestion.
        grown = new >= s.refit_growth * max(self._fitted_at_events, 1)
        return (
            (grown and now - self._fitted_at >= s.refit_min_interval_s)
            or now - self._last_event >= s.refit_idle_s
            or now - self._fitted_at >= s.refit_interval_s
        )

    async def maybe_refit(self) -> str | None:
        """Refit if due; return the new version, or None."""
        if self._fitting:
            return None
        await self.sync()
        applied = (await self._store.stats()).get("events_applied", 0)
        if not self._refit_due(applied):
            return None
        return await self.refit()

    async def refit(self) -> str:
        """Fit on every live user's history; serve it if it passes the quality gate and the
        served version is not pinned (else keep it as the challenger); then re-fold the users
        touched meanwhile. Returns the new version, served or not."""
        s = self._settings
        self._fitting = True
        self._touched_during_fit = set()
        promoted = False
        try:
            # The pin and the gate are judged against what is served now.
            now_served = await self.sync()
            pinned = now_served is not None and now_served.pinned
            stats = await self._store.stats()
            applied, clock = stats.get("events_applied", 0), stats.get("clock", 0)
            users = await self._store.active_users()
            histories, as_of = await self._store.histories_and_last_seen(users)
            data = InteractionMatrix.from_histories(users, histories)
            params = {
                "factors": s.als_factors,
                "regularization": s.als_regularization,
                "iterations": s.als_iterations,
                "alpha": s.als_alpha,
                "neighbours": s.knn_neighbours,
            }
            gate = None if pinned else await self._gate(users, histories, params)
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            fitted = await loop.run_in_executor(
                self._fit_executor, partial(fit_als, data, **params)
            )
            fit_s = time.perf_counter() - started
            model, vectors = fitted.model(**params), fitted.user_vectors
            served = await self._state.current()  # again: an operator may have acted meanwhile
            held = ""
            if served is not None and served.pinned:
                held = f"the served version {served.version} is pinned"
            elif gate is not None and not gate.passed:
                held = (
                    f"holdout NDCG@10 {gate.challenger_ndcg:.4f} trails the served model's "
                    f"{gate.served_ndcg:.4f} by more than {gate.margin}"
                )
            version = await asyncio.to_thread(
                self._registry.save,
                model,
                {
                    "watermark": applied,
                    "clock": clock,  # the newest event time in the data
                    "users": len(users),
                    "items": len(data.item_ids),
                    "nnz": data.nnz,
                    "fit_seconds": round(fit_s, 3),
                    "params": params,
                    "status": f"held: {held}" if held else "served",
                    **(gate.as_metadata() if gate else {}),
                },
            )
            if held:
                await self._state.record_challenger(
                    version, {"reason": held, **(gate.as_metadata() if gate else {})}
                )
                log.warning("model %s held back: %s", version, held)
            else:
                await self._state.write_user_vectors(
                    version, dict(zip(users, vectors, strict=True)), as_of
                )
                await self._state.promote(version, applied)
                self._served.adopt(version, model)
                self._new_item_users, self._new_item_solved = {}, {}
                promoted = True
                log.info(
                    "model %s fitted on %d users, %d items, %d events in %.2fs",
                    version,
                    len(users),
                    len(data.item_ids),
                    applied,
                    fit_s,
                )
            self._fitted_at_events, self._fitted_at = applied, time.monotonic()
        finally:
            self._fitting = False
        # Events applied while the fit ran were folded into the old version's vectors.
        if promoted and self._touched_during_fit:
            await self.update_users(self._touched_during_fit)
        return version

    async def _gate(
        self,
        users: list[str],
        histories: list[dict[str, float]],
        params: dict[str, Any],
    ) -> GateResult | None:
        """Challenger against served model on what users did since the served one was fitted;
        None without a served model, or with too few such users to judge."""
        s = self._settings
        # As fitted: the items folded in since were placed by the very interactions the gate
        # holds out, which would flatter the served model (measured: 0.29 against 0.22 while
        # loading MovieLens, and every refit held back).
        model, version = self._served.fitted, self._served.version
        if model is None or version is None:
            return None
        try:
            since = self._registry.metadata(version).get("clock")
        except ModelNotFoundError:
            since = None
        if since is None:
            return None
        sample = users
        if len(users) > GATE_MAX_USERS:
            sample = random.Random(len(users)).sample(users, GATE_MAX_USERS)
        new_items = await self._store.items_since(sample, int(since))
        split = forward_split(dict(zip(users, histories, strict=True)), new_items)
        if len(split.test) < s.quality_gate_min_users:
            return None
        loop = asyncio.get_running_loop()
        challenger, served = await loop.run_in_executor(
            self._fit_executor,
            partial(gate_scores, split, model.item_ids, model.item_factors, params),
        )
        return GateResult(challenger, served, s.quality_gate_margin, len(split.test))
