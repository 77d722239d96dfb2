"""`streamrec bench quality`: every model on the same MovieLens temporal split (last 20% of each
user's ratings held out), in one run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from models.als import ALSModel
from models.base import RecommenderModel
from models.baselines import EASEModel, ItemKNNModel, PopularityModel
from recommender.evaluation import evaluate, temporal_split
from recommender.history import clean_history, with_weights
from recommender.settings import Settings
from streamrec.bench.report import write
from streamrec.movielens import load_ratings


def run_quality(settings: Settings, k: int = 10, json_path: Path | None = None) -> dict[str, Any]:
    events, _ = clean_history(load_ratings())
    split = temporal_split(with_weights(events, settings))
    data = split.matrix()
    models: list[RecommenderModel] = [
        PopularityModel(),
        ItemKNNModel(),
        EASEModel(),
        ALSModel(
            settings.als_factors,
            settings.als_regularization,
            settings.als_iterations,
            settings.als_alpha,
        ),
    ]
    rows: dict[str, dict[str, float]] = {}
    for model in models:
        started = time.perf_counter()
        model.fit(data)
        fit_s = time.perf_counter() - started
        rows[model.name] = {**evaluate(model, split, k).as_dict(k), "fit_s": round(fit_s, 2)}
    header = f"{'model':<12}" + "".join(f"{c:>14}" for c in next(iter(rows.values())))
    print(f"\nquality (MovieLens, {len(split.test)} test users, temporal 80/20)\n{header}")
    for name, metrics in rows.items():
        print(f"{name:<12}" + "".join(f"{v:>14.4f}" for v in metrics.values()))
    return write(json_path, "quality", {"users": len(split.test), "k": k, "models": rows})
