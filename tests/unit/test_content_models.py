"""The neural content models on small real data: each beats its trivial baseline after a short
fit, round-trips through a torch file read with `weights_only=True`, grows its labels, and reads
hostile input without failing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from models.classifier import ContentModelError
from models.image import ImageClassifier
from models.pixels import ImageDecodeError, decode_image, encode_png
from models.sentiment import SentimentClassifier
from models.text import TextClassifier
from recommender.content.learning import Example, Learner, LearnerConfig, score
from streamrec.content_data import FASHION_CLASSES, fine_food_reviews, movielens_movies

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fashion_mnist_small.npz"

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def movies():
    m = movielens_movies()
    m = m[m["genres"].map(len) > 0].sample(4500, random_state=3)
    return m.iloc[:4000], m.iloc[4000:]


@pytest.fixture(scope="module")
def fashion():
    data = np.load(FIXTURE, allow_pickle=False)
    names = np.asarray(FASHION_CLASSES)
    return (
        (list(data["train_images"]), list(names[data["train_labels"]])),
        (list(data["test_images"]), list(names[data["test_labels"]])),
    )


def test_text_model_beats_always_the_commonest_genre(movies):
    train, test = movies
    model = TextClassifier(seed=0)
    model.fit(list(train["title"]), list(train["genres"]), epochs=2)
    commonest = Counter(g for gs in train["genres"] for g in gs).most_common(1)[0][0]
    baseline = np.mean([commonest in gs for gs in test["genres"]])
    examples = [Example(t, t, gs) for t, gs in zip(test["title"], test["genres"], strict=True)]
    assert score(model, examples) > baseline


def test_sentiment_model_beats_the_majority_class():
    train, test = fine_food_reviews()
    model = SentimentClassifier(seed=0)
    model.fit(train.text[:800], list(train.positive[:800]), epochs=3, batch_size=32)
    examples = [Example(t, t, y) for t, y in zip(test.text[:400], test.positive[:400], strict=True)]
    assert score(model, examples) > 0.7  # ROC AUC; chance is 0.5
    p = model.predict_proba(test.text[:400])[:, 0]
    majority = max(test.positive[:400].mean(), 1 - test.positive[:400].mean())
    assert np.mean((p >= 0.5) == test.positive[:400]) >= majority


def test_image_model_beats_chance_on_fashion_mnist(fashion):
    (x, y), (xt, yt) = fashion
    model = ImageClassifier(seed=0)
    model.fit(x, y, epochs=4, batch_size=32)
    examples = [Example(str(i), a, b) for i, (a, b) in enumerate(zip(xt, yt, strict=True))]
    assert score(model, examples) > 0.6


def test_round_trip_through_a_weights_only_torch_file(movies, tmp_path):
    train, test = movies
    model = TextClassifier(seed=0)
    model.fit(list(train["title"][:300]), list(train["genres"][:300]), epochs=1)
    model.save(tmp_path / "model.pt")
    loaded = TextClassifier.load(tmp_path / "model.pt")
    titles = list(test["title"][:20])
    np.testing.assert_allclose(loaded.predict_proba(titles), model.predict_proba(titles))
    assert loaded.labels == model.labels
    # Nothing but tensors, lists, strings and numbers: the file loads without running code.
    assert isinstance(torch.load(tmp_path / "model.pt", weights_only=True), dict)
    with pytest.raises(ContentModelError, match="holds a 'text' model"):
        ImageClassifier.load(tmp_path / "model.pt")


def test_a_new_label_on_the_stream_grows_the_head_and_keeps_the_rest(fashion):
    (x, y), _ = fashion
    model = ImageClassifier(seed=0)
    first = [i for i, label in enumerate(y) if label != "Bag"]
    model.fit([x[i] for i in first], [y[i] for i in first], epochs=2)
    before = model.predict_proba(x[:50]).argmax(1)
    assert "Bag" not in model.labels
    bags = [i for i, label in enumerate(y) if label == "Bag"][:32]
    model.update([x[i] for i in bags], ["Bag"] * len(bags))
    assert model.labels[-1] == "Bag" and model.predict_proba(x[:1]).shape == (1, 10)
    after = model.predict_proba(x[:50])[:, :9].argmax(1)
    assert np.mean(before == after) > 0.8


@pytest.mark.parametrize(
    "text", ["", "🙂🙂🙂", "Привет, мир", "東京物語 (1953)", "x" * 20_000, "<br /><br />"]
)
def test_any_script_emoji_or_no_text_reads_without_failing(text):
    model = SentimentClassifier(seed=0)
    model.fit(["good", "bad", "great food", "awful taste"], [1, 0, 1, 0], epochs=1)
    p = model.predict_proba([text])
    assert p.shape == (1, 1) and 0 <= p[0, 0] <= 1


def test_an_image_that_does_not_decode_is_a_clear_error():
    assert decode_image(encode_png(np.full((64, 40), 200, dtype=np.uint8))).shape == (28, 28)
    with pytest.raises(ImageDecodeError, match="does not decode"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(ImageDecodeError, match="base64"):
        decode_image("***")


def test_the_learner_tests_then_trains_and_forgets_an_erased_user():
    train, _ = fine_food_reviews()
    learner = Learner(
        "sentiment",
        lambda: SentimentClassifier(seed=0),
        LearnerConfig(min_examples=100, first_fit_epochs=1, publish_every=50, batch_size=16),
    )
    examples = [
        Example(f"r{i}", train.text[i], bool(train.positive[i]), owner=f"user{i % 7}")
        for i in range(400)
    ]
    learner.add(examples[:150])
    assert learner.train() > 0 and learner.model is not None
    learner.add(examples[150:])
    learner.add(examples[150:200])  # redelivered: skipped
    assert learner.tested == len([e for e in learner.pending])  # every new one tested first
    assert learner.train() > 0
    assert learner.prequential_accuracy is not None
    assert learner.holdout and all(e not in learner.replay for e in learner.holdout)
    dropped = learner.forget({"user3"})
    assert dropped > 0 and "user3" not in learner.owners()
