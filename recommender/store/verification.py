"""Checking the feature store against a recomputation from the events themselves (pandas).

This is how "nothing lost, nothing double-counted" is measured: the store after any number of
crashes and redeliveries must equal a fold over the distinct events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from recommender.settings import Settings

if TYPE_CHECKING:  # pandas costs a worker a quarter second at start, and only benchmarks use it
    import pandas as pd

#: (pseudonym, item) -> weight; (pseudonym, type) -> count; item -> interactions.
Cells = dict[tuple[str, str], float]


@dataclass
class FeatureSnapshot:
    user_items: Cells = field(default_factory=dict)
    user_counts: Cells = field(default_factory=dict)
    popular: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotDiff:
    missing: int  # cells below the expected value, or absent: an update lost
    extra: int  # cells above the expected value, or unexpected: an update applied twice

    @property
    def equal(self) -> bool:
        return self.missing == 0 and self.extra == 0


def _cells(series: pd.Series) -> Cells:
    """A two-level grouped series as {(level 0, level 1): value}."""
    out: Cells = {}
    for key, value in series.to_dict().items():
        a, b = cast(tuple[object, object], key)
        out[(str(a), str(b))] = float(value)
    return out


def expected_features(
    events: pd.DataFrame, settings: Settings, pseudonym: Callable[[str], str]
) -> FeatureSnapshot:
    """Fold the distinct events (columns event_id, user_id, item_id, type, value) into features."""
    df = events.drop_duplicates("event_id")
    weights = df["type"].map(settings.event_weights).astype(float)
    is_rating = (df["type"] == "rating") & df["value"].notna()
    scale = (
        df["value"].where(is_rating, settings.rating_scale).clip(0, settings.rating_scale)
        / settings.rating_scale
    )
    df = df.assign(p=df["user_id"].map(pseudonym), weight=weights * scale)
    items = df.groupby(["p", "item_id"])["weight"].sum()
    counts = df.groupby(["p", "type"]).size()
    popular = df.groupby("item_id").size()
    return FeatureSnapshot(
        user_items=_cells(items),
        user_counts=_cells(counts),
        popular={str(k): float(v) for k, v in popular.items()},
    )


def _diff(actual: dict, expected: dict, tolerance: float) -> SnapshotDiff:  # type: ignore[type-arg]
    missing = extra = 0
    for key in actual.keys() | expected.keys():
        a, e = actual.get(key, 0.0), expected.get(key, 0.0)
        if a < e - tolerance:
            missing += 1
        elif a > e + tolerance:
            extra += 1
    return SnapshotDiff(missing, extra)


def compare(
    actual: FeatureSnapshot, expected: FeatureSnapshot, tolerance: float = 1e-6
) -> SnapshotDiff:
    """Count the cells where ``actual`` falls short of or exceeds ``expected``."""
    parts = [
        _diff(actual.user_items, expected.user_items, tolerance),
        _diff(actual.user_counts, expected.user_counts, tolerance),
        _diff(actual.popular, expected.popular, tolerance),
    ]
    return SnapshotDiff(sum(p.missing for p in parts), sum(p.extra for p in parts))
