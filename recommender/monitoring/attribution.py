"""Attribution: an event that follows a recommendation is that list's outcome.

An `EventListener`. A click, cart or purchase counts for the list it quotes
(`recommendation_id`), or, without one, for the newest list in the attribution window that
showed the item to the user. Only the user's own lists are looked at: an id quoted by someone
else matches nothing. An outcome is credited to the list's model version and A/B bucket;
the list counts as a *hit* once, on its first outcome on one of its first `hit_k` items. Online
CTR, conversion and hit rate come from these counts and the API's count of lists served, and
nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from recommender.monitoring.impressions import Impression, ImpressionStore
from recommender.monitoring.metrics import MetricsWindow
from recommender.types import Interaction

#: What an event type means as an outcome of a list; the other types are not outcomes.
OUTCOMES = {"click": "click", "cart": "conversion", "purchase": "conversion"}
#: How long an outcome quoting a list not yet written waits for it: an API replica writes its
#: impressions about every 0.1 s, and a fast user's click can reach the worker sooner.
GRACE_S = 5.0
#: Outcomes waiting at most; beyond it the oldest count as unknown.
MAX_WAITING = 10_000


@dataclass(frozen=True, slots=True)
class Credit:
    """One outcome credited to a list."""

    served: Impression
    kind: str  # click | conversion
    position: int


class Attributor:
    def __init__(
        self,
        impressions: ImpressionStore,
        pseudonym_of: Callable[[Interaction], str],
        metrics: MetricsWindow,
        hit_k: int = 10,
    ) -> None:
        self._impressions = impressions
        self._pseudonym_of = pseudonym_of  # an event's pseudonym, as it carries it
        self._metrics = metrics
        self._hit_k = hit_k
        self._waiting: list[tuple[float, Interaction]] = []  # (deadline, outcome)

    async def credits(
        self, events: Sequence[Interaction], now: float | None = None
    ) -> list[Credit]:
        """The outcomes among ``events`` (and those still waiting for their list) and the lists
        they are credited to; counts the quoted ids that match nothing
        (`streamrec_attribution_unmatched`)."""
        now = time.monotonic() if now is None else now
        retry, self._waiting = self._waiting, []
        deadline = {id(e): d for d, e in retry}
        outcomes = [e for _, e in retry] + [e for e in events if e.type in OUTCOMES]
        if not outcomes:
            return []
        lists = await self._impressions.served_lists(
            [(self._pseudonym_of(e), e.recommendation_id, e.item_id) for e in outcomes]
        )
        credits = []
        for e, imp in zip(outcomes, lists, strict=True):
            if imp is None and not e.recommendation_id:
                continue  # not quoted, and the item was not shown in the window: organic
            if imp is None:
                due = deadline.get(id(e), now + GRACE_S)
                if now < due:
                    self._waiting.append((due, e))  # its list may not be written yet
                    continue
                # Never served to this user (a list is looked for among theirs only), or
                # served before the window.
                self._metrics.add("streamrec_attribution_unmatched", reason="unknown")
                continue
            if e.item_id not in imp.items:
                self._metrics.add("streamrec_attribution_unmatched", reason="not_in_list")
                continue  # counted, credited to nothing
            credits.append(Credit(imp, OUTCOMES[e.type], imp.items.index(e.item_id)))
        if len(self._waiting) > MAX_WAITING:
            dropped = len(self._waiting) - MAX_WAITING
            self._metrics.add("streamrec_attribution_unmatched", dropped, reason="unknown")
            del self._waiting[:dropped]
        return credits

    @property
    def waiting(self) -> list[Interaction]:
        """The outcomes waiting for the list they quote to be written."""
        return [e for _, e in self._waiting]

    async def retry(self) -> None:
        """Credit the outcomes still waiting for their list (the worker's timer calls this, so
        a quiet stream does not leave them waiting)."""
        if self._waiting:
            await self.on_applied(())

    async def on_applied(self, events: Sequence[Interaction]) -> None:
        credits = await self.credits(events)
        if not credits:
            return
        m = self._metrics
        for c in credits:
            m.add("streamrec_recs_outcomes", kind=c.kind, model_version=c.served.model_version,
                  bucket=c.served.bucket)  # fmt: skip
        hits = [c for c in credits if c.position < self._hit_k]
        first = await self._impressions.mark_hit([c.served for c in hits])
        counted: set[str] = set()
        for c, new in zip(hits, first, strict=True):
            rid = c.served.recommendation_id
            if new and rid not in counted:
                counted.add(rid)
                m.add(
                    "streamrec_recs_hits",
                    model_version=c.served.model_version,
                    bucket=c.served.bucket,
                )
