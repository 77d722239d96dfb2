"""The monitor's decisions, fed windows as the metrics topic would carry them."""

import random

from recommender.monitoring.monitor import (
    HITS,
    LISTS,
    Action,
    Monitor,
    MonitorConfig,
    Tally,
    z_better,
)
from recommender.serving.ab_split import CHALLENGER, CONTROL


class Feed:
    """Windows of lists and hits, one per second, and the monitor's decisions after each."""

    def __init__(self, monitor: Monitor, seed: int = 1) -> None:
        self.monitor = monitor
        self.rng = random.Random(seed)
        self.t = 0

    def window(
        self,
        arms: dict[tuple[str, str], float],
        served: str,
        challenger: str | None = None,
        pinned: bool = False,
        lists: int = 100,
    ) -> list[Action]:
        self.t += 1000
        for (version, bucket), rate in arms.items():
            labels = {"model_version": version, "bucket": bucket}
            hits = sum(self.rng.random() < rate for _ in range(lists))
            self.monitor.observe(LISTS, labels, self.t, lists)
            self.monitor.observe(HITS, labels, self.t, hits)
        return self.monitor.decide(self.t + 2000, served, challenger, pinned)


def test_a_challenger_that_wins_the_ab_test_is_promoted_and_one_that_ties_is_not():
    feed = Feed(Monitor(MonitorConfig(min_lists=200)))
    arms = {("v1", CONTROL): 0.10, ("v2", CHALLENGER): 0.10}
    for _ in range(30):
        assert feed.window(arms, "v1", "v2") == []
    arms = {("v1", CONTROL): 0.10, ("v3", CHALLENGER): 0.25}
    decided = []
    for _ in range(10):
        decided += feed.window(arms, "v1", "v3")
        if decided:
            break
    assert [(a.kind, a.version) for a in decided] == [("promote", "v3")]
    assert "A/B" in decided[0].reason


def test_a_promoted_version_worse_than_the_one_before_is_rolled_back_once():
    feed = Feed(Monitor(MonitorConfig(min_lists=200)))
    for _ in range(20):
        assert feed.window({("v1", CONTROL): 0.2}, "v1") == []
    decided: list[Action] = []
    seconds = 0
    while not decided and seconds < 60:
        decided = feed.window({("v2", CONTROL): 0.05}, "v2")
        seconds += 1
    assert [(a.kind, a.version) for a in decided] == [("rollback", "v1")]
    assert seconds <= 5  # 200 lists a side at 100 a second, then the test decides
    # Back on v1, the monitor never rolls "back" to the version it took off.
    for _ in range(20):
        assert feed.window({("v1", CONTROL): 0.2}, "v1") == []


def test_an_operators_pin_wins():
    feed = Feed(Monitor(MonitorConfig(min_lists=200)))
    for _ in range(20):
        feed.window({("v1", CONTROL): 0.2}, "v1")
    for _ in range(20):
        assert feed.window({("v2", CONTROL): 0.05}, "v2", pinned=True) == []
    arms = {("v2", CONTROL): 0.05, ("v3", CHALLENGER): 0.3}
    for _ in range(20):
        assert feed.window(arms, "v2", "v3", pinned=True) == []


def test_a_drop_in_taste_is_detected_within_seconds_and_asks_for_one_refit():
    feed = Feed(Monitor(MonitorConfig()))
    for _ in range(200):
        assert feed.window({("v1", CONTROL): 0.3}, "v1") == []
    delay, refits = 0, []
    for _ in range(200):
        delay += 1
        refits += feed.window({("v1", CONTROL): 0.1}, "v1")
        if refits:
            break
    assert [(a.kind, a.version) for a in refits] == [("refit", "v1")]
    assert delay <= 5  # windows of 100 lists
    later = [a for _ in range(100) for a in feed.window({("v1", CONTROL): 0.1}, "v1")]
    assert later == []  # once per version: the refit answers it


def test_no_false_alarm_in_a_million_quiet_lists():
    feed = Feed(Monitor(MonitorConfig()), seed=3)
    alarms = [a for _ in range(10_000) for a in feed.window({("v1", CONTROL): 0.2}, "v1")]
    assert alarms == []
    assert feed.monitor.lists_fed == 1_000_000


def test_windows_count_only_once_settled_and_late_records_of_settled_windows_are_ignored():
    monitor = Monitor(MonitorConfig(settle_ms=2000))
    labels = {"model_version": "v1", "bucket": CONTROL}
    monitor.observe(LISTS, labels, 1000, 50)
    monitor.decide(2500, "v1", None, False)
    assert monitor.online() == {}
    monitor.decide(3000, "v1", None, False)
    assert monitor.online()[("v1", CONTROL)].lists == 50
    monitor.observe(LISTS, labels, 1000, 50)  # too late for its window
    monitor.decide(4000, "v1", None, False)
    assert monitor.online()[("v1", CONTROL)].lists == 50


def test_z_better_is_the_pooled_two_proportion_statistic():
    assert round(z_better(Tally(200, 40), Tally(200, 20)), 2) == 2.8
    assert z_better(Tally(200, 20), Tally(200, 40)) < 0
    assert z_better(Tally(0, 0), Tally(10, 1)) == 0.0


def test_the_refit_that_answers_a_drift_is_judged_against_the_rate_after_it():
    feed = Feed(Monitor(MonitorConfig()))
    for _ in range(100):
        feed.window({("v1", CONTROL): 0.3}, "v1")
    refits: list[Action] = []
    while not refits:
        refits = feed.window({("v1", CONTROL): 0.1}, "v1")
    for _ in range(3):
        feed.window({("v1", CONTROL): 0.1}, "v1")
    # The refit serves about as well as v1 now does: far below v1's rate before the drift.
    later = [a for _ in range(60) for a in feed.window({("v2", CONTROL): 0.11}, "v2")]
    assert later == []
