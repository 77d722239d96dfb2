"""The catalogue in Redis: each item's content (title, text, categories, image), the category
index, what serving shows of an item, and the items that came without categories."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from recommender.store import keys
from recommender.types import ItemMeta

#: Items whose content is read per round trip.
CONTENT_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class ItemCard:
    title: str | None
    predicted: dict[str, float] | None = None
    placed_like: str | None = None


@dataclass(frozen=True, slots=True)
class ItemContent:
    title: str
    text: str | None
    categories: dict[str, float]  # label -> 1, or the confidence of a predicted one


class Catalogue:
    def __init__(self, redis: aioredis.Redis, shards: int | None = None) -> None:
        self._redis = redis
        self._shards = shards  # of popularity, on a cluster (`keys.item_shard`)

    async def upsert_items(self, items: Sequence[ItemMeta]) -> None:
        """Write item metadata and add the items to the catalogue (keeps the first-seen ts)."""
        if not items:
            return
        previous = await self.categories([it.item_id for it in items])
        pipe = self._redis.pipeline(transaction=False)
        for it, before in zip(items, previous, strict=True):
            # The category index follows an item whose categories changed.
            for c in set(before) - set(it.categories):
                pipe.srem(keys.category_items(c), it.item_id)
            for c in it.categories:
                pipe.sadd(keys.category_items(c), it.item_id)
            fields: Mapping[Any, Any] = {
                "title": it.title,
                "text": it.text or "",
                "categories": json.dumps(list(it.categories)),
                # Predicted categories and their confidence; empty when the publisher gave them.
                "predicted": json.dumps(it.predicted) if it.predicted else "",
            }
            pipe.hset(keys.item_meta(it.item_id), mapping=fields)
            if it.image is not None:  # kept for the image model; an update without one keeps it
                pipe.set(keys.item_image(it.item_id), it.image)
            pipe.zadd(keys.ITEMS_CATALOGUE, {it.item_id: it.ts}, nx=True)
            if it.predicted or not it.categories:
                pipe.sadd(keys.ITEMS_UNCATEGORISED, it.item_id)
            else:
                pipe.srem(keys.ITEMS_UNCATEGORISED, it.item_id)
        pipe.hincrby(keys.STATS, "items_upserted", len(items))
        await pipe.execute()

    async def images(self, item_ids: Sequence[str]) -> list[str | None]:
        """Each item's image (base64), or None."""
        pipe = self._redis.pipeline(transaction=False)
        for item in item_ids:
            pipe.get(keys.item_image(item))
        return [None if i is None else str(i) for i in await pipe.execute()]

    async def uncategorised(self) -> list[str]:
        """Items that came without categories (predicted ones or none yet)."""
        return sorted(str(i) for i in await self._redis.smembers(keys.ITEMS_UNCATEGORISED))

    async def ids(self) -> list[str]:
        """Every item that has content."""
        return [str(i) for i in await self._redis.zrange(keys.ITEMS_CATALOGUE, 0, -1)]

    async def set_predicted(self, predicted: Mapping[str, dict[str, float]]) -> None:
        """New predicted categories of items that came without any (a newer model read them);
        the category index follows."""
        items = list(predicted)
        before = await self.categories(items)
        pipe = self._redis.pipeline(transaction=False)
        for item, old in zip(items, before, strict=True):
            new = predicted[item]
            for c in set(old) - set(new):
                pipe.srem(keys.category_items(c), item)
            for c in new:
                pipe.sadd(keys.category_items(c), item)
            pipe.hset(
                keys.item_meta(item),
                mapping={"categories": json.dumps(list(new)), "predicted": json.dumps(new)},
            )
        await pipe.execute()

    async def categories(self, item_ids: Sequence[str]) -> list[list[str]]:
        """Each item's categories ([] for an item with no metadata)."""
        pipe = self._redis.pipeline(transaction=False)
        for item in item_ids:
            pipe.hget(keys.item_meta(item), "categories")
        return [json.loads(raw) if raw else [] for raw in await pipe.execute()]

    async def item_contents(self, item_ids: Sequence[str]) -> list[ItemContent | None]:
        """Each item's title, text and categories (confidence 1 for a category the publisher
        gave, the model's confidence for a predicted one); None for an item without content."""
        rows: list[list[str | None]] = []
        for start in range(0, len(item_ids), CONTENT_CHUNK):  # a refit reads the catalogue
            pipe = self._redis.pipeline(transaction=False)
            for item in item_ids[start : start + CONTENT_CHUNK]:
                pipe.hmget(keys.item_meta(item), ["title", "text", "categories", "predicted"])
            rows += await pipe.execute()
        out: list[ItemContent | None] = []
        for title, text, cats, predicted in rows:
            if title is None:
                out.append(None)
                continue
            confidence = json.loads(predicted) if predicted else {}
            categories = {c: float(confidence.get(c, 1.0)) for c in json.loads(cats or "[]")}
            out.append(ItemContent(str(title), str(text or "") or None, categories))
        return out

    async def mark_placed(self, placed: Mapping[str, str]) -> None:
        """Items placed in the CF model from their content, each with the known item it was
        placed nearest to (serving says "new, like X")."""
        pipe = self._redis.pipeline(transaction=False)
        for item, like in placed.items():
            pipe.hset(keys.item_meta(item), "placed_like", like)
        await pipe.execute()

    async def items_in(self, category: str) -> set[str]:
        return {str(i) for i in await self._redis.smembers(keys.category_items(category))}

    async def known_item(self, item_id: str) -> bool:
        """In the catalogue, or interacted with."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.exists(keys.item_meta(item_id))
        shard = None if self._shards is None else keys.item_shard(item_id, self._shards)
        pipe.zscore(keys.items_popular(shard), item_id)
        meta, score = await pipe.execute()
        return bool(meta) or score is not None

    async def distinct_users(self, item_id: str) -> int:
        """Approximate (HyperLogLog, ~0.8% error) number of users who touched the item."""
        return int(await self._redis.pfcount(keys.item_users(item_id)))

    async def titles(self, item_ids: Sequence[str]) -> list[str | None]:
        return [c.title for c in await self.cards(item_ids)]

    async def cards(self, item_ids: Sequence[str]) -> list[ItemCard]:
        """What an answer shows of each item: its title, its predicted categories (with their
        confidence) when it came without any, and the item it was placed near when new."""
        pipe = self._redis.pipeline(transaction=False)
        for item in item_ids:
            pipe.hmget(keys.item_meta(item), ["title", "predicted", "placed_like"])
        return [
            ItemCard(title, json.loads(predicted) if predicted else None, like or None)
            for title, predicted, like in await pipe.execute()
        ]
