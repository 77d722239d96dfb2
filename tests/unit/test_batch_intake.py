"""The batch inbox between Faust's fetch loop and the worker's agents (streams.batch_intake).

Faust's app and consumer are stood in for by the few attributes the inbox reads (what we do not
own); the at-least-once behaviour against a real broker is the fault battery's
(tests/integration/test_faults.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from streams.batch_intake import BatchInbox, run_batches


@dataclass(eq=False)
class Msg:
    offset: int
    generation_id: int = 1
    tracked: bool = False


@dataclass
class FakeConsumer:
    tracked: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    two_acked: asyncio.Event = field(default_factory=asyncio.Event)

    def track_message(self, m: Msg) -> None:
        self.tracked.append(m.offset)

    def ack(self, m: Msg) -> None:
        self.acked.append(m.offset)
        if len(self.acked) >= 2:
            self.two_acked.set()


@dataclass
class FakeFlow:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class FakeApp:
    consumer: FakeConsumer = field(default_factory=FakeConsumer)
    flow_control: FakeFlow = field(default_factory=FakeFlow)
    consumer_generation_id: int = 1


def msgs(*offsets: int, generation: int = 1) -> list[Msg]:
    return [Msg(o, generation) for o in offsets]


async def take(inbox: BatchInbox, app: FakeApp, max_records: int, n: int) -> list[list[int]]:
    out = []
    it = inbox.batches("events", app, max_records)
    for _ in range(n):
        out.append([m.offset for m in await asyncio.wait_for(anext(it), 1)])
    return out


def test_lists_queued_meanwhile_are_merged_up_to_the_batch_size() -> None:
    async def go() -> list[list[int]]:
        inbox, app = BatchInbox(["events"]), FakeApp()
        for part in (msgs(0, 1), msgs(2, 3, 4), msgs(5)):
            await inbox.put("events", part)
        return await take(inbox, app, max_records=4, n=2)

    assert asyncio.run(go()) == [[0, 1, 2, 3], [4, 5]]


def test_records_from_before_a_rebalance_are_dropped_unacked_and_untracked() -> None:
    async def go() -> tuple[list[list[int]], FakeApp]:
        inbox, app = BatchInbox(["events"]), FakeApp(consumer_generation_id=2)
        await inbox.put("events", msgs(0, 1, generation=1) + msgs(2, generation=2))
        return await take(inbox, app, max_records=10, n=1), app

    batches, app = asyncio.run(go())
    assert batches == [[2]]
    assert app.consumer.tracked == [2] and app.consumer.acked == []


def test_nothing_is_taken_while_flow_is_suspended() -> None:
    async def go() -> list[list[int]]:
        inbox, app = BatchInbox(["events"]), FakeApp()
        app.flow_control.active = False
        await inbox.put("events", msgs(0, 1))
        app_later = FakeApp()  # the rebalance is over; what was fetched after it is taken
        await inbox.put("events", msgs(2))
        it = inbox.batches("events", app, 10)
        task = asyncio.ensure_future(anext(it))
        await asyncio.sleep(0.05)
        assert not task.done()  # both lists dropped, waiting for more
        task.cancel()
        await inbox.put("events", msgs(3))
        return await take(inbox, app_later, 10, 1)

    assert asyncio.run(go()) == [[3]]


def test_each_list_is_acked_after_both_stages_and_the_stages_overlap_in_order() -> None:
    log: list[str] = []

    async def go() -> FakeApp:
        inbox, app = BatchInbox(["events"]), FakeApp()
        second_applied = asyncio.Event()

        async def apply(batch: list[Any]) -> int:
            log.append(f"apply {batch[0].offset}")
            if batch[0].offset == 1:
                second_applied.set()
            return int(batch[0].offset)

        async def then(first: int) -> None:
            if first == 0:
                # The first list's follow-up waits for the second list's apply: they overlap.
                await asyncio.wait_for(second_applied.wait(), 1)
                assert app.consumer.acked == []
            log.append(f"then {first}")

        runner = asyncio.create_task(run_batches(app, inbox, "events", 1, apply, then))
        for o in range(3):
            await inbox.put("events", msgs(o))
        await asyncio.wait_for(app.consumer.two_acked.wait(), 5)
        runner.cancel()
        return app

    app = asyncio.run(go())
    assert log[:4] == ["apply 0", "apply 1", "then 0", "apply 2"]
    assert app.consumer.acked[:2] == [0, 1]


def test_a_list_whose_apply_fails_is_applied_again_and_never_acked_before(
    monkeypatch: Any,
) -> None:
    """On main a failing apply (a dead letter Kafka refused) was logged and its list acked:
    every record fetched with it committed unapplied."""
    import streams.batch_intake as intake

    monkeypatch.setattr(intake, "MAX_RETRY_DELAY_S", 0.01)
    tries: list[list[int]] = []

    async def go() -> FakeApp:
        inbox, app = BatchInbox(["events"]), FakeApp()

        async def apply(batch: list[Any]) -> None:
            tries.append(list(app.consumer.acked))
            if len(tries) < 3:
                raise RuntimeError("the dead-letter topic refused a record")

        await inbox.put("events", msgs(0, 1))
        task = asyncio.ensure_future(run_batches(app, inbox, "events", 10, apply))
        await asyncio.wait_for(app.consumer.two_acked.wait(), 5)
        task.cancel()
        return app

    app = asyncio.run(go())
    assert tries == [[], [], []]  # three tries, nothing acked before the one that succeeded
    assert app.consumer.acked == [0, 1]
