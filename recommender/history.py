"""Tabular history (a `ratings.csv`) cleaned into events: missing values and duplicates dropped.

Event ids are derived from the row's content, so importing the same file twice applies nothing
new: the feature store's dedupe drops the replay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from recommender.errors import InvalidRecordError
from recommender.settings import Settings
from recommender.types import EVENT_TYPES, Interaction
from recommender.weights import event_weight

#: Column names we accept, mapped to ours.
ALIASES = {
    "user": "user",
    "userid": "user",
    "user_id": "user",
    "item": "item",
    "itemid": "item",
    "item_id": "item",
    "movieid": "item",
    "movie_id": "item",
    "rating": "rating",
    "value": "rating",
    "type": "type",
    "event_type": "type",
    "timestamp": "timestamp",
    "ts": "timestamp",
    "time": "timestamp",
}


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows_read: int
    missing_dropped: int
    invalid_dropped: int
    duplicates_dropped: int

    @property
    def events(self) -> int:
        return (
            self.rows_read - self.missing_dropped - self.invalid_dropped - self.duplicates_dropped
        )


def _to_epoch_ms(ts: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(ts):
        # Seconds until 2286 stay below 1e10; anything larger is already milliseconds.
        return (ts * 1000 if ts.max() < 1e11 else ts).astype("int64")
    parsed = pd.to_datetime(ts, utc=True, errors="coerce")
    # pandas picks the parsed resolution (s, ms, ns); pin it to milliseconds.
    valid = parsed.notna()
    millis = parsed[valid].dt.as_unit("ms").astype("int64")
    return millis.reindex(ts.index)  # unparseable dates become NaN, dropped as missing


def _event_id(row: tuple[str, str, str, int]) -> str:
    return "imp-" + hashlib.sha256("\x1f".join(map(str, row)).encode()).hexdigest()[:24]


def clean_history(raw: pd.DataFrame) -> tuple[pd.DataFrame, ImportReport]:
    """Normalise a history table to columns event_id, user_id, item_id, type, value, ts.

    Rows with a missing user, item, timestamp (or rating, where the table has no `type`) are
    dropped and counted, as are unknown event types and duplicate rows. The result is in
    time order.
    """
    df = raw.rename(columns=lambda c: ALIASES.get(str(c).strip().lower(), str(c)))
    missing_cols = {"user", "item", "timestamp"} - set(df.columns)
    if missing_cols or not ({"rating", "type"} & set(df.columns)):
        raise InvalidRecordError(
            f"history needs columns user, item, timestamp and rating or type; "
            f"missing {sorted(missing_cols) or ['rating or type']}"
        )
    rows_read = len(df)
    if "type" not in df.columns:
        df = df.assign(type="rating")
    if "rating" not in df.columns:
        df = df.assign(rating=float("nan"))
    df = df.assign(type=df["type"].astype(str).str.strip().str.lower())
    df = df.dropna(subset=["user", "item", "timestamp"])
    df = df[~((df["type"] == "rating") & df["rating"].isna())]  # a rating without its value
    df = df.assign(timestamp=_to_epoch_ms(df["timestamp"])).dropna(subset=["timestamp"])
    missing = rows_read - len(df)

    valid = df["type"].isin(EVENT_TYPES)
    invalid = int((~valid).sum())
    df = df[valid]

    out = pd.DataFrame(
        {
            "user_id": df["user"].astype(str).str.strip(),
            "item_id": df["item"].astype(str).str.strip(),
            "type": df["type"],
            "value": pd.to_numeric(df["rating"], errors="coerce"),
            "ts": df["timestamp"].astype("int64"),
        }
    )
    before = len(out)
    out = out.drop_duplicates(subset=["user_id", "item_id", "type", "ts"])
    duplicates = before - len(out)
    out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    out.insert(
        0,
        "event_id",
        [
            _event_id(r)
            for r in out[["user_id", "item_id", "type", "ts"]].itertuples(index=False, name=None)
        ],
    )
    return out, ImportReport(rows_read, missing, invalid, duplicates)


def with_weights(events: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """``events`` (as `clean_history` returns them) with a `weight` column: each event's
    confidence weight, as the feature store computes it."""
    out = events.copy()
    out["weight"] = [
        event_weight(
            Interaction("", "", "", t, 0, v), settings.event_weights, settings.rating_scale
        )
        for t, v in zip(out["type"], out["value"], strict=True)
    ]
    return out
