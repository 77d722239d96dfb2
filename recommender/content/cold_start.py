"""Cold start: a brand-new item gets a place in the served CF model from its content the moment it
arrives (before anyone touches it), through the map the last CF fit learned
(`models.content_map`). When users touch it, the interactions take over
(`CFUpdater.fold_in_new_items`); the next refit fits it like any other item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from models.features import item_text
from models.registry import FamilyRegistry
from recommender.cf.updater import CFUpdater
from recommender.cf.vectors import CFVectors
from recommender.content.features import one_inference_thread
from recommender.store.features import FeatureStore
from recommender.types import ItemMeta

if TYPE_CHECKING:  # torch: imported once a text model is loaded, not when the worker starts
    from models.text import TextClassifier


class ColdStartPlacer:
    """A `ContentListener`: places the new items of each stored batch."""

    def __init__(
        self,
        store: FeatureStore,
        updater: CFUpdater,
        vectors: CFVectors,
        texts: FamilyRegistry[TextClassifier],
    ) -> None:
        self._store = store
        self._updater = updater
        self._vectors = vectors
        self._texts = texts
        self._text: tuple[str, TextClassifier] | None = None  # the map's text model, loaded

    async def _text_model(self, version: str) -> TextClassifier:
        if self._text is None or self._text[0] != version:
            self._text = (version, await asyncio.to_thread(self._texts.load, version))
            one_inference_thread()
        return self._text[1]

    async def place_unknown(self) -> int:
        """Place every catalogue item the served model does not know (after a refit: the new
        version's own place for them); returns how many."""
        await self._updater.sync()
        model = self._updater.served.model
        if model is None or model.content_map is None:
            return 0
        unknown = [i for i in await self._store.catalogue.ids() if not model.knows(i)]
        placed = 0
        for start in range(0, len(unknown), 1000):
            ids = unknown[start : start + 1000]
            contents = await self._store.catalogue.item_contents(ids)
            placed += await self._place(
                [
                    (i, item_text(c.title, c.text), c.categories)
                    for i, c in zip(ids, contents, strict=True)
                    if c is not None
                ]
            )
        return placed

    async def on_items(self, items: Sequence[ItemMeta]) -> None:
        await self._updater.sync()  # place into the version served now
        await self._place(
            [
                (
                    it.item_id,
                    item_text(it.title, it.text),
                    it.predicted or dict.fromkeys(it.categories, 1.0),
                )
                for it in items
            ]
        )

    async def _place(self, entries: Sequence[tuple[str, str, dict[str, float]]]) -> int:
        """(item, text, categories with their confidence) -> a factor in the served version,
        for the items it does not know."""
        served = self._updater.served
        model, version = served.model, served.version
        if model is None or version is None or model.content_map is None:
            return 0
        new = [e for e in entries if not model.knows(e[0])]
        if not new:
            return 0
        cmap = model.content_map
        text = await self._text_model(cmap.text_version)
        embeddings = await asyncio.to_thread(text.embed, [t for _, t, _ in new])
        factors = cmap.place(embeddings, [c for _, _, c in new])
        ids = [i for i, _, _ in new]
        await self._vectors.write_item_vectors(version, dict(zip(ids, factors, strict=True)))
        fitted = served.fitted
        if fitted is not None and len(fitted.item_ids):
            near = fitted.item_factors @ factors.T  # [fitted items, new items]
            norms = np.linalg.norm(fitted.item_factors, axis=1)[:, None] + 1e-9
            like = [str(fitted.item_ids[j]) for j in (near / norms).argmax(axis=0)]
            await self._store.catalogue.mark_placed(dict(zip(ids, like, strict=True)))
        served.extend(ids, factors)
        return len(ids)
