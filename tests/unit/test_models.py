"""Contract tests for the models, on a tiny fixed data set with a fixed seed."""

from pathlib import Path

import numpy as np
import pytest

from models.als import ALSModel
from models.base import top_k
from models.baselines import EASEModel, ItemKNNModel, PopularityModel
from models.data import InteractionMatrix
from models.errors import ModelNotFoundError
from models.registry import ModelRegistry
from models.solvers import CG_MIN_ITEMS
from tests.factories import ROMANCE, SCI_FI, clustered_matrix


@pytest.fixture(scope="module")
def data() -> InteractionMatrix:
    return clustered_matrix()


@pytest.fixture(scope="module")
def model(data: InteractionMatrix) -> ALSModel:
    m = ALSModel(factors=8, iterations=10, regularization=1.0, random_state=1)
    m.fit(data)
    return m


def test_matrix_sums_duplicates_and_indexes_items(data: InteractionMatrix):
    assert data.matrix.shape == (60, 40)
    assert data.nnz == 600
    m = InteractionMatrix.from_histories(["u"], [{"x": 1.0, "y": 2.0}])
    assert m.item_ids.tolist() == ["x", "y"]


def test_recommends_from_the_users_taste_and_skips_history(model: ALSModel):
    history = {item: 1.0 for item in SCI_FI[:6]}
    ids, scores = model.recommend(history, 5)
    assert len(ids) == 5
    assert set(ids) <= set(SCI_FI[6:])
    assert list(scores) == sorted(scores, reverse=True)


def test_exclude_is_honoured(model: ALSModel):
    history = {item: 1.0 for item in ROMANCE[:6]}
    first, _ = model.recommend(history, 3)
    again, _ = model.recommend(history, 3, exclude=first)
    assert not set(first) & set(again)


def test_items_unknown_to_the_model_are_ignored_in_a_history(model: ALSModel):
    ids, _ = model.recommend({"brand-new": 1.0, SCI_FI[0]: 1.0}, 3)
    assert set(ids) <= set(SCI_FI)


def test_similar_items_stay_in_the_cluster(model: ALSModel):
    ids, _ = model.similar_items(ROMANCE[0], 5)
    assert ROMANCE[0] not in ids
    assert set(ids) <= set(ROMANCE)
    assert model.similar_items("nope", 3)[0].size == 0


def test_save_load_round_trip_without_pickle(model: ALSModel, tmp_path: Path):
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = ALSModel.load(path)
    history = {item: 1.0 for item in SCI_FI[:4]}
    np.testing.assert_array_equal(model.recommend(history, 5)[0], loaded.recommend(history, 5)[0])
    with np.load(path, allow_pickle=False) as npz:
        assert npz["item_factors"].dtype == np.float32


def test_registry_versions_and_metadata(model: ALSModel, tmp_path: Path):
    registry = ModelRegistry(tmp_path, {"cf": ALSModel}).family("cf")
    v1 = registry.save(model, {"watermark": 10})
    v2 = registry.save(model, {"watermark": 20})
    assert registry.versions() == sorted([v1, v2])
    assert registry.metadata(v2)["watermark"] == 20
    assert registry.load(v1).item_ids.tolist() == model.item_ids.tolist()
    with pytest.raises(ModelNotFoundError):
        registry.load("missing")


def test_top_k_masks_excluded_and_handles_small_catalogues():
    ids = np.asarray(["a", "b", "c"])
    scores = np.asarray([0.1, 0.9, 0.5], dtype=np.float32)
    assert top_k(ids, scores, 2)[0].tolist() == ["b", "c"]
    assert top_k(ids, scores, 5, [1])[0].tolist() == ["c", "a"]
    assert top_k(ids, scores, 5, [0, 1, 2])[0].size == 0


@pytest.mark.parametrize("cls", [ItemKNNModel, EASEModel])
def test_batch_baselines_honour_the_contract(cls, data: InteractionMatrix, tmp_path: Path):
    model = cls()
    model.fit(data)
    history = {item: 1.0 for item in SCI_FI[:6]}
    ids, scores = model.recommend(history, 5)
    assert len(ids) == 5 and set(ids) <= set(SCI_FI[6:])
    assert list(scores) == sorted(scores, reverse=True)
    similar, _ = model.similar_items(ROMANCE[0], 3)
    assert set(similar) <= set(ROMANCE[1:])
    model.save(tmp_path / "m.npz")
    again = cls.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.recommend(history, 5)[0], ids)


def test_popularity_is_the_same_for_everyone_and_skips_history(data: InteractionMatrix):
    model = PopularityModel()
    model.fit(data)
    a, _ = model.recommend({}, 3)
    b, _ = model.recommend({str(a[0]): 1.0}, 3)
    assert str(a[0]) not in b and list(a[1:]) == list(b[:2])


def test_long_histories_are_solved_as_closely_as_the_exact_solve():
    """Histories of CG_MIN_ITEMS or more go through conjugate gradient: the same vectors as
    implicit's exact solve, within float32 noise, and in the order the users were given."""
    rng = np.random.default_rng(3)
    items = np.asarray([f"i{n}" for n in range(600)])
    factors = rng.normal(0, 0.3, (600, 32)).astype(np.float32)
    model = ALSModel.from_factors(items, factors, factors=32, regularization=10.0, alpha=0.25)
    long_one = {str(i): float(rng.integers(1, 6)) for i in rng.choice(items, CG_MIN_ITEMS + 150)}
    short_one = {str(i): float(rng.integers(1, 6)) for i in rng.choice(items, 20)}
    histories = [short_one, long_one, short_one]

    solved = model.user_vectors(histories)

    exact = model._exact(model._history_rows(histories))
    assert np.abs(exact[0] - exact[2]).max() == 0
    assert np.linalg.norm(solved[1] - exact[1]) <= 1e-3 * np.linalg.norm(exact[1])
    np.testing.assert_array_equal(solved[[0, 2]], exact[[0, 2]])
    np.testing.assert_array_equal(model.user_vectors([long_one])[0], solved[1])
