"""What the content models add to the stream as it passes through the worker: a review's
sentiment (its weight), an item's predicted categories (when it came without any), and the queue
of labelled examples the content trainer learns from.

The served versions are loaded once each and followed like the CF model (`sync` on the worker's
timer); inference runs in a thread, batch by batch, so the event loop keeps serving Kafka.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from models.features import item_text
from models.registry import ModelRegistry
from recommender.lifecycle.families import IMAGE, SENTIMENT, TEXT
from recommender.lifecycle.served import ServedModelCache
from recommender.lifecycle.state import ModelState
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import Interaction, ItemMeta

#: Predicted categories kept per item, the surest first.
MAX_PREDICTED = 3


def one_inference_thread() -> None:
    """Inference on the event path (sentiment, categories, placement) in one thread: torch's
    default of one per core took both cores from the agents in bursts. Called once a content
    model is loaded: torch is imported then, not when the worker starts (two seconds that a
    restarted worker would spend before consuming)."""
    import torch

    torch.set_num_threads(1)


class ServedContentModels:
    """The served text, sentiment and image models of this process."""

    def __init__(self, redis: aioredis.Redis, registry: ModelRegistry) -> None:
        self.cache: dict[str, ServedModelCache[Any]] = {
            f: ServedModelCache(ModelState(redis, f), registry.family(f))
            for f in (TEXT, SENTIMENT, IMAGE)
        }

    async def sync(self) -> set[str]:
        """Load the versions served now (another process promotes them); the families whose
        version changed."""
        changed = set()
        for family, cache in self.cache.items():
            before = cache.version
            await cache.current()
            if cache.version != before:
                changed.add(family)
        if changed:
            one_inference_thread()
        return changed

    def model(self, family: str) -> Any:
        return self.cache[family].model


class SentimentScorer:
    """An `EventEnricher`: the served sentiment model reads every review's text."""

    def __init__(self, models: ServedContentModels) -> None:
        self._models = models

    async def enrich(self, events: Sequence[Interaction]) -> list[Interaction]:
        model = self._models.model(SENTIMENT)
        reviews = [i for i, e in enumerate(events) if e.type == "review" and e.text]
        if model is None or not reviews:
            return list(events)
        texts = [str(events[i].text) for i in reviews]
        probs = await asyncio.to_thread(model.predict_proba, texts)
        out = list(events)
        for i, p in zip(reviews, probs[:, 0], strict=True):
            out[i] = dataclasses.replace(out[i], sentiment=round(float(p), 4))
        return out


def merge_predictions(
    rows: Sequence[tuple[Sequence[str], np.ndarray]], min_p: float
) -> dict[str, float]:
    """Label -> confidence from several models (the surest model's figure per label), the
    ``MAX_PREDICTED`` surest at or above ``min_p``; the single surest when none is."""
    best: dict[str, float] = {}
    for labels, probs in rows:
        for label, p in zip(labels, probs, strict=True):
            best[label] = max(best.get(label, 0.0), float(p))
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    sure = [(label, p) for label, p in ranked if p >= min_p][:MAX_PREDICTED]
    return {label: round(p, 4) for label, p in (sure or ranked[:1])}


class CategoryPredictor:
    """A `ContentEnricher`: an item without categories gets the confident ones the served text
    model reads in its title and text and the image model sees in its picture, marked as
    predicted."""

    def __init__(self, models: ServedContentModels, min_p: float) -> None:
        self._models = models
        self._min_p = min_p

    async def enrich(self, items: Sequence[ItemMeta]) -> list[ItemMeta]:
        todo = [i for i, it in enumerate(items) if not it.categories]
        text, image = self._models.model(TEXT), self._models.model(IMAGE)
        if not todo or (text is None and image is None):
            return list(items)
        rows: dict[int, list[tuple[Sequence[str], np.ndarray]]] = {i: [] for i in todo}
        if text is not None:
            texts = [item_text(items[i].title, items[i].text) for i in todo]
            probs = await asyncio.to_thread(text.predict_proba, texts)
            for i, p in zip(todo, probs, strict=True):
                rows[i].append((text.labels, p))
        with_image = [i for i in todo if items[i].image]
        if image is not None and with_image:
            probs = await asyncio.to_thread(
                image.predict_proba, [str(items[i].image) for i in with_image]
            )
            for i, p in zip(with_image, probs, strict=True):
                rows[i].append((image.labels, p))
        out = list(items)
        for i in todo:
            if rows[i]:
                predicted = merge_predictions(rows[i], self._min_p)
                out[i] = dataclasses.replace(
                    out[i], categories=tuple(predicted), predicted=predicted
                )
        return out


async def repredict(store: FeatureStore, predictor: CategoryPredictor, chunk: int = 500) -> int:
    """Predict again the categories of every item that came without any (a newer text or image
    model serves, or none served when they arrived); returns how many items got some."""
    items = await store.catalogue.uncategorised()
    done = 0
    for start in range(0, len(items), chunk):
        ids = items[start : start + chunk]
        contents = await store.catalogue.item_contents(ids)
        images = await store.catalogue.images(ids)
        metas = [
            ItemMeta(i, c.title, 0, c.text, (), image)
            for i, c, image in zip(ids, contents, images, strict=True)
            if c is not None
        ]
        predicted = {
            it.item_id: it.predicted
            for it in await predictor.enrich(metas)
            if it.predicted is not None
        }
        if predicted:
            await store.catalogue.set_predicted(predicted)
        done += len(predicted)
    return done


class ContentExamples:
    """A `ContentListener`: queues every stored item for the content trainer."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def on_items(self, items: Sequence[ItemMeta]) -> None:
        if not items:
            return
        pipe = self._redis.pipeline(transaction=False)
        for it in items:
            pipe.xadd(
                keys.CONTENT_EXAMPLES,
                {"item": it.item_id},
                maxlen=keys.TRAIN_STREAM_MAXLEN,
                approximate=True,
            )
        await pipe.execute()
