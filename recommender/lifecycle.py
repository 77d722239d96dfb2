"""Model lifecycle: the quality gate a refit must pass to be served, and the operator's
promote / rollback / pin (`streamrec models ...`).

Every full fit becomes a version in the registry. It is *served* only if, on what users did since
the served model was fitted, its NDCG@10 is not worse than the served model's by more than
`quality_gate_margin`, and no operator has pinned the served version; otherwise it is kept as the
challenger, and `model:challenger` and the `models_held_back` counter say so.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.als import ALSModel, fit_als
from models.data import InteractionMatrix
from models.errors import ModelNotFoundError
from models.registry import ModelRegistry
from recommender.errors import StreamrecError
from recommender.evaluation import Split, evaluate
from recommender.feature_store import FeatureStore
from recommender.model_state import ModelState


@dataclass(frozen=True, slots=True)
class GateResult:
    challenger_ndcg: float
    served_ndcg: float
    margin: float
    users: int

    @property
    def passed(self) -> bool:
        return self.challenger_ndcg >= self.served_ndcg - self.margin

    def as_metadata(self) -> dict[str, Any]:
        return {
            "holdout_ndcg@10": round(self.challenger_ndcg, 5),
            "served_holdout_ndcg@10": round(self.served_ndcg, 5),
            "gate_margin": self.margin,
            "gate_users": self.users,
        }


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


class NoSuchVersionError(StreamrecError):
    """A version the registry does not hold, or nothing to roll back to."""


class ModelLifecycle:
    """What `streamrec models` does: list versions, promote one (pinned), roll back, unpin."""

    def __init__(self, store: FeatureStore, state: ModelState, registry: ModelRegistry) -> None:
        self._store = store
        self._state = state
        self._registry = registry

    async def versions(self) -> list[dict[str, Any]]:
        served = await self._state.current()
        rows = []
        for version in self._registry.versions():
            meta = self._registry.metadata(version)
            meta["served"] = served is not None and served.version == version
            meta["pinned"] = bool(meta["served"] and served and served.pinned)
            rows.append(meta)
        return rows

    async def promote(self, version: str, pinned: bool = True) -> int:
        """Serve ``version`` (pinned by default, so a refit cannot replace it); compute every
        live user's vector for it first if it has none. Returns how many users were folded in."""
        try:
            model = await asyncio.to_thread(self._registry.load, version)
            meta = self._registry.metadata(version)
        except ModelNotFoundError as exc:
            raise NoSuchVersionError(str(exc)) from None
        folded = 0
        if not await self._state.has_vectors(version):
            users = await self._store.active_users()
            for start in range(0, len(users), 5000):
                chunk = users[start : start + 5000]
                histories, as_of = await self._store.histories_and_last_seen(chunk)
                vectors = await asyncio.to_thread(model.user_vectors, histories)
                await self._state.write_user_vectors(
                    version, dict(zip(chunk, vectors, strict=True)), as_of
                )
                folded += len(chunk)
        await self._state.promote(version, int(meta.get("watermark", 0)), pinned=pinned)
        return folded

    async def rollback(self) -> str:
        """Serve, pinned, the version that was served before the current one."""
        served = await self._state.current()
        history = await self._state.history()
        earlier = [v for v in history if served is None or v != served.version]
        if not earlier:
            raise NoSuchVersionError("no earlier served version to roll back to")
        await self.promote(earlier[0], pinned=True)
        return earlier[0]

    async def unpin(self) -> None:
        """Let refits that pass the quality gate replace the served version again."""
        await self._state.set_pinned(False)
