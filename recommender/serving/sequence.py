"""The sequential family's part of a list: the served SASRec's scores for a user's (or a
session's) latest items, in the CF model's item order, with their weight.

The encoder runs where the list is computed: when serving computes a user's candidates after
their events (the answer is then cached with them until their next events), and for a session.
So the common request, answered from the cached candidates, pays nothing for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from models.als import ALSModel
from recommender.cf.candidates import SEQUENCE_ITEMS, Scores
from recommender.lifecycle.served import ServedModelCache

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # torch: imported once a sequential version serves
    from models.sequential import SequentialModel


class SequenceScores:
    """The served sequential model, and its scores aligned to a CF model's items."""

    def __init__(self, served: ServedModelCache[Any] | None, weight: float) -> None:
        self._served = served if weight > 0 else None
        self.weight = weight
        self._aligned: tuple[object, object, int, npt.NDArray[np.int64]] | None = None
        self._check: asyncio.Future[Any] | None = None

    def items_read(self, recent_items: int) -> int:
        """Latest items a list reads: the chain's ``recent_items``, or the encoder's window
        while the family is on (the chain still blends the neighbours of its own few)."""
        return max(recent_items, SEQUENCE_ITEMS) if self._served is not None else recent_items

    async def model(self) -> SequentialModel | None:
        """The served version's model, None while none serves (or the family is off). Once a
        version is held, a list does not wait for the pointer's read (a round trip of its
        own whenever `api_model_check_s` has passed) nor for a new version's load: the check
        runs beside it, and a promotion reaches lists within that interval and the load."""
        if self._served is None:
            return None
        held = self._served.model
        if held is None:
            _, held = await self._served.current()
        elif self._served.due() and (self._check is None or self._check.done()):
            check = asyncio.ensure_future(self._served.current())
            check.add_done_callback(_checked)
            self._check = check
        return None if held is None else held.model

    def scores(
        self, seq: SequentialModel | None, cf: ALSModel, recent: Sequence[str]
    ) -> Scores | None:
        """``seq``'s scores for ``recent`` (newest first) in ``cf``'s item order, and the
        weight; None when there is no model or it knows none of the items."""
        if seq is None or not recent:
            return None
        (scores,) = seq.aligned([recent[:SEQUENCE_ITEMS]], self._index(seq, cf))
        return None if scores is None else (scores, self.weight)

    def _index(self, seq: SequentialModel, cf: ALSModel) -> npt.NDArray[np.int64]:
        # The alignment of two models' items is built once per pair (9,066 items: ~2 ms). The
        # pair is held, not its ids: a new version may be given a freed one's id.
        held = self._aligned
        if held is None or held[0] is not seq or held[1] is not cf or held[2] != len(cf.item_ids):
            held = self._aligned = (seq, cf, len(cf.item_ids), seq.index_of(cf.item_ids))
        return held[3]


def _checked(check: asyncio.Future[Any]) -> None:
    if not check.cancelled() and check.exception() is not None:
        log.warning("could not read the sequential family's served version: %s", check.exception())
