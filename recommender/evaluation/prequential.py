"""Prequential (test-then-train) evaluation: replay events in time order; before each one, ask
for the user's top k and score a hit if the event's item is in it; then apply the event.

Three ways of keeping a model current are compared on the same replay, with the same parameters:
`streamrec` folds every event into the user's vector and recent items at once, and refits when
the data grew by `refit_growth` (the worker's policy); `frozen` keeps the model and every user's
state from the warm-up; `daily` refits once per simulated day and refreshes users only then.
A popularity count updated per event is the naive baseline. `streamrec_sequential` is
`streamrec` with a SASRec blended in (fitted on the warm-up only, not trained during the replay:
the served family also learns from the stream, so this is its lower bound).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.als import ALSModel
from models.data import InteractionMatrix
from models.fitting import fit_als
from recommender.evaluation.ranking import RECENT_ITEMS, sequences
from recommender.weights import with_recency

if TYPE_CHECKING:
    from models.sequential import SequentialModel

DAY_S = 86_400


@dataclass
class _Users:
    """What a strategy knows of each user: history, latest items, vector."""

    histories: dict[str, dict[str, float]] = field(default_factory=dict)
    recent: dict[str, list[str]] = field(default_factory=dict)
    vectors: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    #: Each user's newest event on each item (epoch ms), as the feature store keeps it.
    times: dict[str, dict[str, int]] = field(default_factory=dict)

    def copy(self) -> _Users:
        return _Users(
            {u: dict(h) for u, h in self.histories.items()},
            {u: list(r) for u, r in self.recent.items()},
            dict(self.vectors),
            {u: dict(t) for u, t in self.times.items()},
        )

    def weighted(self, user: str, half_life_s: float) -> dict[str, float]:
        """The user's history as a fit sees it (`with_recency`)."""
        return with_recency(self.histories[user], self.times.get(user, {}), half_life_s)


def _apply(users: _Users, user: str, item: str, weight: float, ts_ms: int) -> None:
    h = users.histories.setdefault(user, {})
    h[item] = h.get(item, 0.0) + weight
    r = users.recent.setdefault(user, [])
    if item in r:
        r.remove(item)
    r.insert(0, item)
    del r[RECENT_ITEMS:]
    times = users.times.setdefault(user, {})
    times[item] = max(ts_ms, times.get(item, ts_ms))


def _fit(users: _Users, params: dict[str, Any], half_life_s: float = 0.0) -> ALSModel:
    ids = sorted(users.histories)
    data = InteractionMatrix.from_histories(ids, [users.weighted(u, half_life_s) for u in ids])
    fitted = fit_als(data, **params)
    users.vectors = dict(zip(ids, fitted.user_vectors, strict=True))
    return fitted.model(**params)


def _popular(counts: Counter[str], k: int, exclude: set[str]) -> list[str]:
    return [i for i, _ in counts.most_common(k + len(exclude)) if i not in exclude][:k]


def _top(
    model: ALSModel,
    users: _Users,
    user: str,
    k: int,
    exclude: set[str],
    recent_n: int,
    fallback: Counter[str],
    sequential: tuple[SequentialModel, float] | None = None,
) -> list[str]:
    vec = users.vectors.get(user)
    if vec is None:
        return _popular(fallback, k, exclude)
    recent = users.recent.get(user, [])
    sequence = None
    if sequential is not None:  # the state the worker keeps: the encoder on the latest items
        seq, weight = sequential
        state = seq.encode([recent])[0]
        sequence = (seq.aligned_scores(state, seq.index_of(model.item_ids)), weight)
    ids, _ = model.recommend_vector(vec, k, exclude, recent=recent[:recent_n], sequence=sequence)
    return [str(i) for i in ids]


@dataclass
class _Streaming:
    """The worker's way, on one copy of the users: every event folded in at once, a refit when
    the data grew by `refit_growth`; every fit weighs by recency (``half_life_s``)."""

    users: _Users
    params: dict[str, Any]
    half_life_s: float = 0.0
    model: ALSModel = field(init=False)

    def __post_init__(self) -> None:
        self.model = _fit(self.users, self.params, self.half_life_s)

    def refit(self) -> None:
        self.model = _fit(self.users, self.params, self.half_life_s)

    def fold_in(self, user: str) -> None:
        weighted = self.users.weighted(user, self.half_life_s)
        self.users.vectors[user] = self.model.user_vectors([weighted])[0]


