"""A change of taste, simulated: how many of a user's events in their new taste until half of
their top k is that taste, as the worker folds each event in (`with_recency` as every fit does),
and as serving ranks: ALS alone, or the chain (blended with the neighbours of the latest items),
with or without the sequential family.

A catalogue of taste clusters and a population that keeps to one each (ALS tells them apart);
then users with ``history`` events of one cluster, an event an hour, who switch to another.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.als import ALSModel
from models.data import InteractionMatrix
from recommender.weights import with_recency

if TYPE_CHECKING:
    from models.sequential import SequentialModel

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


#: The chain's blend: (the neighbours' weight, their decay by rank, how many latest items).
Blend = tuple[float, float, int]
#: Neighbours kept per item when the chain is simulated.
NEIGHBOURS = 100
#: The simulated SASRec's epochs over the population (its loss flattens by then).
SASREC_EPOCHS = 10


def _population(sim: TasteSwitch, rng: random.Random) -> list[list[str]]:
    """The users who keep to one cluster: 40 of its items each, in the order they came."""
    return [rng.sample(sim.catalogue(u % sim.clusters), 40) for u in range(sim.population)]


def _model(sim: TasteSwitch, population: list[list[str]], neighbours: int = 0) -> ALSModel:
    users = [f"p{u}" for u in range(len(population))]
    model = ALSModel(
        factors=16, iterations=10, regularization=1.0, random_state=sim.seed, neighbours=neighbours
    )
    model.fit(InteractionMatrix.from_histories(users, [dict.fromkeys(h, 1.0) for h in population]))
    return model


def _sasrec(population: list[list[str]]) -> SequentialModel:
    """A small SASRec trained on the population's orders (torch is imported for it only)."""
    from models.sequential import SequentialModel

    model = SequentialModel(dim=32, max_len=20)
    model.fit(population, SASREC_EPOCHS)
    return model


class _User:
    """A switching user's history and items' times, as the feature store keeps them."""

    def __init__(self) -> None:
        self.history: dict[str, float] = {}
        self.times: dict[str, int] = {}  # item -> newest event on it
        self.recent: list[str] = []  # newest first
        self._ts = 0

    def event(self, item: str) -> None:
        self._ts += HOUR_MS
        self.history[item] = self.history.get(item, 0.0) + 1.0
        self.times[item] = self._ts
        self.recent = [item, *(i for i in self.recent if i != item)][:50]


def events_to_new_taste(
    sim: TasteSwitch, half_life_s: float, blend: Blend | None = None, sequential: float = 0.0
) -> float:
    """The median, over ``sim.users``, of new-taste events folded in until half of the top k
    is the new taste (``sim.max_events`` for a user it never reached); ranked by ALS alone, or
    with ``blend`` by the chain, and with ``sequential`` (a weight) a SASRec blended in."""
    rng = random.Random(sim.seed)
    population = _population(sim, rng)
    model = _model(sim, population, NEIGHBOURS if blend else 0)
    seq = _sasrec(population) if sequential > 0 else None
    index = seq.index_of(model.item_ids) if seq is not None else None
    knn_weight, decay, recent_n = blend or (0.0, 0.0, 0)
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
            sequence = None
            if seq is not None and index is not None:
                (scores,) = seq.aligned([user.recent], index)
                sequence = None if scores is None else (scores, sequential)
            ids, _ = model.recommend_vector(
                vector, sim.k, set(user.history), None, user.recent[:recent_n], knn_weight,
                decay, sequence,
            )  # fmt: skip
            if sum(str(i) in target for i in ids) * 2 >= sim.k:
                n = m
                break
        counts.append(n)
    return float(statistics.median(counts))
