"""Model families side by side in one registry: each saved and loaded by its own class."""

from pathlib import Path

import numpy as np
import pytest

from models.als import ALSModel
from models.baselines import PopularityModel
from models.registry import ModelRegistry, UnknownFamilyError
from tests.factories import SCI_FI, clustered_matrix


def test_two_families_round_trip_side_by_side(tmp_path: Path):
    data = clustered_matrix()
    als = ALSModel(factors=8, iterations=5, regularization=1.0)
    als.fit(data)
    pop = PopularityModel()
    pop.fit(data)
    registry = ModelRegistry(tmp_path, {"cf": ALSModel, "pop": PopularityModel})
    v_cf = registry.family("cf").save(als, {"watermark": 1})
    v_pop = registry.family("pop").save(pop, {"watermark": 2})
    assert registry.family("cf").versions() == [v_cf]
    assert registry.family("pop").versions() == [v_pop]
    assert registry.family("pop").metadata(v_pop)["family"] == "pop"
    loaded = registry.family("cf").load(v_cf)
    assert isinstance(loaded, ALSModel)
    history = {item: 1.0 for item in SCI_FI[:4]}
    np.testing.assert_array_equal(loaded.recommend(history, 5)[0], als.recommend(history, 5)[0])
    assert isinstance(registry.family("pop").load(v_pop), PopularityModel)
    with pytest.raises(UnknownFamilyError, match="known: cf, pop"):
        registry.family("image")
