"""History and catalogue files: every valid row kept with its ids exactly as written, every
invalid one reported by line and reason (issue: a newcomer's first hour, findings 1 and 2)."""

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from models.pixels import encode_png
from recommender.errors import InvalidRecordError
from streamrec.importing import ImportFileError, read_history, read_items, read_table
from streamrec.ratings_csv import BAD_TIMESTAMP, clean_history


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
    # no user; a rating without its value
    assert [(r.line, r.reason) for r in report.rejects] == [
        (5, "rating without a value"),
        (6, "missing user"),
    ]
    assert report.duplicate_lines == [3]
    assert report.events == len(events) == 3
    assert list(events["ts"]) == [50_000, 100_000, 300_000]  # seconds became milliseconds
    assert list(events["type"]) == ["rating"] * 3
    assert list(events["user_id"]) == ["3", "2", "1"]  # a float column's ids lose pandas' .0
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
    assert [r.reason for r in report.rejects] == [BAD_TIMESTAMP]
    second, _ = clean_history(raw)
    assert first["event_id"].tolist() == second["event_id"].tolist()
    assert first["ts"].iloc[0] == 1_704_067_200_000


def test_unknown_event_types_are_dropped_and_counted():
    raw = pd.DataFrame(
        {"user": ["a", "b"], "item": ["x", "y"], "type": ["click", "like"], "timestamp": [1, 2]}
    )
    events, report = clean_history(raw)
    assert [(r.line, r.value) for r in report.rejects] == [(3, "like")]
    assert report.rejects[0].reason.startswith("unknown event type")
    assert events["user_id"].tolist() == ["a"]


def test_missing_columns_are_a_clear_error():
    with pytest.raises(InvalidRecordError, match="timestamp"):
        clean_history(pd.DataFrame({"user": [1], "item": [2], "rating": [3]}))


def _write(path: Path, rows: list[list[str]], header=("userId", "movieId", "rating", "timestamp")):
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)
    return path


def test_ids_are_kept_exactly_as_written_even_beside_a_blank_cell(tmp_path):
    """Finding 1: one blank id cell turned every id into a float string; 007 became 7."""
    ids = ["1", "318", "007", "1e5", "12345678901234567890", "0x1F", "1.0"]
    rows = [[u, u, "4", "1260759144"] for u in ids] + [["", "9", "4", "1260759144"]]
    events, report = read_history(_write(tmp_path / "r.csv", rows), rating_scale=5)
    assert sorted(events["user_id"]) == sorted(ids)
    assert sorted(events["item_id"]) == sorted(ids)
    assert [(r.line, r.reason) for r in report.rejects] == [(9, "missing user")]


def test_one_bad_cell_drops_only_its_row_and_ratings_respect_the_scale(tmp_path):
    """Finding 2: one bad timestamp dropped all 1,001 rows; `five`, `50` and `-3` passed."""
    rows = [[str(u), str(u % 50), "4", str(1_260_000_000 + u)] for u in range(1000)]
    rows += [
        ["a", "1", "4", "yesterday"],
        ["b", "1", "five", "1260000000"],
        ["c", "1", "50", "1260000000"],
        ["d", "1", "-3", "1260000000"],
    ]
    events, report = read_history(_write(tmp_path / "r.csv", rows), rating_scale=5)
    assert len(events) == 1000
    reasons = {r.line: r.reason for r in report.rejects}
    assert reasons == {
        1002: BAD_TIMESTAMP,
        1003: "rating or value is not a number",
        1004: "rating outside 0 to 5 (STREAMREC_RATING_SCALE)",
        1005: "rating outside 0 to 5 (STREAMREC_RATING_SCALE)",
    }
    assert any("line 1004, 1005" in line for line in report.describe())


def test_rows_of_the_wrong_shape_and_bad_bytes_are_reported_by_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(
        b"user,item,rating,timestamp\n"
        b"u1,i1,4,1260000000\n"
        b"u2,i2,4\n"
        b'"u3\nstill u3",i3,4,1260000000\n'
        b"u\xff,i4,4,1260000000\n"
        b"u5,i5,4,1260000000\n"
    )
    events, report = read_history(path, rating_scale=5)
    assert events["user_id"].tolist() == ["u1", "u5"]
    assert [(r.line, r.reason.split(" (")[0]) for r in report.rejects] == [
        (3, "3 fields where the header has 4"),
        (4, "user is not a valid id"),  # a newline inside an id
        (6, "not UTF-8 text"),
    ]


