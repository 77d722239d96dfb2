"""Offline evaluation: a per-user temporal split and top-k ranking metrics.

Every model is measured on the same split, with the same histories, in the same run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from models.base import Ranked
from models.data import InteractionMatrix
from recommender.weights import with_recency

if TYPE_CHECKING:  # the worker imports this module; pandas would add a quarter second to its start
    import pandas as pd

Histories = dict[str, dict[str, float]]


class Ranker(Protocol):
    """What `evaluate` asks of a model: `RecommenderModel.recommend`."""

    def recommend(
        self,
        history: Mapping[str, float],
        k: int,
        exclude: Iterable[str] = (),
        recent: Sequence[str] = (),
    ) -> Ranked: ...


#: Recent items kept per user, as the feature store keeps them (`recent_items`).
RECENT_ITEMS = 50


@dataclass(frozen=True)
class Split:
    train: Histories
    test: dict[str, set[str]]
    #: Each user's latest training items, newest first (for models that use order).
    recent: dict[str, list[str]] = field(default_factory=dict)
    #: Each user's newest training event on each item (epoch ms), as the feature store keeps
    #: it: the ages `with_recency` weighs by.
    times: dict[str, dict[str, int]] = field(default_factory=dict)

    def matrix(self, half_life_s: float = 0.0) -> InteractionMatrix:
        """The training histories, decayed by age when ``half_life_s`` (`with_recency`)."""
        users = sorted(self.train)
        return InteractionMatrix.from_histories(
            users, [with_recency(self.train[u], self.times.get(u, {}), half_life_s) for u in users]
        )


@dataclass(frozen=True)
class RankingMetrics:
    precision: float
    recall: float
    ndcg: float
    map: float
    coverage: float

    def as_dict(self, k: int) -> dict[str, float]:
        return {
            f"{name}@{k}" if name != "coverage" else name: round(value, 4)
            for name, value in asdict(self).items()
        }


def temporal_split(events: pd.DataFrame, test_fraction: float = 0.2, min_events: int = 5) -> Split:
    """Each user's last ``test_fraction`` of events (by time) is their test set.

    ``events`` has columns user_id, item_id, weight, ts. Users with fewer than ``min_events``
    events stay whole in training; test items the user already had in training are dropped.
    """
    df = events.sort_values(["user_id", "ts"], kind="stable")
    in_test = _latest(df, test_fraction, min_events)
    train: Histories = {}
    for user, item, weight in df.loc[~in_test, ["user_id", "item_id", "weight"]].itertuples(
        index=False, name=None
    ):
        cell = train.setdefault(str(user), {})
        cell[str(item)] = cell.get(str(item), 0.0) + float(weight)
    test: dict[str, set[str]] = {}
    for user, item in df.loc[in_test, ["user_id", "item_id"]].itertuples(index=False, name=None):
        if str(item) not in train.get(str(user), {}):
            test.setdefault(str(user), set()).add(str(item))
    recent: dict[str, list[str]] = {}
    times: dict[str, dict[str, int]] = {}
    to_ms = 1 if len(df) and df["ts"].max() > 10**11 else 1000
    for user, rows in df.loc[~in_test].groupby("user_id")[["item_id", "ts"]]:
        in_order = [(str(i), int(t) * to_ms) for i, t in rows.itertuples(index=False)]
        recent[str(user)] = list(dict.fromkeys(i for i, _ in reversed(in_order)))[:RECENT_ITEMS]
        times[str(user)] = dict(in_order)  # each item's newest: they are in time order
    return Split(train, {u: items for u, items in test.items() if u in train}, recent, times)


def _latest(df: pd.DataFrame, fraction: float, min_events: int) -> pd.Series:
    """Mask of each user's latest ``fraction`` of events (``df`` sorted by user, then time)."""
    position = df.groupby("user_id").cumcount()
    size = df.groupby("user_id")["item_id"].transform("size")
    n_test = (size * fraction).astype(int)
    return (size >= min_events) & (position >= size - n_test)


def training_events(
    events: pd.DataFrame, test_fraction: float = 0.2, min_events: int = 5
) -> pd.DataFrame:
    """The events `temporal_split` trains on: split them again to carve a validation set, so
    that hyper-parameters are never chosen on the test set."""
    df = events.sort_values(["user_id", "ts"], kind="stable")
    return df.loc[~_latest(df, test_fraction, min_events)]


def evaluate(model: Ranker, split: Split, k: int = 10) -> RankingMetrics:
    """Precision, recall, NDCG and MAP at k averaged over test users; catalogue coverage."""
    catalogue = {i for h in split.train.values() for i in h}
    recommended: set[str] = set()
    sums = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    for user, relevant in split.test.items():
        ids, _ = model.recommend(split.train[user], k, recent=split.recent.get(user, ()))
        ranked = [str(i) for i in ids]
        recommended.update(ranked)
        for name, value in _user_metrics(ranked, relevant, k).items():
            sums[name] += value
    n = max(len(split.test), 1)
    return RankingMetrics(
        **{name: total / n for name, total in sums.items()},
        coverage=len(recommended) / max(len(catalogue), 1),
    )


def _user_metrics(ranked: list[str], relevant: set[str], k: int) -> Mapping[str, float]:
    hits = [item in relevant for item in ranked[:k]]
    dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    precisions = [sum(hits[: rank + 1]) / (rank + 1) for rank, hit in enumerate(hits) if hit]
    return {
        "precision": sum(hits) / k,
        "recall": sum(hits) / len(relevant),
        "ndcg": dcg / ideal if ideal else 0.0,
        "map": sum(precisions) / min(len(relevant), k),
    }


def forward_split(
    histories: Mapping[str, Mapping[str, float]],
    new_items: Mapping[str, set[str]],
    min_train: int = 2,
) -> Split:
    """Test on what users did after a point in time: ``new_items`` (user -> items touched since)
    leave the users' training histories and become their test sets. Users left with fewer than
    ``min_train`` training items are not tested."""
    train: dict[str, dict[str, float]] = {}
    test: dict[str, set[str]] = {}
    for user, history in histories.items():
        held = new_items.get(user, set()) & set(history)
        train[user] = {i: w for i, w in history.items() if i not in held}
        if held and len(train[user]) >= min_train:
            test[user] = held
    return Split(train, test)


def sequences(events: pd.DataFrame) -> list[list[str]]:
    """Each user's items in time order, oldest first: what a sequential model trains on."""
    df = events.sort_values(["user_id", "ts"], kind="stable")
    return [[str(i) for i in items] for _, items in df.groupby("user_id")["item_id"]]
