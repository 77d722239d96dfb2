"""Model lifecycle, for any family: publishing a new version through the quality gate, and the
operator's promote / rollback / pin / unpin (`streamrec models ...`).

Every fit becomes a version in the registry. It is *served* only if no operator pinned the served
version and it passes the family's quality gate (its holdout score is not worse than the served
version's by more than the margin); otherwise it is kept as the challenger, and the family's
`challenger` hash, its decision log and the `models_held_back` counter say so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from models.base import Artifact
from models.errors import ModelNotFoundError
from models.registry import FamilyRegistry
from recommender.errors import StreamrecError
from recommender.lifecycle.gates import Gate, GateResult
from recommender.lifecycle.state import Decision, ModelState

log = logging.getLogger(__name__)

__all__ = ["Gate", "GateResult", "ModelLifecycle", "NoSuchVersionError", "VersionRow"]

M = TypeVar("M", bound=Artifact)

#: Prepares a version to be served (CF: fold every live user in); returns how many users.
Prepare = Callable[[str, Any], Awaitable[int]]
#: Counts a lifecycle event in the feature store's counters (their one writer).
Count = Callable[[str, int], Awaitable[None]]


class NoSuchVersionError(StreamrecError):
    """A version the registry does not hold, or nothing to roll back to."""


@dataclass
class VersionRow:
    """One version as `streamrec models list` shows it."""

    meta: dict[str, Any]
    served: bool = False
    pinned: bool = False
    periods: list[tuple[int, int | None]] = field(default_factory=list)  # served from, until

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def gate_score(self) -> float | None:
        """The version's holdout score from its gate, if it had one."""
        value = self.meta.get(f"holdout_{self.meta.get('gate_metric', 'ndcg@10')}")
        return None if value is None else float(value)

    def gate_text(self) -> str:
        m = self.meta
        metric = m.get("gate_metric", "ndcg@10")
        score = self.gate_score
        if score is not None:
            served = m[f"served_holdout_{metric}"]
            passed = m.get("gate_passed", score >= served - m["gate_margin"])
            verdict = "passed" if passed else "failed"
            return f"{metric} {score:.4f} vs {served:.4f} ({m.get('gate_users', 0):,}): {verdict}"
        return str(m.get("gate", "no gate"))

    def status_text(self) -> str:
        if self.served:
            since = _hhmm(self.periods[-1][0]) if self.periods else "?"
            return f"serving since {since}" + (", pinned" if self.pinned else "")
        if self.periods:
            start, end = self.periods[-1]
            return f"served {_hhmm(start)} to {_hhmm(end) if end else '?'}"
        status = str(self.meta.get("status", ""))
        return status if status.startswith("held") else "never served"


def _hhmm(ms: int) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(ms / 1000))


