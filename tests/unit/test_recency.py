"""Recency in every fit (`recommender.weights.with_recency`): an interaction's confidence
halves every half-life, counted back from the user's newest event."""

from __future__ import annotations

import pytest

from models.als import ALSModel
from recommender.weights import with_recency
from tests.factories import ROMANCE, SCI_FI, clustered_matrix

DAY_MS = 86_400_000


def test_no_half_life_leaves_the_history_as_it_is():
    history = {"a": 2.0, "b": 1.0}
    assert with_recency(history, {"a": 10 * DAY_MS, "b": 0}, 0) == history


def test_confidence_halves_every_half_life_back_from_the_users_newest_event():
    times = {"new": 30 * DAY_MS, "mid": 20 * DAY_MS, "old": 10 * DAY_MS}
    history = {"new": 2.0, "mid": 1.0, "old": 1.0, "unknown": 4.0}
    got = with_recency(history, times, half_life_s=10 * 86_400)
    assert got["new"] == pytest.approx(2.0)  # its newest event is the user's newest
    assert got["mid"] == pytest.approx(0.5)
    assert got["old"] == pytest.approx(0.25)
    assert got["unknown"] == pytest.approx(1.0)  # no time kept (older data): the oldest age


def test_decay_moves_a_user_to_their_new_taste():
    """Ten romance items long ago, then three sci-fi ones: with equal weights the fold-in
    still sees a romance fan; with a half-life of a week, a sci-fi fan."""
    model = ALSModel(factors=8, iterations=10, regularization=1.0, random_state=1)
    model.fit(clustered_matrix())
    old = [(item, n * DAY_MS) for n, item in enumerate(ROMANCE[:10])]
    new = [(item, (100 + n) * DAY_MS) for n, item in enumerate(SCI_FI[:3])]
    times = dict(old + new)
    history = dict.fromkeys(times, 1.0)

    def top(h: dict[str, float]) -> set[str]:
        ids, _ = model.recommend(h, 5)
        return set(ids)

    assert top(history) <= set(ROMANCE)
    assert top(with_recency(history, times, half_life_s=7 * 86_400)) <= set(SCI_FI)
