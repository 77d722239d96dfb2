"""Tabular history (a `ratings.csv`) validated row by row into events.

Ids are kept exactly as written: every cell is read as text, so `007`, `1e5` and a 20-digit id
stay what they were (pandas' type inference turned them into `7`, `100000.0` and
`1.2345678901234567e+19`, and one blank cell turned every id of its column into a float string).
Each row is checked on its own; a bad row is reported with its line number and reason, and the
rest are kept. Event ids are derived from the row's content, so importing the same file twice
applies nothing new: the feature store's dedupe drops the replay.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recommender.errors import InvalidRecordError
from recommender.settings import Settings
from recommender.types import EVENT_TYPES, ID_PATTERN, MAX_ID_CHARS, Interaction
from recommender.weights import event_weight

#: Column names we accept (case and surrounding spaces ignored), mapped to ours.
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
    "text": "text",
    "review": "text",
}
#: Longest review text an event may carry (the `events` schema's bound).
MAX_TEXT_CHARS = 20_000
#: Seconds until the year 5138 stay below this; a larger number is already milliseconds.
SECONDS_BELOW = 1e11
MAX_MILLIS = 10**13  # the year 2286, the `events` schema's bound

INVALID_ID = (
    f"is not a valid id (1 to {MAX_ID_CHARS} characters, no whitespace, control characters or '|')"
)
BAD_TIMESTAMP = "timestamp is not epoch seconds, epoch milliseconds or an ISO 8601 date"


@dataclass(frozen=True, slots=True)
class Reject:
    """A row left out: where it is in the file, why, and the cell at fault."""

    line: int
    reason: str
    value: str


@dataclass(slots=True)
class ImportReport:
    """What an import read, kept and left out (each left-out row with its line and reason)."""

    rows_read: int
    rejects: list[Reject] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)

    @property
    def events(self) -> int:
        return self.rows_read - len(self.rejects) - len(self.duplicate_lines)

    def by_reason(self) -> dict[str, list[Reject]]:
        grouped: dict[str, list[Reject]] = defaultdict(list)
        for r in self.rejects:
            grouped[r.reason].append(r)
        return dict(sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def describe(self, first: int = 5) -> list[str]:
        """One line per reason: how many rows, the first line numbers and an example cell."""
        out = []
        for reason, rows in self.by_reason().items():
            lines = ", ".join(str(r.line) for r in rows[:first])
            more = f" and {len(rows) - first:,} more" if len(rows) > first else ""
            out.append(f"{len(rows):,} x {reason}: line {lines}{more} (e.g. {rows[0].value!r})")
        if self.duplicate_lines:
            lines = ", ".join(str(n) for n in self.duplicate_lines[:first])
            out.append(
                f"{len(self.duplicate_lines):,} x duplicate of an earlier row (same user, item, "
                f"type and time), skipped: line {lines}"
            )
        return out


def as_text(column: pd.Series) -> pd.Series:
    """A column as the text it was written as ("" for a missing cell).

    A table read as text passes through unchanged. For a numeric column (a DataFrame built in
    code), integral floats lose pandas' `.0`, so ids that pandas widened to float come back."""
    if pd.api.types.is_string_dtype(column) or column.dtype == object:
        return column.astype(object).where(column.notna(), "").astype(str)
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        integral = np.isfinite(values) & (np.mod(values, 1) == 0) & (np.abs(values) < 2**53)
        text = [
            "" if np.isnan(v) else (str(int(v)) if whole else repr(float(v)))
            for v, whole in zip(values, integral, strict=True)
        ]
        return pd.Series(text, index=column.index, dtype=object)
    return column.astype(str)


