"""The model families streamrec keeps, registered in one place.

A family is one module in `models/` behind the `Artifact` contract (a name, one file, save and
load); adding one is a line in `MODEL_FAMILIES`. The registry, the served-version pointer and
`streamrec models --family` then know it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from models.als import ALSModel
from models.base import Artifact
from models.registry import FamilyRegistry, ModelRegistry
from models.storage import ArtifactStore, open_store
from recommender.settings import Settings
from recommender.store import keys

#: The content families: text -> categories, review -> sentiment, image -> category.
TEXT, SENTIMENT, IMAGE = "text", "sentiment", "image"
CONTENT_FAMILIES = (TEXT, SENTIMENT, IMAGE)
#: What a user (or a session) does next, from the order of their latest items.
SEQUENTIAL = "sequential"

#: Family name -> `module:class` that stores its versions (imported when first used, so that a
#: process that serves only CF never imports torch).
MODEL_FAMILIES: dict[str, str] = {
    keys.CF: "models.als:ALSModel",
    TEXT: "models.text:TextClassifier",
    SENTIMENT: "models.sentiment:SentimentClassifier",
    IMAGE: "models.image:ImageClassifier",
    SEQUENTIAL: "models.next_item:NextItemClassifier",
}


class _Families(Mapping[str, type[Artifact]]):
    """`MODEL_FAMILIES` with each class imported on first use."""

    def __getitem__(self, name: str) -> type[Artifact]:
        module, _, cls = MODEL_FAMILIES[name].partition(":")
        found: type[Artifact] = getattr(importlib.import_module(module), cls)
        return found

    def __contains__(self, name: object) -> bool:
        return name in MODEL_FAMILIES  # Mapping's own would import the class

    def __iter__(self) -> Iterator[str]:
        return iter(MODEL_FAMILIES)

    def __len__(self) -> int:
        return len(MODEL_FAMILIES)


def model_store(settings: Settings) -> ArtifactStore:
    """Where the settings keep model versions (`STREAMREC_MODELS_URL`, or local disk)."""
    return open_store(
        settings.models_location,
        cache_dir=settings.data_dir / "models-cache",
        options=settings.models_storage_options,
    )


def model_registry(where: Settings | ArtifactStore | Path) -> ModelRegistry:
    """Every family's versions, where the settings keep them (or in a store, or a directory)."""
    store = model_store(where) if isinstance(where, Settings) else where
    return ModelRegistry(store, _Families())


def cf_registry(where: Settings | ArtifactStore | Path) -> FamilyRegistry[ALSModel]:
    """The collaborative-filtering family's versions."""
    registry: FamilyRegistry[ALSModel] = model_registry(where).family(keys.CF)
    return registry
