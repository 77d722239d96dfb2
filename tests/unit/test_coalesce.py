"""`ReadCoalescer`: the reads asked for in one turn of the loop share one call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from recommender.store.coalesce import MAX_BATCH, ReadCoalescer


class Fetch:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail

    async def __call__(self, keys: Sequence[int]) -> list[str]:
        self.calls.append(list(keys))
        await asyncio.sleep(0)  # a round trip
        if self.fail:
            raise ConnectionError("redis went away")
        return [f"v{k}" for k in keys]


async def test_concurrent_reads_share_one_call_and_get_their_own_values():
    fetch = Fetch()
    reads = ReadCoalescer(fetch)
    got = await asyncio.gather(*(reads.get(k) for k in (3, 1, 2, 1)))
    assert got == ["v3", "v1", "v2", "v1"]
    assert fetch.calls == [[3, 1, 2, 1]]
    # A read on its own is a call of its own.
    assert await reads.get(7) == "v7" and await reads.get(8) == "v8"
    assert fetch.calls[1:] == [[7], [8]]


async def test_a_large_turn_is_split_into_calls_of_max_batch():
    fetch = Fetch()
    reads = ReadCoalescer(fetch)
    n = MAX_BATCH * 2 + 1
    assert await asyncio.gather(*(reads.get(k) for k in range(n))) == [f"v{k}" for k in range(n)]
    assert [len(c) for c in fetch.calls] == [MAX_BATCH, MAX_BATCH, 1]


async def test_a_failed_call_fails_each_of_its_reads_and_the_next_turn_works():
    failing = Fetch(fail=True)
    reads = ReadCoalescer(failing)
    results = await asyncio.gather(reads.get(1), reads.get(2), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    failing.fail = False
    assert await reads.get(3) == "v3"


async def test_a_cancelled_read_leaves_the_others_answered():
    fetch = Fetch()
    reads = ReadCoalescer(fetch)
    doomed = asyncio.ensure_future(reads.get(1))
    other = asyncio.ensure_future(reads.get(2))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await other == "v2"
    with pytest.raises(asyncio.CancelledError):
        await doomed


def test_a_read_left_by_a_closed_loop_does_not_stall_the_next():
    """A loop closed between a read and its flush (a test's, a stopped server's)."""
    fetch = Fetch()
    reads = ReadCoalescer(fetch)
    dead = asyncio.new_event_loop()
    reads._pending.append((1, dead.create_future()))
    reads._flush_in = dead
    dead.close()
    assert asyncio.run(asyncio.wait_for(reads.get(2), 5)) == "v2"
    assert fetch.calls == [[2]]
