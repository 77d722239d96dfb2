"""Collaborative filtering's full refits: when (`refit_policy`), against what they are judged,
and publishing through the shared lifecycle. The reads, the gate and the fit run on
``fit_executor`` (`refit_job`; in the worker, a process of its own), so ingestion goes on
meanwhile; the per-event half lives in `cf_updater`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from functools import partial
from pathlib import Path
from typing import Any

from models.als import ALSModel
from models.errors import ModelNotFoundError
from models.registry import FamilyRegistry
from recommender.cf.refit_job import GatePlan, RefitData, RefitJob, run_refit
from recommender.cf.refit_policy import RefitClock, RefitDecision, RefitPolicy, decide_refit
from recommender.cf.updater import CFUpdater
from recommender.cf.vectors import CFVectors
from recommender.lifecycle.publishing import Gate, ModelLifecycle
from recommender.lifecycle.state import ModelState, ServedModel
from recommender.settings import Settings
from recommender.store.features import FeatureStore

log = logging.getLogger(__name__)


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
        Runs the refits (`refit_job.run_refit`: reads, gate, fit): a process pool in the
        worker; None: a thread.
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
            state,
            registry,
            prepare=self.updater.prepare,
            count=store.stats.incr,
            kept=settings.models_kept,
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

    async def _readable(self, served: ServedModel | None) -> ServedModel | None:
        """The served version, or the last good one served again in its place when its
        artifact cannot be read (damaged, or missing); a refit is asked for when none can."""
        if served is None or self.updater.served.unreadable != served.version:
            return served
        why = "its artifact is damaged or missing"
        earlier = await self.lifecycle.fall_back(served.version, why)
        if earlier is None:
            log.error("CF version %s cannot be read, nor any before it: refitting", served.version)
            self.request_refit(f"the served version {served.version} cannot be read")
            return served
        log.error("CF version %s cannot be read: serving %s again", served.version, earlier)
        return await self.sync()

    def request_refit(self, why: str) -> None:
        """Ask for a refit at the next check (a monitor saw the served model degrade)."""
        self._requested = why

    async def maybe_refit(self) -> str | None:
        """Refit if due; return the new version, or None."""
        if self._fitting:
            return None
        served = await self._readable(await self.sync())
        applied = (await self._store.stats.all()).get("events_applied", 0)
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

    async def hold_drift_window(self, window_s: float, hold_s: float) -> None:
        """After a drift: fold users in from their last ``window_s`` seconds for ``hold_s``
        (`UserFeatures.hold_drift_window`), the refit's users included."""
        await self._store.users.hold_drift_window(window_s, hold_s)

    async def refit(self) -> str:
        """Fit on every live user's history and publish it (served if the served version is
        not pinned and the gate passes; else the challenger); then re-fold the users touched
        meanwhile. Returns the new version, served or not."""
        self._fitting = True
        self.updater.track_touched()
        promoted = False
        try:
            await self.sync()
            params = self._params()
            # Judged even while pinned: `models unpin` then serves the best waiting version.
            job = RefitJob(self._settings, params, self._gate_plan(), await self._text_input())
            # The reads, the gate and the fit run in the fit process: in this one they held the
            # event loop, and every event behind it (see `recommender.cf.refit_job`).
            loop = asyncio.get_running_loop()
            done = await loop.run_in_executor(self._fit_executor, partial(run_refit, job))
            users, fitted, as_of, applied = done.users, done.fitted, done.as_of, done.watermark
            model = fitted.model(**params)

            async def serve(version: str) -> None:
                vectors = dict(zip(users, fitted.user_vectors, strict=True))
                await self.vectors.write_user_vectors(version, vectors, as_of)
                if done.pending_recs is not None:
                    await self.vectors.adopt_candidates(done.pending_recs, version)

            version, promoted = await self.lifecycle.publish(
                model, self._metadata(done, params), done.gate, serve
            )
            if promoted:
                self.updater.adopt(version, model)
                self._synced_version = version
                log.info(
                    "model %s fitted on %d users, %d items, %d events in %.2fs",
                    version,
                    len(users),
                    done.items,
                    applied,
                    done.fit_seconds,
                )
            else:
                log.warning("model %s held back", version)
                if done.pending_recs is not None:
                    await self.vectors.discard_candidates(done.pending_recs)
            self._fitted_at_events, self._fitted_at = applied, time.monotonic()
        finally:
            self._fitting = False
            touched = self.updater.touched()
        # Events applied while the fit ran were folded into the old version's vectors.
        if promoted and touched:
            await self.updater.update_users(touched)
        return version

    def _metadata(self, done: RefitData, params: dict[str, Any]) -> dict[str, Any]:
        """What a version's metadata says of its fit."""
        return {
            "watermark": done.watermark,
            "clock": done.clock,  # no event in the data is newer
            "users": len(done.users),
            "items": done.items,
            "nnz": done.nnz,
            "fit_seconds": round(done.fit_seconds, 3),
            "params": params,
            "refit_reason": self.last_decision.reason,
        }

    async def _content_changed(self) -> bool:
        """Whether a text model serves that the served CF model's cold-start map did not read."""
        found = await self._text_model() if self._text_model is not None else None
        model = self.updater.served.fitted
        if found is None or model is None or found[0] == self._map_tried:
            return False  # once per text version, even when a fit could not make a map
        return model.content_map is None or model.content_map.text_version != found[0]

    async def _text_input(self) -> tuple[str, str] | None:
        """The served text model's (version, artifact), when one serves: the fit then also
        learns where new items go from their content (cold start)."""
        found = await self._text_model() if self._text_model is not None else None
        if found is None:
            return None
        self._map_tried = found[0]
        return found[0], str(found[1])

    def _gate_plan(self) -> GatePlan | Gate:
        """What the fit process judges the challenger against: the served model; or a note
        saying why there is nothing to judge against."""
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
        return GatePlan(int(since), version, model.item_ids, model.item_factors)
