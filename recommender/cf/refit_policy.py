"""When to refit a model from scratch: a pure decision, counters and clock in, a decision out.

The worker's timer asks it twice a second (see `recommender.cf.refits`); a monitor that sees the
served model's online quality drop asks for a refit through `requested`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RefitPolicy:
    """The settings a decision depends on (`STREAMREC_ALS_MIN_EVENTS`, `STREAMREC_REFIT_*`)."""

    min_events: int
    growth: float
    min_interval_s: float
    idle_s: float
    interval_s: float


@dataclass(frozen=True, slots=True)
class RefitClock:
    """What the decision looks at."""

    applied: int  # events applied to the feature store
    fitted_at_events: int  # ... when the served model was fitted
    since_fit_s: float  # seconds since the last fit ended
    since_event_s: float  # seconds since the last event was applied
    served: bool  # a model is served
    requested: str | None = None  # why a monitor asked for a refit, if it did
    content_changed: bool = False  # the text model the cold-start map reads is not the served one


@dataclass(frozen=True, slots=True)
class RefitDecision:
    due: bool
    reason: str
    requested: bool = False  # a monitor asked: the refit answers online quality, not growth


def decide_refit(clock: RefitClock, policy: RefitPolicy) -> RefitDecision:
    """Refit when there are enough events and something new, and: there is no model yet; or a
    monitor asked; or the data grew by `growth` (but not sooner than `min_interval_s` after the
    last fit: users are folded in per batch, so during a bulk load back-to-back refits would only
    take CPU from ingestion); or the stream has been quiet for `idle_s`; or `interval_s` passed.
    Also when a new text model serves (no sooner than `min_interval_s` after the last fit), even
    with nothing new: the map that places new items reads the text model's features.
    """
    new = clock.applied - clock.fitted_at_events
    if clock.applied < policy.min_events:
        return RefitDecision(
            False, f"waiting: {clock.applied:,} of {policy.min_events:,} events for a first fit"
        )
    if clock.served and clock.content_changed and clock.since_fit_s >= policy.min_interval_s:
        return RefitDecision(True, "a new text model serves: the cold-start map follows it")
    if new <= 0:
        return RefitDecision(False, "nothing new since the last fit")
    if not clock.served:
        return RefitDecision(True, "no model served yet")
    if clock.requested:
        return RefitDecision(True, f"requested: {clock.requested}", requested=True)
    grown = new >= policy.growth * max(clock.fitted_at_events, 1)
    if grown and clock.since_fit_s >= policy.min_interval_s:
        return RefitDecision(True, f"data grew by {new:,} events")
    if clock.since_event_s >= policy.idle_s:
        return RefitDecision(True, f"stream quiet for {clock.since_event_s:.1f} s")
    if clock.since_fit_s >= policy.interval_s:
        return RefitDecision(True, f"{clock.since_fit_s:.0f} s since the last fit")
    return RefitDecision(False, "not due")
