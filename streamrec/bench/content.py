"""`streamrec bench content`: the neural content models on real data, each against its baselines
in the same run; the same networks trained test-then-train over a stream against offline; cold
start on MovieLens; then the live figures (`content_live`).

Data: MovieLens titles and genres (20% of movies held out), the fine-food reviews' own split, and
Fashion-MNIST's (Debian `dataset-fashion-mnist`, which `make bench` installs).
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.classifier import ContentClassifier
from models.content_map import ContentMap
from models.data import InteractionMatrix
from models.fitting import fit_als
from models.image import ImageClassifier
from models.sentiment import SentimentClassifier
from models.text import TextClassifier
from recommender.content.learning import Example, Learner, LearnerConfig, score
from recommender.settings import Settings
from streamrec.bench.report import write
from streamrec.content_data import fashion_mnist, fine_food_reviews, movielens_movies
from streamrec.movielens import load_ratings
from streamrec.ratings_csv import clean_history, with_weights

#: Offline epochs per model (the validation-free settings found while building them).
EPOCHS = {"text": 6, "sentiment": 4, "image": 5}
#: The thresholds at which predicted categories are kept (the setting's default).
MIN_P = 0.3
SEED = 0


def _micro_f1(probs: np.ndarray, labels: Sequence[str], truth: Sequence[Sequence[str]]) -> float:
    tp = fp = fn = 0
    for row, gold in zip(probs, truth, strict=True):
        pred = {labels[i] for i in np.where(row >= MIN_P)[0]} or {labels[int(row.argmax())]}
        tp += len(pred & set(gold))
        fp += len(pred - set(gold))
        fn += len(set(gold) - pred)
    return 2 * tp / max(2 * tp + fp + fn, 1)


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(p)) + 1
    pos = int(y.sum())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def _split_movies() -> tuple[pd.DataFrame, pd.DataFrame]:
    movies = movielens_movies()
    movies = movies[movies["genres"].map(len) > 0]
    order = np.random.default_rng(SEED).permutation(len(movies))
    cut = int(0.8 * len(movies))
    return movies.iloc[order[:cut]], movies.iloc[order[cut:]]


def _stream(
    make: Callable[[], ContentClassifier],
    xs: Sequence[Any],
    ys: Sequence[Any],
    test: list[Example],
    config: LearnerConfig,
) -> dict[str, float]:
    """Test-then-train over the stream in micro-batches (the content trainer's `Learner`):
    final score on the test set, prequential accuracy, and forgetting of the first fifth."""
    learner = Learner("bench", make, config, seed=SEED)
    stream = [Example(f"s{i}", x, y) for i, (x, y) in enumerate(zip(xs, ys, strict=True))]
    fifth = len(stream) // 5
    first_fifth = [e for e in stream[:fifth]]
    right_after = 0.0
    for start in range(0, len(stream), 500):
        learner.add(stream[start : start + 500])
        learner.train()
        if start + 500 >= fifth and not right_after and learner.model is not None:
            right_after = score(learner.model, first_fifth)
    assert learner.model is not None
    at_end = score(learner.model, first_fifth)
    return {
        "score": score(learner.model, test),
        "prequential": learner.prequential_accuracy or 0.0,
        "forgetting_points": max(0.0, (right_after - at_end) * 100),
    }


def _config() -> LearnerConfig:
    return LearnerConfig(min_examples=500, first_fit_epochs=3, batch_size=32, replay_size=5000)


def bench_text() -> dict[str, Any]:
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    train, test = _split_movies()
    labels = sorted({g for gs in train["genres"] for g in gs})
    started = time.perf_counter()
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    x_train = hstack([words.fit_transform(train["title"]), chars.fit_transform(train["title"])])
    x_test = hstack([words.transform(test["title"]), chars.transform(test["title"])])
    y_train = MultiLabelBinarizer(classes=labels).fit_transform(train["genres"])
    logreg = OneVsRestClassifier(LogisticRegression(C=4, max_iter=1000)).fit(x_train, y_train)
    p_logreg = logreg.predict_proba(x_test)
    logreg_s = time.perf_counter() - started
    truth = list(test["genres"])
    commonest = Counter(g for gs in train["genres"] for g in gs).most_common(1)[0][0]

    started = time.perf_counter()
    model = TextClassifier(seed=SEED)
    model.fit(list(train["title"]), list(train["genres"]), epochs=EPOCHS["text"])
    fit_s = time.perf_counter() - started
    examples = [Example(t, t, g) for t, g in zip(test["title"], truth, strict=True)]
    probs = model.predict_proba(list(test["title"]))
    stream = _stream(
        lambda: TextClassifier(seed=SEED),
        list(train["title"]),
        list(train["genres"]),
        examples,
        _config(),
    )
    offline = score(model, examples)
    started = time.perf_counter()
    model.predict_proba(list(test["title"][:500]))
    per_item_ms = (time.perf_counter() - started) * 1000 / 500
    return {
        "text_p_at_1": offline,
        "text_p_at_1_logreg": float(
            np.mean([labels[int(r.argmax())] in g for r, g in zip(p_logreg, truth, strict=True)])
        ),
        "text_p_at_1_commonest": float(np.mean([commonest in g for g in truth])),
        "text_micro_f1": _micro_f1(probs, model.labels, truth),
        "text_micro_f1_logreg": _micro_f1(p_logreg, labels, truth),
        "text_stream_p_at_1": stream["score"],
        "text_prequential_p_at_1": stream["prequential"],
        "text_forgetting_points": stream["forgetting_points"],
        "text_stream_vs_offline": stream["score"] / offline,
        "text_fit_s": fit_s,
        "text_logreg_s": logreg_s,
        "text_infer_ms_per_item": per_item_ms,
        "text_movies_train_test": [len(train), len(test)],
    }


def bench_sentiment() -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, test = fine_food_reviews()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    logreg = LogisticRegression(C=4, max_iter=2000)
    logreg.fit(vectorizer.fit_transform(train.text), train.positive)
    p_logreg = logreg.predict_proba(vectorizer.transform(test.text))[:, 1]

    started = time.perf_counter()
    model = SentimentClassifier(seed=SEED)
    model.fit(train.text, list(train.positive), epochs=EPOCHS["sentiment"], batch_size=32)
    fit_s = time.perf_counter() - started
    p = model.predict_proba(test.text)[:, 0]
    examples = [Example(t, t, bool(y)) for t, y in zip(test.text, test.positive, strict=True)]
    stream = _stream(
        lambda: SentimentClassifier(seed=SEED),
        train.text,
        [bool(y) for y in train.positive],
        examples,
        _config(),
    )
    offline = _auc(p, test.positive)
    started = time.perf_counter()
    model.predict_proba(test.text[:500])
    per_review_ms = (time.perf_counter() - started) * 1000 / 500
    return {
        "sentiment_auc": offline,
        "sentiment_accuracy": float(np.mean((p >= 0.5) == test.positive)),
        "sentiment_auc_logreg": _auc(p_logreg, test.positive),
        "sentiment_accuracy_logreg": float(np.mean((p_logreg >= 0.5) == test.positive)),
        "sentiment_accuracy_majority": float(max(test.positive.mean(), 1 - test.positive.mean())),
        "sentiment_stream_auc": stream["score"],
        "sentiment_prequential_accuracy": stream["prequential"],
        "sentiment_forgetting_points": stream["forgetting_points"],
        "sentiment_stream_vs_offline": stream["score"] / offline,
        "sentiment_fit_s": fit_s,
        "sentiment_infer_ms_per_review": per_review_ms,
    }


def bench_image() -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("t10k")
    started = time.perf_counter()
    # On 10,000 training images: the full 60,000 take the regression minutes for 0.01 more.
    flat = x[:10_000].reshape(10_000, -1) / 255.0
    with warnings.catch_warnings():  # lbfgs stops at max_iter: 0.826 then, as the notes found
        warnings.simplefilter("ignore", ConvergenceWarning)
        logreg = LogisticRegression(max_iter=200).fit(flat, y[:10_000])
    acc_logreg = float(np.mean(logreg.predict(xt.reshape(len(xt), -1) / 255.0) == np.asarray(yt)))
    logreg_s = time.perf_counter() - started

    started = time.perf_counter()
    model = ImageClassifier(seed=SEED, lr_decay=0.5)
    model.fit(list(x), y, epochs=EPOCHS["image"], batch_size=64)
    fit_s = time.perf_counter() - started
    examples = [Example(str(i), a, b) for i, (a, b) in enumerate(zip(xt, yt, strict=True))]
    offline = score(model, examples)
    stream = _stream(lambda: ImageClassifier(seed=SEED), list(x), y, examples, _config())
    started = time.perf_counter()
    model.predict_proba(list(xt[:1000]))
    per_item_ms = (time.perf_counter() - started) * 1000 / 1000
    return {
        "image_accuracy": offline,
        "image_accuracy_logreg": acc_logreg,
        "image_stream_accuracy": stream["score"],
        "image_prequential_accuracy": stream["prequential"],
        "image_forgetting_points": stream["forgetting_points"],
        "image_stream_vs_offline": stream["score"] / offline,
        "image_fit_s": fit_s,
        "image_logreg_s": logreg_s,
        "image_infer_ms_per_item": per_item_ms,
    }


def bench_coldstart(settings: Settings) -> dict[str, Any]:
    """20% of movies held out entirely; each placed from its content into the ALS space fitted
    on the rest, then ranked among the held-out movies for each user who rated some (per-user
    AUC, Recall@50), against random and genre popularity; and how often held-out movies reach a
    user's top 10 among the whole catalogue."""
    train_movies, held_movies = _split_movies()
    everything = movielens_movies()
    title_of: dict[str, str] = dict(zip(everything["movie_id"], everything["title"], strict=True))
    genres_of: dict[str, list[str]] = dict(
        zip(everything["movie_id"], everything["genres"], strict=True)
    )
    events, _ = clean_history(load_ratings())
    weighted = with_weights(events, settings)
    held = set(held_movies["movie_id"])
    seen = weighted[~weighted["item_id"].isin(held)]
    histories: dict[str, dict[str, float]] = {}
    for user, item, weight in seen[["user_id", "item_id", "weight"]].itertuples(index=False):
        histories.setdefault(str(user), {})[str(item)] = float(weight)
    users = list(histories)
    data = InteractionMatrix.from_histories(users, [histories[u] for u in users])
    params = {
        "factors": settings.als_factors,
        "regularization": settings.als_regularization,
        "iterations": settings.als_iterations,
        "alpha": settings.als_alpha,
    }
    fitted = fit_als(data, **params)
    vectors = dict(zip(users, fitted.user_vectors, strict=True))
    item_ids = [str(i) for i in fitted.item_ids]

    text = TextClassifier(seed=SEED)
    text.fit(list(train_movies["title"]), list(train_movies["genres"]), epochs=EPOCHS["text"])
    known = [i for i in item_ids if i in title_of]
    row = {i: n for n, i in enumerate(item_ids)}
    cmap = ContentMap.fit(
        text.embed([title_of[i] for i in known]),
        [dict.fromkeys(genres_of[i], 1.0) for i in known],
        text.labels,
        fitted.item_factors[[row[i] for i in known]],
        "bench",
    )
    cold = sorted(held & set(events["item_id"]))
    titles = [title_of[i] for i in cold]
    embedded = text.embed(titles)
    predicted = [dict(zip(text.labels, p, strict=True)) for p in text.predict_proba(titles)]
    true = [dict.fromkeys(genres_of[i], 1.0) for i in cold]
    placed_pred = cmap.place(embedded, predicted)
    placed_true = cmap.place(embedded, true)
    counts = seen["item_id"].value_counts()
    genre_pop: Counter[str] = Counter()
    for item, n in counts.items():
        for g in genres_of.get(str(item), []):
            genre_pop[g] += int(n)
    pop_scores = np.asarray([sum(genre_pop[g] for g in t) for t in true], dtype=float)

    test = events[events["item_id"].isin(cold)]
    liked = test.groupby("user_id")["item_id"].apply(set)
    index = {i: n for n, i in enumerate(cold)}
    rng = np.random.default_rng(SEED)

    def evaluate(score_of: Callable[[str], np.ndarray]) -> tuple[float, float]:
        aucs, recalls = [], []
        for user, items in liked.items():
            if user not in vectors:
                continue
            y = np.zeros(len(cold), dtype=bool)
            y[[index[i] for i in items]] = True
            if y.all():
                continue
            s = score_of(str(user))
            aucs.append(_auc(s, y))
            recalls.append(float(y[np.argsort(-s)[:50]].sum() / y.sum()))
        return float(np.mean(aucs)), float(np.mean(recalls))

    auc_random, recall_random = evaluate(lambda u: rng.random(len(cold)))
    auc_pop, recall_pop = evaluate(lambda u: pop_scores + rng.random(len(cold)) * 1e-6)
    auc_pred, recall_pred = evaluate(lambda u: placed_pred @ vectors[u])
    auc_true, recall_true = evaluate(lambda u: placed_true @ vectors[u])

    # Cold items against the whole catalogue: the share of held-out movies in each top 10.
    catalogue = np.vstack([fitted.item_factors, placed_pred])
    is_cold = np.r_[np.zeros(len(item_ids), dtype=bool), np.ones(len(cold), dtype=bool)]
    shares = []
    for user, items_seen in histories.items():
        s = catalogue @ vectors[user]
        s[[row[i] for i in items_seen if i in row]] = -np.inf
        shares.append(float(is_cold[np.argsort(-s)[:10]].mean()))
    return {
        "coldstart_movies_held_out": len(cold),
        "coldstart_users": len(liked),
        "coldstart_auc": auc_pred,
        "coldstart_recall_at_50": recall_pred,
        "coldstart_auc_random": auc_random,
        "coldstart_recall_at_50_random": recall_random,
        "coldstart_auc_genre_popularity": auc_pop,
        "coldstart_recall_at_50_genre_popularity": recall_pop,
        "coldstart_auc_true_genres": auc_true,
        "coldstart_recall_at_50_true_genres": recall_true,
        "cold_items_precision": float(np.mean(shares)),
        "cold_items_share_of_catalogue": len(cold) / (len(cold) + len(item_ids)),
    }


def run_content(
    settings: Settings, json_path: Path | None = None, live: bool = True
) -> dict[str, Any]:
    torch.set_num_threads(2)  # the offline part has the machine to itself
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for part in (bench_text, bench_sentiment, bench_image):
        print(f"content: {part.__name__.removeprefix('bench_')}...", flush=True)
        results |= part()
    print("content: cold start...", flush=True)
    results |= bench_coldstart(settings)
    results["stream_vs_offline_min_ratio"] = min(
        results[f"{m}_stream_vs_offline"] for m in ("text", "sentiment", "image")
    )
    results["forgetting_max_points"] = max(
        results[f"{m}_forgetting_points"] for m in ("text", "sentiment", "image")
    )
    if live:
        from streamrec.bench.content_live import run_live

        torch.set_num_threads(1)
        results |= run_live(settings)
    results["seconds"] = time.perf_counter() - started
    return write(json_path, "content", results)