def prequential(
    events: pd.DataFrame,
    params: dict[str, Any],
    recent_n: int,
    refit_growth: float,
    max_events: int,
    k: int = 10,
    half_life_s: float = 0.0,
    sequential: tuple[int, float] | None = None,
) -> dict[str, Any]:
    """HR@k of each strategy over the first ``max_events`` events after the midpoint of the
    timeline, after a warm-up on everything before it. ``events``: user_id, item_id, weight, ts
    (seconds or milliseconds). With ``half_life_s``, `streamrec_recency`; with ``sequential``
    (SASRec's epochs, its weight), `streamrec_sequential` (`_streaming`)."""
    warm, replay, to_s = _halves(events, max_events)
    live, popular = _warm_up(warm, 1000 // to_s)
    streaming, lists = _streaming(live, params, half_life_s, sequential, warm)
    frozen, frozen_model = live.copy(), streaming["streamrec"].model
    frozen_popular, daily_popular = Counter(popular), Counter(popular)
    daily, daily_model = live.copy(), frozen_model
    fitted_at, applied = len(warm), len(warm)
    day = int(replay["ts"].iloc[0] // to_s // DAY_S) if len(replay) else 0

    hits = Counter[str]()
    rows: Sequence[tuple[Any, Any, Any, Any]] = list(
        replay[["user_id", "item_id", "weight", "ts"]].itertuples(index=False, name=None)
    )
    for user_raw, item_raw, weight, t in rows:
        user, item = str(user_raw), str(item_raw)
        today = int(t // to_s // DAY_S)
        if today != day:  # the daily strategy retrains on everything up to yesterday
            day = today
            daily = live.copy()
            daily_model = _fit(daily, params)
            daily_popular = Counter(popular)
        seen = set(live.histories.get(user, {}))
        for name, (way, sequence) in lists.items():
            found = _top(way.model, way.users, user, k, seen, recent_n, popular, sequence)
            hits[name] += item in found
        for name, (model, users, fallback) in (
            ("streamrec_frozen", (frozen_model, frozen, frozen_popular)),
            ("streamrec_daily", (daily_model, daily, daily_popular)),
        ):
            hits[name] += item in _top(model, users, user, k, seen, recent_n, fallback)
        hits["popularity_live"] += item in _popular(popular, k, seen)

        for way in streaming.values():
            _apply(way.users, user, item, float(weight), int(t) * (1000 // to_s))
        popular[item] += 1
        applied += 1
        refit = applied - fitted_at >= refit_growth * fitted_at
        fitted_at = applied if refit else fitted_at
        for way in streaming.values():  # a refit, or the worker's per-batch fold-in per event
            way.refit() if refit else way.fold_in(user)
    return {
        "events": len(rows),
        "warmup_events": len(warm),
        "days": len({int(t // to_s // DAY_S) for *_, t in rows}),
        "hr@10": {name: round(h / max(len(rows), 1), 4) for name, h in sorted(hits.items())},
    }


Blend = tuple["SequentialModel", float]


def _streaming(
    live: _Users,
    params: dict[str, Any],
    half_life_s: float,
    sequential: tuple[int, float] | None,
    warm: pd.DataFrame,
) -> tuple[dict[str, _Streaming], dict[str, tuple[_Streaming, Blend | None]]]:
    """The ways kept current (`streamrec` on ``live``, `streamrec_recency` on a copy), and the
    lists scored from them: `streamrec_sequential` is `streamrec`'s state and model with a
    SASRec blended in (the same fold-ins and refits: a copy of its own refitted twice as often)."""
    ways = {"streamrec": _Streaming(live, params)}
    if half_life_s > 0:
        ways["streamrec_recency"] = _Streaming(live.copy(), params, half_life_s)
    lists: dict[str, tuple[_Streaming, Blend | None]] = {n: (w, None) for n, w in ways.items()}
    if sequential is not None:
        blend = (_sasrec(warm, sequential[0]), sequential[1])
        lists["streamrec_sequential"] = (ways["streamrec"], blend)
    return ways, lists


def _sasrec(warm: pd.DataFrame, epochs: int) -> SequentialModel:
    """A SASRec fitted on the warm-up's sequences (torch is imported for it only)."""
    from models.sequential import SequentialModel

    model = SequentialModel()
    model.fit(sequences(warm), epochs)
    return model


def _halves(events: pd.DataFrame, max_events: int) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(everything before the timeline's midpoint, the first ``max_events`` after it, the
    units of a second in `ts`)."""
    df = events.sort_values("ts", kind="stable")
    ts = df["ts"].to_numpy()
    midpoint = (ts.min() + ts.max()) / 2
    return df[ts < midpoint], df[ts >= midpoint].head(max_events), 1000 if ts.max() > 10**11 else 1


def _warm_up(warm: pd.DataFrame, to_ms: int) -> tuple[_Users, Counter[str]]:
    """Every user's history and the items' popularity before the replay."""
    live = _Users()
    popular: Counter[str] = Counter()
    columns = ["user_id", "item_id", "weight", "ts"]
    for user, item, weight, t in warm[columns].itertuples(index=False):
        _apply(live, str(user), str(item), float(weight), int(t) * to_ms)
        popular[str(item)] += 1
    return live, popular
