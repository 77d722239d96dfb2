"""Confidence weights: how much one event says about a user's taste."""

from __future__ import annotations

from collections.abc import Mapping

from recommender.types import Interaction


def event_weight(
    event: Interaction,
    weights: Mapping[str, float],
    rating_scale: float,
    review_positive_weight: float = 0.0,
) -> float:
    """Return the confidence an event adds to its (user, item) cell.

    A rating scales its type's weight by ``value / rating_scale`` (``value`` clamped to the
    scale), so a 5-star rating counts fully and a half-star one barely. A review the sentiment
    model has read weighs ``review_positive_weight * max(0, 2p - 1)``: a surely positive one as
    much as that, a neutral or negative one nothing (implicit feedback has no negative; the item
    still counts as seen).
    Other types ignore ``value``.
    """
    if event.type == "review" and event.sentiment is not None:
        return review_positive_weight * max(0.0, 2.0 * event.sentiment - 1.0)
    base = weights[event.type]
    if event.type == "rating" and event.value is not None:
        # Clamped to the scale: a rating of 1e9 stars is one of `rating_scale` stars.
        return base * min(max(event.value, 0.0), rating_scale) / rating_scale
    return base


def review_label(value: float | None, rating_scale: float) -> bool | None:
    """What a review's rating says of its text, for training the sentiment model: positive at
    4 of 5 or more, negative at 2 of 5 or less, nothing in between (or without a rating)."""
    if value is None:
        return None
    share = value / rating_scale
    if share >= 0.8:
        return True
    if share <= 0.4:
        return False
    return None


def with_recency(
    history: Mapping[str, float], last_at: Mapping[str, int], half_life_s: float
) -> dict[str, float]:
    """``history``'s confidences decayed by age, halving every ``half_life_s`` (0: as they are).

    One weighting for every fit (a refit, a fold-in, the offline evaluation). An item's age is
    that of the user's newest event on it (``last_at``: item -> epoch ms, as the feature store
    keeps it), counted back from the user's newest event: a user away for a month keeps their
    strength, and only the balance inside their history moves, towards their latest items. An
    item without a time (written before times were kept) takes the oldest known one's age.
    """
    if half_life_s <= 0 or not last_at:
        return dict(history)
    newest, oldest = max(last_at.values()), min(last_at.values())
    half_life_ms = half_life_s * 1000.0
    return {
        item: w * 0.5 ** (max(0, newest - last_at.get(item, oldest)) / half_life_ms)
        for item, w in history.items()
    }
