import pandas as pd
import pytest

from recommender.errors import InvalidRecordError
from recommender.history import clean_history


def test_movielens_shaped_ratings_are_cleaned_and_time_ordered():
    raw = pd.DataFrame(
        {
            "userId": [1, 1, 2, 2, None, 3],
            "movieId": [10, 10, 20, 30, 40, 50],
            "rating": [4.0, 4.0, 3.5, None, 5.0, 2.0],
            "timestamp": [300, 300, 100, 200, 400, 50],
        }
    )
    events, report = clean_history(raw)
    assert report.rows_read == 6
    assert report.missing_dropped == 2  # no user; a rating without its value
    assert report.duplicates_dropped == 1
    assert report.events == len(events) == 3
    assert list(events["ts"]) == [50_000, 100_000, 300_000]  # seconds became milliseconds
    assert list(events["type"]) == ["rating"] * 3
    assert events["event_id"].is_unique


def test_event_ids_are_derived_from_content_so_reimport_is_idempotent():
    raw = pd.DataFrame(
        {
            "user": ["a", "b"],
            "item": ["x", "y"],
            "type": ["click", "view"],
            "timestamp": ["2024-01-01T00:00:00Z", "not a date"],
        }
    )
    first, report = clean_history(raw)
    assert report.missing_dropped == 1
    second, _ = clean_history(raw)
    assert first["event_id"].tolist() == second["event_id"].tolist()
    assert first["ts"].iloc[0] == 1_704_067_200_000


def test_unknown_event_types_are_dropped_and_counted():
    raw = pd.DataFrame(
        {"user": ["a", "b"], "item": ["x", "y"], "type": ["click", "like"], "timestamp": [1, 2]}
    )
    events, report = clean_history(raw)
    assert report.invalid_dropped == 1
    assert events["user_id"].tolist() == ["a"]


def test_missing_columns_are_a_clear_error():
    with pytest.raises(InvalidRecordError, match="timestamp"):
        clean_history(pd.DataFrame({"user": [1], "item": [2], "rating": [3]}))
