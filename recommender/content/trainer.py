"""The content trainer: the text, sentiment and image models, and the sequential family,
learning from the stream, in a process of its own, off the ingestion path.

The worker queues what arrives (`keys.CONTENT_EXAMPLES`: items; `keys.REVIEW_EXAMPLES`: reviews);
this reads those queues in order, turns them into labelled examples (an item's categories label
its text and its image; a review's rating labels its text: positive at 4 of 5 or more, negative at
2 of 5 or less), reads the latest items of users active since it last looked (the sequential
family's next-item examples: `content.sequences`), lets each family's `Learner` test and train
on them, and publishes versions through the lifecycle. One trainer holds the lease at a time,
whatever the number of workers.

Erasure reaches the models: review examples are read decrypted from `ReviewStore` (a shredded
data key reads nothing), and examples of users whose data key is gone are dropped from every
buffer before each version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from models.features import item_text
from models.pixels import ImageDecodeError, decode_image
from recommender.cf.lifecycle import lifecycle_for
from recommender.content.learning import ContentClassifier, Example, Learner, LearnerConfig
from recommender.content.sequences import read_examples
from recommender.lifecycle.families import IMAGE, SENTIMENT, SEQUENTIAL, TEXT, model_registry
from recommender.lifecycle.publishing import ModelLifecycle
from recommender.lifecycle.served import ServedModelCache
from recommender.lifecycle.state import ModelState
from recommender.privacy.reviews import ReviewStore
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.store.users import ActiveCursor
from recommender.weights import review_label

log = logging.getLogger(__name__)

#: Entries read from a queue at a time.
READ_COUNT = 256

RENEW_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


def learner_config(settings: Settings) -> LearnerConfig:
    return LearnerConfig(
        min_examples=settings.content_min_examples,
        first_fit_epochs=settings.content_first_fit_epochs,
        publish_every=settings.content_publish_every,
        replay_size=settings.content_replay_size,
        holdout_size=settings.content_holdout_size,
        batch_size=settings.content_batch_size,
        gate_margin=settings.quality_gate_margin,
    )


def item_examples(item_id: str, meta: Mapping[str, str], image: str | None) -> dict[str, Example]:
    """What an item teaches: its text (title and text -> its categories) and its image (-> its
    first category). Only categories the publisher gave count, never predicted ones."""
    categories = json.loads(meta.get("categories") or "[]")
    if not categories or meta.get("predicted"):
        return {}
    out = {
        TEXT: Example(
            f"item:{item_id}",
            item_text(meta.get("title", ""), meta.get("text") or None),
            categories,
        )
    }
    if image:
        try:
            out[IMAGE] = Example(f"image:{item_id}", decode_image(image), categories[0])
        except ImageDecodeError as exc:  # the schema checks this; an old record may not
            log.info("item %s: %s; not learned from", item_id, exc)
    return out


class ContentTrainer:
    """Reads the queues, feeds the learners, publishes versions."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, reviews: ReviewStore) -> None:
        from models.image import ImageClassifier
        from models.sentiment import SentimentClassifier
        from models.text import TextClassifier

        self._redis = redis
        self._settings = settings
        self._reviews = reviews
        config = learner_config(settings)
        makers: dict[str, Callable[[], ContentClassifier]] = {
            TEXT: TextClassifier,
            SENTIMENT: SentimentClassifier,
            IMAGE: ImageClassifier,
        }
        configs = dict.fromkeys(makers, config)
        if settings.sequential_weight > 0:
            from models.next_item import NextItemClassifier

            makers[SEQUENTIAL] = NextItemClassifier
            configs[SEQUENTIAL] = replace(
                config, first_fit_epochs=settings.sequential_first_fit_epochs
            )
        registry = model_registry(settings)
        self.learners = {f: Learner(f, makers[f], configs[f]) for f in makers}
        self.lifecycles: dict[str, ModelLifecycle[Any]] = {
            f: lifecycle_for(f, redis, settings) for f in makers
        }
        self.served = {
            f: ServedModelCache(ModelState(redis, f), registry.family(f)) for f in makers
        }
        self._cursors = {keys.CONTENT_EXAMPLES: "0-0", keys.REVIEW_EXAMPLES: "0-0"}
        self._users = FeatureStore(redis, settings).users
        self._users_since = ActiveCursor()  # the sequential family's: users read up to here
        self._lease_id = secrets.token_hex(8)
        self._renew = redis.register_script(RENEW_LEASE_LUA)

    async def restore_cursors(self) -> None:
        for stream in self._cursors:
            saved = await self._redis.get(keys.train_cursor(stream))
            if saved:
                self._cursors[stream] = str(saved)
        saved_ms = await self._redis.get(keys.train_cursor(keys.USERS_ACTIVE))
        self._users_since = ActiveCursor(int(saved_ms or 0))

    async def hold_lease(self) -> bool:
        """Take or keep the trainer's lease; False while another trainer holds it."""
        return bool(
            await self._renew(keys=[keys.TRAIN_LEASE], args=[self._lease_id, keys.TRAIN_LEASE_MS])
        )

    async def read(self, block_ms: int = 1000) -> dict[str, list[Example]]:
        """The next examples of each family (possibly none), and the cursors moved past them."""
        streams: Any = self._cursors
        answer: Any = await self._redis.xread(streams, count=READ_COUNT, block=block_ms)
        found: dict[str, list[Example]] = {family: [] for family in self.learners}
        if SEQUENTIAL in self.learners:
            found[SEQUENTIAL] = await read_examples(self._users, self._users_since)
        for stream, entries in answer or []:
            name = str(stream)
            if not entries:
                continue
            if name == keys.CONTENT_EXAMPLES:
                await self._items([str(f.get("item", "")) for _, f in entries], found)
            else:
                await self._review_examples(
                    [(f.get("p"), f.get("review")) for _, f in entries], found
                )
            self._cursors[name] = str(entries[-1][0])
        return found

    async def _items(self, item_ids: list[str], found: dict[str, list[Example]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for item in item_ids:
            pipe.hgetall(keys.item_meta(item))
            pipe.get(keys.item_image(item))
        rows = await pipe.execute()
        for item, meta, image in zip(item_ids, rows[::2], rows[1::2], strict=True):
            for family, example in item_examples(item, meta, image).items():
                found[family].append(example)

    async def _review_examples(
        self, refs: list[tuple[Any, Any]], found: dict[str, list[Example]]
    ) -> None:
        by_user: dict[str, list[str]] = {}
        for p, field in refs:
            if p and field:
                by_user.setdefault(str(p), []).append(str(field))
        for p, fields in by_user.items():
            for review in await self._reviews.reviews(p, fields):
                label = review_label(review.value, self._settings.rating_scale)
                if label is not None and review.text.strip():
                    found[SENTIMENT].append(
                        Example(f"review:{review.event_id}", review.text, label, owner=p)
                    )

    async def forget_erased(self) -> int:
        """Drop the examples of users erased since they were read: a tombstone, or (reviews)
        a data key gone."""
        owners = sorted({p for learner in self.learners.values() for p in learner.owners()})
        if not owners:
            return 0
        keyed = self.learners[SENTIMENT].owners()  # their examples were decrypted with it
        pipe = self._redis.pipeline(transaction=False)
        for p in owners:
            pipe.exists(keys.erased(p))
            pipe.exists(keys.data_key(p))
        found = await pipe.execute()
        erased = {
            p
            for p, tomb, key in zip(owners, found[::2], found[1::2], strict=True)
            if tomb or (p in keyed and not key)
        }
        return sum(learner.forget(erased) for learner in self.learners.values())

    async def step(self, block_ms: int = 1000) -> dict[str, int]:
        """Read, learn, publish what is due, and move the saved cursors; how many examples each
        family learned."""
        found = await self.read(block_ms)
        learned: dict[str, int] = {}
        for family, learner in self.learners.items():
            learner.add(found[family])
            learned[family] = await asyncio.to_thread(learner.train)
            if learner.due():
                await self.forget_erased()
                published = await learner.publish(self.lifecycles[family], self.served[family])
                if published is not None:
                    log.info("%s model %s (%s)", family, *published)
        pipe = self._redis.pipeline(transaction=False)
        for stream, cursor in self._cursors.items():
            pipe.set(keys.train_cursor(stream), cursor)
            if cursor != "0-0":
                pipe.xtrim(stream, minid=cursor, approximate=False)  # learned: not needed now
        pipe.set(keys.train_cursor(keys.USERS_ACTIVE), self._users_since.ms)
        await pipe.execute()
        return learned

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: hold the lease (or wait for it), then step."""
        await self.restore_cursors()
        while not stop.is_set():
            if not await self.hold_lease():
                await asyncio.sleep(keys.TRAIN_LEASE_MS / 3000)
                continue
            try:
                await self.step()
            except Exception:
                # A bad example or a failed save must not stop learning from the rest.
                log.exception("content trainer step failed; going on")
                await asyncio.sleep(1.0)
