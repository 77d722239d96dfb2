"""Confidence weights: how much one event says about a user's taste."""

from __future__ import annotations

from collections.abc import Mapping

from recommender.types import Interaction


def event_weight(event: Interaction, weights: Mapping[str, float], rating_scale: float) -> float:
    """Return the confidence an event adds to its (user, item) cell.

    A rating scales its type's weight by ``value / rating_scale``, so a 5-star rating counts
    fully and a half-star one barely; other types ignore ``value``.
    """
    base = weights[event.type]
    if event.type == "rating" and event.value is not None:
        return base * max(event.value, 0.0) / rating_scale
    return base
