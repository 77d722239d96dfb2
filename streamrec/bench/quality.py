"""`streamrec bench quality`: every model on the same MovieLens temporal split (each user's last
20% of ratings held out), in one run; hyper-parameters chosen on a validation split carved from
the training part (never on the test set); then a prequential replay; a table, JSON and a chart.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.als import ALSModel
from models.base import RecommenderModel
from models.baselines import EASEModel, ItemKNNModel, PopularityModel
from recommender.evaluation.prequential import prequential
from recommender.evaluation.ranking import Split, evaluate, temporal_split, training_events
from recommender.settings import Settings
from streamrec.bench import sequential
from streamrec.bench.report import write
from streamrec.movielens import load_ratings
from streamrec.ratings_csv import clean_history, with_weights

#: Searched on the validation split. Ranges from a first, wider exploration
#: (docs/benchmark-history.md).
ALS_GRID = {"factors": (32, 64), "regularization": (1.0, 10.0), "alpha": (0.25, 1.0)}
BLEND_GRID = {"knn_weight": (0.25, 0.5, 1.0), "recent_decay": (0.8, 0.95), "recent": (10, 50)}
KNN_GRID = (50, 100, 200)
#: Half-lives of an interaction's confidence (`with_recency`), 0 for none: a day to a year.
RECENCY_GRID = (0.0, 86_400.0, 7 * 86_400.0, 30 * 86_400.0, 365 * 86_400.0)
EASE_GRID = (100.0, 500.0)


def _best(
    candidates: list[dict[str, Any]], score: Callable[[dict[str, Any]], float]
) -> tuple[dict[str, Any], float]:
    scored = [(score(c), n, c) for n, c in enumerate(candidates)]
    best, _, chosen = max(scored, key=lambda t: (t[0], -t[1]))
    return chosen, best


def _grid(grid: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def _truncated(split: Split, n: int) -> Split:
    return Split(split.train, split.test, {u: r[:n] for u, r in split.recent.items()}, split.times)


def _chain(settings: Settings, tuned: dict[str, Any]) -> ALSModel:
    """The serving chain: tuned ALS blended with the neighbours of the latest items."""
    blend = tuned["blend"]
    return ALSModel(
        iterations=settings.als_iterations,
        neighbours=settings.knn_neighbours,
        knn_weight=blend["knn_weight"],
        recent_decay=blend["recent_decay"],
        **tuned["als"],
    )


def _tune(settings: Settings, val: Split) -> dict[str, Any]:
    """Every tuned parameter, chosen by validation NDCG@10."""
    vdata = val.matrix()
    iterations = settings.als_iterations

    def als_score(c: dict[str, Any]) -> float:
        model = ALSModel(iterations=iterations, **c)
        model.fit(vdata)
        return evaluate(model, val).ndcg

    als, als_val = _best(_grid(ALS_GRID), als_score)
    model = ALSModel(iterations=iterations, neighbours=settings.knn_neighbours, **als)
    model.fit(vdata)

    def blend_score(c: dict[str, Any]) -> float:
        model.knn_weight, model.recent_decay = c["knn_weight"], c["recent_decay"]
        return evaluate(model, _truncated(val, c["recent"])).ndcg

    blend, blend_val = _best(_grid(BLEND_GRID), blend_score)

    def recency_score(c: dict[str, Any]) -> float:
        decayed = ALSModel(iterations=iterations, **als)
        decayed.fit(val.matrix(c["half_life_s"]))
        return evaluate(decayed, val).ndcg

    scored = [(recency_score({"half_life_s": h}), h) for h in RECENCY_GRID]
    recency: dict[str, Any] = {"half_life_s": max(scored, key=lambda t: (t[0], -t[1]))[1]}
    recency["validation_ndcg@10"] = {f"{h:g}": round(score, 4) for score, h in scored}
    # The best half-life that decays at all, for the prequential replay when none wins here.
    recency["best_decaying_s"] = max(scored[1:], key=lambda t: (t[0], -t[1]))[1]

    def knn_score(c: dict[str, Any]) -> float:
        knn = ItemKNNModel(c["neighbours"])
        knn.fit(vdata)
        return evaluate(knn, val).ndcg

    knn, _ = _best([{"neighbours": n} for n in KNN_GRID], knn_score)

    def ease_score(c: dict[str, Any]) -> float:
        ease = EASEModel(c["regularization"])
        ease.fit(vdata)
        return evaluate(ease, val).ndcg

    ease, _ = _best([{"regularization": r} for r in EASE_GRID], ease_score)
    return {
        "als": als,
        "blend": blend,
        "item_knn": knn,
        "ease": ease,
        "recency": recency,
        "validation_ndcg@10": {"als": round(als_val, 4), "blend": round(blend_val, 4)},
    }


def run_quality(
    settings: Settings,
    k: int = 10,
    json_path: Path | None = None,
    chart_path: Path | None = None,
    prequential_events: int = 5000,
) -> dict[str, Any]:
    events, _ = clean_history(load_ratings())
    weighted = with_weights(events, settings)
    split = temporal_split(weighted)
    train_events = training_events(weighted)
    val = temporal_split(train_events)
    started = time.perf_counter()
    tuned = _tune(settings, val)
    blend, als = tuned["blend"], tuned["als"]
    iterations = settings.als_iterations
    val_chain = _chain(settings, tuned)
    val_chain.fit(val.matrix())
    tuned["sequential"] = sequential.tune(
        val, training_events(train_events), val_chain, blend["recent"]
    )
    tune_s = time.perf_counter() - started

    # Batch ALS as a user of implicit gets it: the library's defaults.
    default_als = ALSModel(factors=100, regularization=0.01, iterations=15, alpha=1.0)
    tuned_als = ALSModel(iterations=iterations, **als)
    chain = _chain(settings, tuned)
    entries: list[tuple[str, RecommenderModel, Split]] = [
        ("popularity", PopularityModel(), split),
        ("item_knn", ItemKNNModel(**tuned["item_knn"]), split),
        ("ease", EASEModel(**tuned["ease"]), split),
        ("als", default_als, split),
        ("streamrec_als_only", tuned_als, split),
        ("streamrec", chain, _truncated(split, blend["recent"])),
        ("streamrec_recency", copy.deepcopy(chain), _truncated(split, blend["recent"])),
    ]
    half_life = tuned["recency"]["half_life_s"]
    rows: dict[str, dict[str, float]] = {}
    for name, model, s in entries:
        data = split.matrix(half_life if name == "streamrec_recency" else 0.0)
        t0 = time.perf_counter()
        model.fit(data)
        fit_s = time.perf_counter() - t0
        rows[name] = {**evaluate(model, s, k).as_dict(k), "fit_s": round(fit_s, 2)}
    seq_rows, seq_costs, _ = sequential.rows(
        tuned["sequential"], split, train_events, chain, blend["recent"]
    )
    rows |= seq_rows

    params = {"iterations": iterations, "neighbours": settings.knn_neighbours, **als}
    params |= {"knn_weight": blend["knn_weight"], "recent_decay": blend["recent_decay"]}
    t0 = time.perf_counter()
    replay = prequential(
        weighted,
        params,
        blend["recent"],
        settings.refit_growth,
        prequential_events,
        k,
        half_life_s=half_life or tuned["recency"]["best_decaying_s"],
        sequential=(tuned["sequential"]["sasrec_epochs"], tuned["sequential"]["weight"]),
    )
    replay_s = time.perf_counter() - t0

    columns = list(next(iter(rows.values())))
    print(f"\nquality (MovieLens, {len(split.test)} test users, temporal 80/20)\n")
    print("| model | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, metrics in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in metrics.values()) + " |")
    print(
        f"\nprequential HR@{k} ({replay['events']} events over {replay['days']} days after a "
        f"warm-up of {replay['warmup_events']})\n"
    )
    print(f"| strategy | hr@{k} |\n|---|---:|")
    for name, hr in replay["hr@10"].items():
        print(f"| {name} | {hr:.4f} |")
    print(f"\nsequential family's training cost: {seq_costs}")
    print(f"\ntuned on validation: {tuned}")
    if chart_path is not None:
        _chart(rows, replay["hr@10"], chart_path)
        print(f"(chart: {chart_path})")
    return write(
        json_path,
        "quality",
        {
            "users": len(split.test),
            "k": k,
            "tune_s": round(tune_s, 1),
            "prequential_s": round(replay_s, 1),
            "tuned": tuned,
            "models": rows,
            "prequential": replay["hr@10"],
            "sequential_cost": seq_costs,
            "prequential_events": replay["events"],
            "prequential_days": replay["days"],
        },
    )


def _chart(models: dict[str, dict[str, float]], replay: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(models)
    left.barh(names, [models[n]["ndcg@10"] for n in names], color="#4c72b0")
    left.set_title("NDCG@10, temporal 80/20 split")
    left.invert_yaxis()
    right.barh(list(replay), list(replay.values()), color="#55a868")
    right.set_title("HR@10, prequential replay")
    right.invert_yaxis()
    for ax in (left, right):
        for bar in ax.patches:
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {bar.get_width():.4f}",
                va="center",
                fontsize=8,
            )
    fig.suptitle("streamrec on MovieLens (dslabs, 100,004 ratings)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