def _to_millis(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(epoch ms, whether valid) for epoch seconds, epoch milliseconds or ISO 8601 dates."""
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    is_number = ~np.isnan(numbers)
    millis = np.where(numbers < SECONDS_BELOW, numbers * 1000.0, numbers)
    words = text[~is_number & (text != "").to_numpy()]
    if len(words):
        parsed = pd.to_datetime(words, utc=True, errors="coerce", format="ISO8601")
        ok = parsed.notna().to_numpy()
        at = text.index.get_indexer(words.index[ok])
        millis[at] = parsed[ok].dt.as_unit("ms").astype("int64").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(millis) & (millis >= 0) & (millis <= MAX_MILLIS)
    return pd.Series(np.round(millis), index=text.index), pd.Series(valid, index=text.index)


def _event_id(row: tuple[str, str, str, int]) -> str:
    return "imp-" + hashlib.sha256("\x1f".join(map(str, row)).encode()).hexdigest()[:24]


def normalise_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """``raw`` with its columns renamed to ours (see `ALIASES`), or a clear error."""
    df = raw.rename(columns=lambda c: ALIASES.get(str(c).strip().lower(), str(c)))
    if df.columns.duplicated().any():
        twice = sorted(set(df.columns[df.columns.duplicated()]))
        raise InvalidRecordError(f"more than one column means {', '.join(twice)}")
    missing = {"user", "item", "timestamp"} - set(df.columns)
    if missing or not ({"rating", "type"} & set(df.columns)):
        raise InvalidRecordError(
            "history needs columns user, item, timestamp and rating or type "
            f"(found {', '.join(map(str, raw.columns)) or 'none'}); "
            f"missing {', '.join(sorted(missing)) or 'rating or type'}"
        )
    return df


def clean_history(
    raw: pd.DataFrame, rating_scale: float = 5.0, lines: Sequence[int] | None = None
) -> tuple[pd.DataFrame, ImportReport]:
    """Validate a history table row by row into columns event_id, user_id, item_id, type,
    value, ts (epoch ms), text; in time order.

    A row is kept only if its user and item are valid ids, its type is known (a table without a
    `type` column holds ratings), a rating is a number from 0 to ``rating_scale``, and its
    timestamp is epoch seconds, epoch milliseconds or an ISO 8601 date. Every other row is in
    the report with its line number (``lines``, else the row's position after a header line)
    and the reason; exact duplicates are skipped and listed.
    """
    df = normalise_columns(raw)
    n = len(df)
    line_of = np.asarray(lines if lines is not None else range(2, n + 2), dtype=np.int64)
    user = as_text(df["user"]).str.strip()
    item = as_text(df["item"]).str.strip()
    stamp = as_text(df["timestamp"]).str.strip()
    etype = (
        as_text(df["type"]).str.strip().str.lower()
        if "type" in df
        else pd.Series("rating", index=df.index)
    )
    value_text = as_text(df["rating"]).str.strip() if "rating" in df else pd.Series("", df.index)
    text = as_text(df["text"]) if "text" in df else pd.Series("", index=df.index)
    value = pd.to_numeric(value_text.where(value_text != ""), errors="coerce")
    millis, ts_ok = _to_millis(stamp)
    is_rating = etype == "rating"

    # The first failing check names the row's reason; order: what is missing, then what is bad.
    checks: list[tuple[pd.Series, str, pd.Series]] = [
        (user == "", "missing user", user),
        (item == "", "missing item", item),
        (stamp == "", "missing timestamp", stamp),
        (~user.str.match(ID_PATTERN) | (user.str.len() > MAX_ID_CHARS), "user " + INVALID_ID, user),
        (~item.str.match(ID_PATTERN) | (item.str.len() > MAX_ID_CHARS), "item " + INVALID_ID, item),
        (
            ~etype.isin(EVENT_TYPES),
            f"unknown event type (known: {', '.join(EVENT_TYPES)})",
            etype,
        ),
        (is_rating & (value_text == ""), "rating without a value", value_text),
        ((value_text != "") & value.isna(), "rating or value is not a number", value_text),
        (
            is_rating & value.notna() & ~value.between(0, rating_scale),
            f"rating outside 0 to {rating_scale:g} (STREAMREC_RATING_SCALE)",
            value_text,
        ),
        (
            (value_text != "") & value.notna() & ~np.isfinite(value.fillna(0)),
            "value is not finite",
            value_text,
        ),
        (~ts_ok, BAD_TIMESTAMP, stamp),
        (text.str.len() > MAX_TEXT_CHARS, f"text over {MAX_TEXT_CHARS:,} characters", text),
    ]
    reason = pd.Series("", index=df.index, dtype=object)
    cell = pd.Series("", index=df.index, dtype=object)
    for failed, why, what in checks:
        new = failed.fillna(True).astype(bool) & (reason == "")
        reason[new] = why
        cell[new] = what[new].str.slice(0, 80)
    bad = (reason != "").to_numpy()
    rejects = [
        Reject(int(line), str(why), str(c))
        for line, why, c in zip(line_of[bad], reason[bad], cell[bad], strict=True)
    ]

    good = ~bad
    out = pd.DataFrame(
        {
            "user_id": user[good],
            "item_id": item[good],
            "type": etype[good],
            "value": value[good].astype(np.float64),
            "ts": millis[good].astype("int64"),
            "text": text[good].where(text[good] != "", None),
            "line": line_of[good],
        }
    )
    dup = out.duplicated(subset=["user_id", "item_id", "type", "ts"])
    duplicate_lines = out.loc[dup, "line"].astype(int).tolist()
    out = out[~dup].sort_values("ts", kind="stable").reset_index(drop=True)
    out.insert(
        0,
        "event_id",
        [
            _event_id(r)
            for r in out[["user_id", "item_id", "type", "ts"]].itertuples(index=False, name=None)
        ],
    )
    report = ImportReport(n, rejects, duplicate_lines)
    return out.drop(columns="line"), report


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
