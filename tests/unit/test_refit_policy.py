"""The refit decision, without Redis or a clock: counters in, a decision out."""

from dataclasses import replace

import pytest

from recommender.cf.refit_policy import RefitClock, RefitPolicy, decide_refit

POLICY = RefitPolicy(min_events=1000, growth=0.2, min_interval_s=10, idle_s=2, interval_s=300)
#: A served model fitted on 10,000 events, 1,000 new since, 5 s after the fit, busy stream.
BASE = RefitClock(
    applied=11_000, fitted_at_events=10_000, since_fit_s=5, since_event_s=0.1, served=True
)


def test_no_first_fit_below_the_minimum_and_it_says_so():
    d = decide_refit(replace(BASE, applied=12, fitted_at_events=0, served=False), POLICY)
    assert not d.due and d.reason == "waiting: 12 of 1,000 events for a first fit"
    assert decide_refit(replace(BASE, applied=1000, fitted_at_events=0, served=False), POLICY).due


def test_nothing_new_is_never_due_even_when_asked():
    clock = replace(BASE, applied=10_000, since_event_s=999, since_fit_s=999, requested="drift")
    assert not decide_refit(clock, POLICY).due


@pytest.mark.parametrize(
    ("change", "due", "reason"),
    [
        ({}, False, "not due"),
        ({"applied": 12_000}, False, "not due"),  # grown 20%, but within min_interval_s
        ({"applied": 12_000, "since_fit_s": 10}, True, "data grew by 2,000 events"),
        ({"since_event_s": 2.5}, True, "stream quiet for 2.5 s"),
        ({"since_fit_s": 301}, True, "301 s since the last fit"),
        ({"requested": "online hit rate fell"}, True, "requested: online hit rate fell"),
        ({"served": False}, True, "no model served yet"),
    ],
)
def test_each_trigger(change, due, reason):
    decision = decide_refit(replace(BASE, **change), POLICY)
    assert (decision.due, decision.reason) == (due, reason)
    # Only a monitor's request is marked as one (its refit is judged online, not on the holdout).
    assert decision.requested == ("requested" in change)


def test_a_new_text_model_refits_even_with_nothing_new_but_not_too_soon():
    clock = replace(BASE, applied=10_000, content_changed=True)
    assert not decide_refit(clock, POLICY).due  # 5 s after the last fit
    d = decide_refit(replace(clock, since_fit_s=11), POLICY)
    assert d.due and d.reason.startswith("a new text model serves")