def test_empty_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ImportFileError, match="is empty"):
        read_table(tmp_path / "empty.csv")
    with pytest.raises(ImportFileError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ImportFileError, match="needs columns user, item, timestamp"):
        read_history(tmp_path / "wrong.csv", 5)


def test_a_catalogue_file_becomes_content_items(tmp_path):
    png = encode_png(np.zeros((8, 8), dtype=np.uint8))
    (tmp_path / "poster.png").write_bytes(png)
    path = _write(
        tmp_path / "items.csv",
        [
            ["007", "Toy Story (1995)", "Animation|Children", "toys come alive", "poster.png"],
            ["2", "", "Drama", "", ""],
            ["3", "Heat (1995)", "Action|" + "x" * 101, "", ""],
            ["4", "Jumanji", "", "", "missing.png"],
        ],
        header=("movieId", "title", "genres", "description", "image"),
    )
    items, report = read_items(path, now_ms=5)
    assert [(i.item_id, i.title, i.categories, i.text, i.ts) for i in items] == [
        ("007", "Toy Story (1995)", ["Animation", "Children"], "toys come alive", 5)
    ]
    assert items[0].image is not None
    assert [r.line for r in report.rejects] == [3, 4, 5]
    assert report.rejects[0].reason.startswith("title:")
    assert "cannot read" in report.rejects[2].reason


# Cells a hostile or sloppy export produces: blanks, padding, numbers pandas would reinterpret,
# separators, quotes, newlines, control characters, other scripts.
hostile = st.one_of(
    st.sampled_from(["", " ", "nan", "NULL", "1.0", "007", "1e5", "-0", "inf", "|", ",", '"']),
    st.text(max_size=12),
    st.integers(-(10**22), 10**22).map(str),
)
good_id = st.from_regex(r"\A[A-Za-z0-9._:-]{1,12}\Z")
good_row = st.tuples(
    good_id,
    good_id,
    st.sampled_from(["0", "0.5", "3", "4.5", "5"]),
    st.integers(0, 4_000_000_000).map(str),
)
any_row = st.one_of(good_row, st.tuples(hostile, hostile, hostile, hostile))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(any_row, min_size=1, max_size=40))
def test_every_valid_row_is_kept_unchanged_and_every_other_reported(tmp_path_factory, rows):
    path = _write(tmp_path_factory.mktemp("csv") / "r.csv", [list(r) for r in rows])
    events, report = read_history(path, rating_scale=5)
    expected: dict[tuple[str, str, int], int] = {}
    for line, (user, item, rating, ts) in enumerate(rows, start=2):
        if "\n" in user + item + rating + ts or "\r" in user + item + rating + ts:
            continue  # the line arithmetic below assumes one line per row
        if _valid(user, item, rating, ts):
            expected.setdefault((user.strip(), item.strip(), _millis(ts)), line)
    columns = zip(events["user_id"], events["item_id"], events["ts"], strict=True)
    kept = {(u, i, int(t)) for u, i, t in columns}
    assert set(expected) <= kept
    accounted = len(events) + len(report.rejects) + len(report.duplicate_lines)
    assert accounted == report.rows_read == len(rows)
    assert all(r.reason for r in report.rejects)


def _valid(user: str, item: str, rating: str, ts: str) -> bool:
    import re

    from recommender.types import ID_PATTERN

    ids_ok = all(re.match(ID_PATTERN, x.strip()) and len(x.strip()) <= 128 for x in (user, item))
    try:
        r, t = float(rating), float(ts)
    except ValueError:
        return False
    return bool(ids_ok) and 0 <= r <= 5 and math.isfinite(t) and 0 <= _millis(ts) <= 10**13


def _millis(ts: str) -> int:
    t = float(ts)
    return round(t * 1000 if t < 1e11 else t)
