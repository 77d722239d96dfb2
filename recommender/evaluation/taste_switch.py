"""A change of taste, simulated: how many of a user's events in their new taste until half of
their top k is that taste, as the worker folds each event in (`with_recency` as every fit does).

A catalogue of taste clusters and a population that keeps to one each (ALS tells them apart);
then users with ``history`` events of one cluster, an event an hour, who switch to another.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

from models.als import ALSModel
from models.data import InteractionMatrix
from recommender.weights import with_recency

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TasteSwitch:
    clusters: int = 4
    items_per_cluster: int = 500
    population: int = 1000  # users who keep to one cluster, for the fit
    users: int = 20  # users who switch
    history: int = 200  # their events before the switch
    k: int = 10
    max_events: int = 400  # events of the new taste given up after
    seed: int = 0

    def catalogue(self, cluster: int) -> list[str]:
        return [f"c{cluster}-{i}" for i in range(self.items_per_cluster)]


def _model(sim: TasteSwitch, rng: random.Random) -> ALSModel:
    users, histories = [], []
    for u in range(sim.population):
        items = sim.catalogue(u % sim.clusters)
        users.append(f"p{u}")
        histories.append(dict.fromkeys(rng.sample(items, 40), 1.0))
    model = ALSModel(factors=16, iterations=10, regularization=1.0, random_state=sim.seed)
    model.fit(InteractionMatrix.from_histories(users, histories))
    return model


class _User:
    """A switching user's history and items' times, as the feature store keeps them."""

    def __init__(self) -> None:
        self.history: dict[str, float] = {}
        self.times: dict[str, int] = {}  # item -> newest event on it
        self._ts = 0

    def event(self, item: str) -> None:
        self._ts += HOUR_MS
        self.history[item] = self.history.get(item, 0.0) + 1.0
        self.times[item] = self._ts


def events_to_new_taste(sim: TasteSwitch, half_life_s: float) -> float:
    """The median, over ``sim.users``, of new-taste events folded in until half of the top k
    is the new taste (``sim.max_events`` for a user it never reached)."""
    rng = random.Random(sim.seed)
    model = _model(sim, rng)
    counts = []
    for u in range(sim.users):
        old, new = u % sim.clusters, (u + 1) % sim.clusters
        user = _User()
        for _ in range(sim.history):
            user.event(rng.choice(sim.catalogue(old)))
        target = set(sim.catalogue(new))
        n = sim.max_events
        for m in range(1, sim.max_events + 1):
            user.event(rng.choice(sim.catalogue(new)))
            weighted = with_recency(user.history, user.times, half_life_s)
            vector = model.user_vectors([weighted])[0]
            ids, _ = model.recommend_vector(vector, sim.k, set(user.history))
            if sum(str(i) in target for i in ids) * 2 >= sim.k:
                n = m
                break
        counts.append(n)
    return float(statistics.median(counts))
