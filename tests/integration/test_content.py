"""The content models against a real Valkey: the worker's handler queues what arrives, the content
trainer learns from the queues and publishes versions, and the served versions predict an item's
categories and a review's sentiment on the event path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recommender.cf.lifecycle import lifecycle_for
from recommender.content.features import (
    CategoryPredictor,
    ContentExamples,
    SentimentScorer,
    ServedContentModels,
)
from recommender.content.trainer import ContentTrainer
from recommender.lifecycle.families import SENTIMENT, TEXT, model_registry
from recommender.privacy.crypto import UserDataCipher, master_cipher
from recommender.privacy.reviews import ReviewStore
from recommender.store import keys
from recommender.store.features import FeatureStore
from recommender.types import Interaction, ItemMeta
from streamrec.content_data import fine_food_reviews, movielens_movies
from streams.handlers import RawRecord, RecordHandler
from streams.records import ContentV1, encode
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def content_settings(infra, tmp_path):
    return make_settings(
        tmp_path,
        kafka_url=infra.kafka_url,
        redis_url=infra.redis_url,
        content_models=True,
        content_min_examples=150,
        content_first_fit_epochs=3,
        content_publish_every=100,
        content_batch_size=32,
    )


@pytest.fixture
def parts(redis, content_settings):
    s = content_settings
    store = FeatureStore(redis, s)
    cipher = UserDataCipher(redis, master_cipher(s.require_master_keys()))
    reviews = ReviewStore(redis, cipher, store.pseudonym_of, s.user_ttl_s, train=True)
    models = ServedContentModels(redis, model_registry(s.models_dir))
    sent: list[bytes] = []

    async def sink(key: bytes | None, value: bytes) -> None:
        sent.append(value)

    handler = RecordHandler(
        store,
        [],
        sink,
        content_listeners=[ContentExamples(redis)],
        recorders=[reviews],
        enrichers=[SentimentScorer(models)],
        content_enrichers=[CategoryPredictor(models, s.predicted_category_min_p)],
    )
    return store, reviews, models, handler, ContentTrainer(redis, s, reviews)


async def _learn(trainer: ContentTrainer, family: str, steps: int = 30) -> None:
    for _ in range(steps):
        await trainer.step(block_ms=10)
        if trainer.served[family] and (await trainer.served[family].current())[0]:
            return
    raise AssertionError(f"no {family} version served after {steps} steps")


async def test_items_teach_the_text_model_which_then_predicts_categories(
    parts, redis, content_settings
):
    store, _, models, handler, trainer = parts
    movies = movielens_movies()
    movies = movies[movies["genres"].map(len) > 0].sample(700, random_state=1)
    records = [
        RawRecord("content", 0, n, None, encode(ContentV1(item_id=m, title=t, categories=g, ts=1)))
        for n, (m, t, g) in enumerate(
            zip(movies["movie_id"], movies["title"], movies["genres"], strict=True)
        )
    ]
    assert await handler.handle_content(records) == 700
    assert await redis.xlen(keys.CONTENT_EXAMPLES) == 700
    await _learn(trainer, TEXT)
    versions = await lifecycle_for(TEXT, redis, content_settings).versions()
    assert versions and versions[-1].served and versions[-1].meta["examples"] >= 150
    for _ in range(5):
        await trainer.step(block_ms=10)
    assert await redis.xlen(keys.CONTENT_EXAMPLES) <= 1  # what was learned leaves Redis

    await models.sync()
    new = ItemMeta("new-1", "Scary Movie Massacre Nightmare (2001)", 2)
    [stored] = await CategoryPredictor(models, 0.3).enrich([new])
    assert stored.predicted and stored.categories == tuple(stored.predicted)
    await store.catalogue.upsert_items([stored])
    meta = await redis.hgetall(keys.item_meta("new-1"))
    assert json.loads(meta["predicted"]) == stored.predicted
    for category in stored.categories:
        assert "new-1" in await store.catalogue.items_in(category)
    # What was predicted never teaches the model: only labels a publisher gave do.
    first = str(movies["movie_id"].iloc[0])
    assert (await redis.hgetall(keys.item_meta(first)))["predicted"] == ""


async def test_reviews_teach_sentiment_which_then_weighs_reviews_and_forgets_the_erased(
    parts, redis, content_settings
):
    store, reviews, models, _, trainer = parts
    train, _ = fine_food_reviews()
    events = [
        Interaction(
            f"r{i}",
            f"user{i % 20}",
            f"p{i % 50}",
            "review",
            1000 + i,
            5.0 if train.positive[i] else 1.0,
            train.text[i],
        )
        for i in range(1200)
    ]
    await reviews.record(events)
    await store.apply_interactions(events)
    await _learn(trainer, SENTIMENT)
    while await redis.xlen(keys.REVIEW_EXAMPLES) > 1:
        await trainer.step(block_ms=10)
    assert trainer.learners[SENTIMENT].owners()

    await models.sync()
    _, test = fine_food_reviews()
    probe = [
        Interaction(f"t{i}", "zoe", f"q{i}", "review", 5000 + i, None, test.text[i])
        for i in range(300)
    ]
    scored = await SentimentScorer(models).enrich(probe)
    p = np.asarray([e.sentiment for e in scored])
    y = test.positive[:300]
    # It tells them apart, on reviews it never saw (ROC AUC through the ranks).
    ranks = np.argsort(np.argsort(p)) + 1
    auc = (ranks[y].sum() - y.sum() * (y.sum() + 1) / 2) / (y.sum() * (~y).sum())
    assert auc > 0.7
    happy, sad = scored[int(p.argmax())], scored[int(p.argmin())]
    assert happy.sentiment is not None and sad.sentiment is not None
    assert happy.sentiment > 0.5 > sad.sentiment
    await store.apply_interactions([happy, sad])
    (weights,) = await store.users.histories([store.pseudonym("zoe")])
    s = content_settings
    expected = s.review_positive_weight * (2 * happy.sentiment - 1)
    assert weights[happy.item_id] == pytest.approx(expected, rel=1e-3)
    assert weights[sad.item_id] == 0.0  # seen, but no preference

    # Erasure reaches the trainer's buffers: user3's reviews leave every later training set.
    from recommender.cf.vectors import CFVectors
    from recommender.lifecycle.state import ModelState
    from recommender.privacy.profiles import UserDataService

    cipher = UserDataCipher(redis, master_cipher(s.require_master_keys()))
    privacy = UserDataService(redis, store, cipher, reviews, CFVectors(redis, ModelState(redis)))
    await privacy.erase("user3")
    assert await trainer.forget_erased() > 0
    assert store.pseudonym("user3") not in trainer.learners[SENTIMENT].owners()
