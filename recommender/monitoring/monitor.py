"""The monitor: online quality in, lifecycle decisions out. Pure: no I/O, no clock of its own.

It is fed the metric records that count lists served (`streamrec_recs_served`) and lists hit
(`streamrec_recs_hits`), per model version and A/B bucket, and decides three things:

- **drift**: every list the served version served is a 1 (hit) or a 0 for River's ADWIN; when
  ADWIN cuts its window and the newest lists' hit rate is at least `drift_drop` below the part
  it dropped, the monitor asks for a refit (through the refit policy).
- **A/B**: once both arms served `min_lists` lists since the challenger appeared, a one-sided
  two-proportion z-test on hit rate (challenger > control, z >= `z`): the challenger is promoted.
- **rollback**: a version promoted while the monitor watched is compared, once it served
  `min_lists` lists, with the version it replaced (its last `baseline_lists`, or what it served
  since a drift); if it is worse by the same test, the monitor rolls back to it.

Each test is decided at a few *looks* only (at `min_lists`, then each time its evidence
doubled), not every second: a one-sided test at z 2.576 repeated at will would promote or roll
back on noise sooner or later.

A pin by an operator wins: nothing is promoted or rolled back while the served version is pinned.
Windows are counted once they *settled* (`settle_ms` after their end: hits arrive from the
worker, lists from every API replica, each about a second late).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from recommender.serving.ab_split import CHALLENGER, CONTROL

if TYPE_CHECKING:
    from river.drift import ADWIN

LISTS = "streamrec_recs_served"
HITS = "streamrec_recs_hits"
#: The metric records the monitor reads.
FED_BY = (LISTS, HITS)


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    min_lists: int = 200
    z: float = 2.576  # one-sided, about 0.5% false promotions or rollbacks per test
    drift_delta: float = 0.002  # ADWIN's confidence
    drift_drop: float = 0.2  # a cut counts as drift when the rate fell by this share
    drift_recent_lists: int = 200  # the newest lists compared with the older ones on a cut
    baseline_lists: int = 5000
    max_looks: int = 4
    settle_ms: int = 2000


@dataclass(frozen=True, slots=True)
class Action:
    kind: Literal["refit", "promote", "rollback"]
    version: str  # refit: the served version that degraded
    reason: str


@dataclass(slots=True)
class Tally:
    lists: float = 0.0
    hits: float = 0.0

    @property
    def rate(self) -> float:
        return self.hits / self.lists if self.lists else 0.0

    def add(self, other: Tally) -> None:
        self.lists += other.lists
        self.hits += other.hits


def new_detector(delta: float) -> ADWIN:
    """River's ADWIN. Imported here, not at the top: `river.drift` loads River's datasets and
    scikit-learn, most of a second that a restarted worker would spend before it consumes
    (`preload_detector` imports it off the event loop)."""
    from river.drift import ADWIN

    return ADWIN(delta=delta)


def preload_detector() -> None:
    """Import the detector's library (call it in a thread while the worker starts)."""
    import river.drift  # noqa: F401


def z_better(a: Tally, b: Tally) -> float:
    """The z statistic of "a's hit rate is above b's" (pooled two-proportion test)."""
    if not a.lists or not b.lists:
        return 0.0
    pooled = (a.hits + b.hits) / (a.lists + b.lists)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.lists + 1 / b.lists))
    return (a.rate - b.rate) / se if se > 0 else 0.0


