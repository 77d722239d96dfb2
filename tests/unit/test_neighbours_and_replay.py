"""Item neighbours, the recent-items blend, and the prequential replay, on fixed small data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.als import ALSModel
from models.data import InteractionMatrix
from models.neighbours import item_neighbours, recent_scores
from recommender.evaluation.prequential import prequential
from recommender.evaluation.ranking import temporal_split, training_events
from tests.factories import ROMANCE, SCI_FI, clustered_interactions, clustered_matrix


@pytest.fixture(scope="module")
def data() -> InteractionMatrix:
    return clustered_matrix()


def test_neighbours_stay_in_their_cluster_and_are_capped(data):
    nb = item_neighbours(data, n=5)
    index = {str(i): n for n, i in enumerate(data.item_ids)}
    for item in SCI_FI[:3]:
        row = nb[index[item]]
        assert row.nnz == 5 and row[0, index[item]] == 0  # never its own neighbour
        assert {str(data.item_ids[j]) for j in row.indices} <= set(SCI_FI)


def test_recent_scores_weigh_newer_items_more(data):
    nb = item_neighbours(data, n=40)
    index = {str(i): n for n, i in enumerate(data.item_ids)}
    only_new = recent_scores(nb, index, [SCI_FI[0]], 0.5)
    both = recent_scores(nb, index, [SCI_FI[0], ROMANCE[0]], 0.5)
    assert only_new is not None and both is not None
    romance = [index[i] for i in ROMANCE[1:]]
    np.testing.assert_allclose(
        both[romance], 0.5 * np.asarray(nb[index[ROMANCE[0]]].toarray()).ravel()[romance]
    )
    assert recent_scores(nb, index, ["unknown"], 0.5) is None


def test_the_blend_follows_what_the_user_did_last(data, tmp_path: Path):
    model = ALSModel(factors=8, iterations=10, regularization=1.0, random_state=1, neighbours=20)
    model.fit(data)
    # A sci-fi fan whose latest item is romance: the blend pulls romance up, the factors alone not.
    history = {**{i: 1.0 for i in SCI_FI[:8]}, ROMANCE[0]: 1.0}
    plain, _ = model.recommend(history, 5, recent=[ROMANCE[0]])
    model.knn_weight = 2.0
    blended, _ = model.recommend(history, 5, recent=[ROMANCE[0]])
    assert sum(i in ROMANCE for i in blended) > sum(i in ROMANCE for i in plain)

    model.save(tmp_path / "m.npz")
    loaded = ALSModel.load(tmp_path / "m.npz")
    assert loaded.item_neighbours is not None
    assert (loaded.item_neighbours != model.item_neighbours).nnz == 0


def test_validation_is_carved_from_training_and_recent_is_newest_first():
    events = pd.DataFrame(
        {
            "user_id": ["u"] * 10,
            "item_id": [f"i{n}" for n in range(10)],
            "weight": [1.0] * 10,
            "ts": list(range(10)),
        }
    )
    split = temporal_split(events)
    assert split.test == {"u": {"i8", "i9"}}
    assert split.recent["u"][:3] == ["i7", "i6", "i5"]
    train = training_events(events)
    assert sorted(train["item_id"]) == [f"i{n}" for n in range(8)]
    assert temporal_split(train).test == {"u": {"i7"}}  # validation: never a test item


def test_prequential_streaming_beats_a_frozen_model_on_a_new_user():
    warm = [(e.user_id, e.item_id, 1.0, e.ts // 1000) for e in clustered_interactions()]
    later = max(t for *_, t in warm) + 30 * 86_400
    fan = [("newcomer", item, 1.0, later + n * 60) for n, item in enumerate(SCI_FI)]
    events = pd.DataFrame(warm + fan, columns=["user_id", "item_id", "weight", "ts"])
    params = {"factors": 8, "iterations": 10, "regularization": 1.0, "random_state": 1}
    result = prequential(events, params, recent_n=5, refit_growth=10.0, max_events=20)
    hr = result["hr@10"]
    assert result["events"] == 20 and result["days"] == 1
    assert hr["streamrec"] > hr["streamrec_frozen"]
    assert hr["streamrec_daily"] == hr["streamrec_frozen"]  # one day: never retrained


def test_a_new_item_is_placed_by_the_users_who_touched_it(data, tmp_path: Path):
    model = ALSModel(factors=8, iterations=10, regularization=1.0, random_state=1, neighbours=10)
    model.fit(data)
    fans = [{i: 1.0 for i in SCI_FI[n : n + 8]} for n in range(10)]
    vectors = model.user_vectors(fans)
    (factor,) = model.partial_fit_items([vectors], [np.ones(len(fans), dtype=np.float32)])
    extended = model.with_items(["scifi-new"], factor[None, :])
    assert extended.knows("scifi-new") and not model.knows("scifi-new")
    assert extended.item_neighbours is not None and extended.item_neighbours.shape == (41, 41)
    similar, _ = extended.similar_items("scifi-new", 5)
    assert set(similar) <= set(SCI_FI)
    ids, _ = extended.recommend({i: 1.0 for i in SCI_FI[:5]}, 3)
    assert "scifi-new" in ids  # a sci-fi fan gets it before any refit

    extended.save(tmp_path / "m.npz")
    saved, fitted = ALSModel.load(tmp_path / "m.npz").user_gramian, model.user_gramian
    assert saved is not None and fitted is not None
    np.testing.assert_allclose(saved, fitted)