class ModelLifecycle(Generic[M]):
    """One family's lifecycle: publish, list, promote (pinned), roll back, unpin.

    Parameters
    ----------
    state
        The family's pointer, history, challenger and decision log.
    registry
        The family's versions on disk.
    prepare
        What a version needs before it can be served (CF: every live user's vector).
    count
        Counts held-back versions in the feature store's `stats` (their one writer).
    kept
        Versions kept on disk besides the served, historic and challenger ones (None: all).
    """

    def __init__(
        self,
        state: ModelState,
        registry: FamilyRegistry[M],
        prepare: Prepare | None = None,
        count: Count | None = None,
        kept: int | None = None,
    ) -> None:
        self._state = state
        self._registry = registry
        self._prepare = prepare
        self._count = count
        self._kept = kept

    @property
    def family(self) -> str:
        return self._state.family

    async def publish(
        self,
        model: M,
        metadata: dict[str, Any],
        gate: Gate,
        serve: Callable[[str], Awaitable[None]] | None = None,
    ) -> tuple[str, bool]:
        """Save ``model`` as a new version; serve it unless the served version is pinned or the
        gate failed, else keep it as the challenger. ``serve`` runs before the pointer moves
        (CF: write the fit's user vectors). Returns (version, served)."""
        served = await self._state.current()  # again: an operator may have acted meanwhile
        held, by_pin = "", False
        if served is not None and served.pinned:
            held, by_pin = f"the served version {served.version} is pinned", True
        elif gate.result is not None and not gate.result.passed:
            r = gate.result
            held = (
                f"holdout NDCG@10 {r.challenger_score:.4f} trails the served model's "
                f"{r.served_score:.4f} by more than {r.margin}"
                if r.metric == "ndcg@10"
                else f"holdout {r.metric} trails the served version's: {r.describe()}"
            )
        meta = {
            **metadata,
            "status": f"held: {held}" if held else "served",
            **gate.as_metadata(),
            **({"held_by_pin": True} if by_pin else {}),
        }
        version = await asyncio.to_thread(self._registry.save, model, meta)
        await self._prune()
        if held:
            await self._state.record_challenger(version, {"reason": held, **gate.as_metadata()})
            if self._count is not None:
                await self._count("models_held_back", 1)
            return version, False
        if serve is not None:
            await serve(version)
        reason = gate.result.describe() if gate.result else gate.as_metadata().get("gate", "")
        await self._state.promote(version, int(metadata.get("watermark", 0)), reason=reason)
        return version, True

    async def _prune(self) -> None:
        """Bound the versions on disk: the served one, the challenger, the newest `kept` and
        the `kept` most recently served (what `rollback` walks back to) stay."""
        if self._kept is None:
            return
        served = await self._state.current()
        keep = set((await self._state.history())[: self._kept])
        keep.add((await self._state.challenger()).get("version", ""))
        keep.add(served.version if served is not None else "")
        removed = await asyncio.to_thread(self._registry.prune, self._kept, keep)
        if removed:
            log.info("deleted %d old %s versions: %s", len(removed), self.family, removed)

    async def fall_back(self, unreadable: str, why: str) -> str | None:
        """Serve the newest version of the history that can be read, in place of
        ``unreadable`` (its artifact is damaged or missing); None when none can be."""
        for version in await self._state.history():
            if version == unreadable:
                continue
            try:
                await self.promote(
                    version,
                    pinned=False,
                    by="streamrec",
                    rollback=True,
                    reason=f"{unreadable} cannot be read: {why}",
                )
            except NoSuchVersionError:
                continue
            if self._count is not None:
                await self._count("model_fallbacks", 1)
            return version
        return None

    async def versions(self) -> list[VersionRow]:
        """Every version with whether it is served, when it was, and its gate."""
        served = await self._state.current()
        decisions = list(reversed(await self._state.decisions()))  # oldest first
        periods: dict[str, list[tuple[int, int | None]]] = {}
        current: str | None = None
        for d in decisions:
            if d.action in {"served", "rolled back"}:
                if current is not None and periods.get(current):
                    start, _ = periods[current][-1]
                    periods[current][-1] = (start, d.at_ms)
                periods.setdefault(d.version, []).append((d.at_ms, None))
                current = d.version
        rows = []
        for version in self._registry.versions():
            try:
                meta = self._registry.metadata(version)
            except ModelNotFoundError:
                continue
            is_served = served is not None and served.version == version
            rows.append(
                VersionRow(
                    meta,
                    is_served,
                    bool(is_served and served and served.pinned),
                    periods.get(version, []),
                )
            )
        return rows

    async def decisions(self, n: int = 10) -> list[Decision]:
        return await self._state.decisions(n)

    async def promote(
        self,
        version: str,
        pinned: bool = True,
        by: str = "operator",
        rollback: bool = False,
        reason: str = "",
    ) -> int:
        """Serve ``version`` (pinned by default, so a refit cannot replace it), prepared first
        (CF: every live user's vector, if it has none). Returns how many users were folded in."""
        try:
            model = await asyncio.to_thread(self._registry.load, version)
            meta = self._registry.metadata(version)
        except ModelNotFoundError as exc:
            raise NoSuchVersionError(str(exc)) from None
        folded = await self._prepare(version, model) if self._prepare is not None else 0
        await self._state.promote(
            version,
            int(meta.get("watermark", 0)),
            pinned=pinned,
            by=by,
            reason=reason or ("pinned" if pinned else ""),
            rollback=rollback,
        )
        return folded

    async def rollback(self) -> str:
        """Serve, pinned, the version served before the current one; again, the one before
        that (the history is a stack: rolling back takes the current one off it)."""
        served = await self._state.current()
        history = await self._state.history()
        if served is not None and history and history[0] == served.version:
            history = history[1:]
        earlier = [v for v in history if served is None or v != served.version]
        if not earlier:
            raise NoSuchVersionError("no earlier served version to roll back to")
        await self.promote(earlier[0], pinned=True, rollback=True)
        return earlier[0]

    async def unpin(self, by: str = "operator") -> str | None:
        """Let refits replace the served version again, and serve at once the best version
        held back only by the pin that passed the gate against it (the newest such version
        when none could be judged). Returns the version now served, if it changed."""
        served = await self._state.current()
        await self._state.set_pinned(False, by=by)
        if served is None:
            return None
        best = self._best_waiting(served.version, self._registry.metadata(served.version))
        if best is None:
            return None
        await self.promote(best, pinned=False, by=by)
        return best

    def _best_waiting(self, served: str, served_meta: dict[str, Any]) -> str | None:
        waiting: list[tuple[float, float, str]] = []
        for version in self._registry.versions():
            try:
                meta = self._registry.metadata(version)
            except ModelNotFoundError:
                continue
            if not meta.get("held_by_pin") or meta["created_at"] <= served_meta["created_at"]:
                continue
            score = VersionRow(meta).gate_score
            if score is None:
                waiting.append((float("-inf"), meta["created_at"], version))
            elif meta.get("gate_against") == served and meta.get("gate_passed"):
                waiting.append((float(score), meta["created_at"], version))
        return max(waiting)[2] if waiting else None