@dataclass
class Monitor:
    config: MonitorConfig = field(default_factory=MonitorConfig)
    #: window end -> (version, bucket) -> tally; only windows not yet settled.
    _open: dict[int, dict[tuple[str, str], Tally]] = field(default_factory=dict)
    _settled_until: int = 0
    #: per version and bucket, since it was first seen
    _totals: dict[tuple[str, str], Tally] = field(default_factory=dict)
    #: per version: its last baseline_lists windows in control, for a rollback's comparison
    _recent: dict[str, deque[Tally]] = field(default_factory=dict)
    _served: str | None = None
    _previous: str | None = None  # the version the served one replaced while we watched
    _since_promotion: Tally = field(default_factory=Tally)
    _detector: ADWIN | None = None
    _drift_flagged: str | None = None
    _challenger: str | None = None
    _ab: dict[str, Tally] = field(default_factory=dict)
    _rolled_back: set[str] = field(default_factory=set)  # never rolled back to again
    _looks: dict[str, int] = field(default_factory=dict)  # per test, how often it was decided
    lists_fed: int = 0  # lists the drift detector has seen

    def observe(self, name: str, labels: dict[str, str], end_ms: int, value: float) -> None:
        """One metric record (any source); others than `FED_BY` are ignored."""
        if name not in FED_BY or end_ms <= self._settled_until:
            return
        key = (labels.get("model_version", ""), labels.get("bucket", CONTROL))
        tally = self._open.setdefault(end_ms, {}).setdefault(key, Tally())
        if name == LISTS:
            tally.lists += value
        else:
            tally.hits += value

    def decide(
        self,
        now_ms: int,
        served: str | None,
        challenger: str | None,
        pinned: bool,
    ) -> list[Action]:
        """Fold in the windows that settled, and what to do about them."""
        self._follow(served, challenger)
        actions: list[Action] = []
        for end in sorted(e for e in self._open if e <= now_ms - self.config.settle_ms):
            actions += self._settle(self._open.pop(end))
            self._settled_until = max(self._settled_until, end)
        if pinned:
            return [a for a in actions if a.kind == "refit"]
        return actions + self._judge()

    def _follow(self, served: str | None, challenger: str | None) -> None:
        if served != self._served:
            if self._served is not None and served is not None:
                self._previous = self._served
            self._served = served
            self._since_promotion = Tally()
            self._detector = new_detector(self.config.drift_delta)
            self._drift_flagged = None
        if challenger != self._challenger or challenger == served:
            self._challenger = challenger if challenger != served else None
            self._ab = {CONTROL: Tally(), CHALLENGER: Tally()}

    def _settle(self, window: dict[tuple[str, str], Tally]) -> list[Action]:
        for (version, bucket), tally in window.items():
            self._totals.setdefault((version, bucket), Tally()).add(tally)
            if bucket == CONTROL:
                recent = self._recent.setdefault(version, deque())
                recent.append(tally)
                while sum(t.lists for t in recent) - recent[0].lists >= self.config.baseline_lists:
                    recent.popleft()
        served = window.get((self._served or "", CONTROL))
        if self._challenger is not None:
            if served is not None:
                self._ab[CONTROL].add(served)
            challenger = window.get((self._challenger, CHALLENGER))
            if challenger is not None:
                self._ab[CHALLENGER].add(challenger)
        if served is None or self._served is None:
            return []
        self._since_promotion.add(served)
        return self._watch_drift(served)

    def _watch_drift(self, window: Tally) -> list[Action]:
        """Each list of the window goes through ADWIN as 1 (hit) or 0, spread evenly (the order
        inside a window is not known). On a cut, the newest `drift_recent_lists` lists are
        compared with the part ADWIN dropped."""
        if self._detector is None:
            return []
        n = round(window.lists)
        hits = min(round(window.hits), n)  # hits of a window may answer earlier lists
        dropped_mean = None
        for i in range(n):
            x = 1.0 if (i + 1) * hits // n > i * hits // n else 0.0
            width, mean = self._detector.width, self._detector.estimation
            self._detector.update(x)
            self.lists_fed += 1
            if self._detector.drift_detected:
                kept = self._detector.width
                dropped = width + 1 - kept
                if dropped > 0:
                    dropped_mean = (mean * width + x - self._detector.estimation * kept) / dropped
        if dropped_mean is None or self._drift_flagged == self._served:
            return []
        recent = Tally()
        for t in reversed(self._recent.get(self._served or "", ())):
            recent.add(t)
            if recent.lists >= self.config.drift_recent_lists:
                break
        if recent.rate >= dropped_mean * (1 - self.config.drift_drop):
            return []  # a rise, or a fall too small to refit for
        self._drift_flagged = self._served  # once per version: the refit answers it
        assert self._served is not None
        # From now on the version is judged by what it does after the drift: a refit that
        # answers it must not be rolled back for trailing the rate from before.
        windows = self._recent[self._served]
        while sum(t.lists for t in windows) - windows[0].lists >= self.config.drift_recent_lists:
            windows.popleft()
        return [
            Action(
                "refit",
                self._served,
                f"online hit rate fell from {dropped_mean:.3f} to {recent.rate:.3f} (ADWIN)",
            )
        ]

    def _look(self, test: str, lists: float) -> bool:
        """Whether a test may be decided now: at min_lists, then each time its evidence doubled
        (at most `max_looks` looks). Testing every second would inflate the false decisions of
        a test meant to run once; a handful of looks keeps them near `looks x alpha`."""
        c = self.config
        looks = self._looks.get(test, 0)
        if looks >= c.max_looks or lists < c.min_lists * 2**looks:
            return False
        self._looks[test] = looks + 1
        return True

    def _judge(self) -> list[Action]:
        if self._challenger is not None:
            arm, control = self._ab[CHALLENGER], self._ab[CONTROL]
            z = z_better(arm, control)
            if self._look(f"ab:{self._challenger}", min(arm.lists, control.lists)) and (
                z >= self.config.z
            ):
                return [
                    Action(
                        "promote",
                        self._challenger,
                        f"A/B: hit rate {arm.rate:.3f} vs {control.rate:.3f} served "
                        f"(z {z:.1f}, {arm.lists:.0f} and {control.lists:.0f} lists)",
                    )
                ]
        if self._previous is None or self._served is None or self._previous in self._rolled_back:
            return []
        now = self._since_promotion
        before = Tally()
        for t in self._recent.get(self._previous, ()):
            before.add(t)
        z = z_better(before, now)
        if before.lists < self.config.min_lists or not self._look(
            f"rollback:{self._served}", now.lists
        ):
            return []
        if z < self.config.z:
            return []
        previous, self._previous = self._previous, None
        self._rolled_back.add(self._served)
        return [
            Action(
                "rollback",
                previous,
                f"{self._served} hit {now.rate:.3f} of {now.lists:.0f} lists, {previous} "
                f"{before.rate:.3f} of its last {before.lists:.0f} (z {z:.1f})",
            )
        ]

    def online(self) -> dict[tuple[str, str], Tally]:
        """Every version and bucket's lists and hits since first seen (settled windows)."""
        return dict(self._totals)
