"""The CF family's served model: `ServedModelCache` with the items folded in since its fit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from models.als import ALSModel
from models.registry import FamilyRegistry
from recommender.cf.vectors import CFVectors
from recommender.lifecycle.served import ServedModelCache
from recommender.lifecycle.state import ModelState


class ServedALS(ServedModelCache[ALSModel]):
    """The CF family's served model, with the items folded in since its fit."""

    def __init__(
        self,
        state: ModelState,
        registry: FamilyRegistry[ALSModel],
        vectors: CFVectors,
        check_every_s: float = 0.0,
    ) -> None:
        super().__init__(state, registry, check_every_s)
        self._vectors = vectors

    async def _with_updates(self, version: str, base: ALSModel, updates: int) -> ALSModel:
        # Only what was written since this process last looked, onto what it serves.
        since = self._updates_seen if self.model is not None else 0
        extra = None
        if 0 < since < updates:
            extra = await self._vectors.item_vectors(version, since, updates)
        onto = self.model if extra is not None and self.model is not None else base
        if extra is None:  # everything, onto the fit
            extra = await self._vectors.item_vectors(version)
        if not extra:
            return onto
        return onto.with_items(list(extra), np.asarray(list(extra.values()), dtype=np.float32))

    def fitted_knows(self, item_id: str) -> bool:
        """Whether the served version's fit (not a fold-in since) has the item."""
        return self._base is not None and self._base.knows(item_id)

    def extend(self, items: Sequence[str], factors: npt.NDArray[np.float32]) -> None:
        """Serve ``items`` too, as this process has just written them (no read back)."""
        if self.model is not None:
            self.replace_model(self.model.with_items(items, factors), len(items))

    def replace_model(self, model: ALSModel, new_items: int) -> None:
        """Serve ``model``: the served one with ``new_items`` items this process has just
        written (`ALSModel.with_items`, built off the event loop)."""
        if self.model is not None:
            self.model = model
            self._updates_seen += new_items
