import math

import numpy as np
import pandas as pd
import pytest

from models.base import RecommenderModel
from recommender.evaluation.ranking import Split, evaluate, temporal_split


class FixedRanking(RecommenderModel):
    """Returns the same ranking for everyone: the metrics are then computable by hand."""

    name = "fixed"

    def __init__(self, ranking: list[str]) -> None:
        self.ranking = ranking

    def fit(self, data):  # pragma: no cover - not needed
        pass

    def recommend(self, history, k, exclude=(), recent=()):
        ids = [i for i in self.ranking if i not in history][:k]
        return np.asarray(ids), np.ones(len(ids), dtype=np.float32)

    def similar_items(self, item_id, k):  # pragma: no cover
        raise NotImplementedError

    def save(self, path):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def load(cls, path):  # pragma: no cover
        raise NotImplementedError


def test_metrics_match_a_hand_computation():
    split = Split(train={"u": {"seen": 1.0}, "v": {"x": 1.0}}, test={"u": {"a", "c"}, "v": {"z"}})
    m = evaluate(FixedRanking(["a", "b", "c", "d"]), split, k=3)
    # u: hits at ranks 1 and 3; v: no hit.
    ndcg_u = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m.precision == pytest.approx((2 / 3 + 0) / 2)
    assert m.recall == pytest.approx((1.0 + 0) / 2)
    assert m.ndcg == pytest.approx(ndcg_u / 2)
    assert m.map == pytest.approx(((1 + 2 / 3) / 2) / 2)
    assert m.coverage == pytest.approx(3 / 2)  # recommended a, b, c; catalogue {seen, x}


def test_temporal_split_holds_out_each_users_latest_fifth():
    events = pd.DataFrame(
        {
            "user_id": ["u"] * 10 + ["short"] * 3,
            "item_id": [f"i{n}" for n in range(10)] + ["a", "b", "c"],
            "weight": 1.0,
            "ts": [*range(10, 0, -1), 1, 2, 3],  # u's items arrive newest first
        }
    )
    split = temporal_split(events)
    assert split.test == {"u": {"i0", "i1"}}  # the two latest by time
    assert set(split.train["u"]) == {f"i{n}" for n in range(2, 10)}
    assert "short" not in split.test and set(split.train["short"]) == {"a", "b", "c"}
