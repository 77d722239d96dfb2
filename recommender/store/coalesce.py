"""Reads that concurrent requests ask for in the same turn of the event loop, made as one call.

A busy API has dozens of requests in flight, each wanting one small read. Each read on its own
pays redis-py's command machinery and a socket write and read: in a py-spy profile of
`bench serve` (ad hoc), 31.5% of the API's samples were under redis-py for one script call per
request. `ReadCoalescer.get` queues the key and schedules one flush for the next turn of the
loop: every request that reached its read in between shares that flush's single call (what
ioredis calls auto-pipelining). A read waits at most for the turn in which it was asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: Keys per call at most (a Lua script unpacks them onto its stack).
MAX_BATCH = 500


class ReadCoalescer(Generic[K, V]):
    """``fetch(keys)`` answers a list of values in the order of ``keys``."""

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Sequence[V]]]) -> None:
        self._fetch = fetch
        self._pending: list[tuple[K, asyncio.Future[V]]] = []
        self._flush_in: asyncio.AbstractEventLoop | None = None  # the loop a flush is due in
        self._running: set[asyncio.Task[None]] = set()  # flushes in flight, kept referenced

    async def get(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._pending.append((key, future))
        if self._flush_in is not loop:  # (a loop closed before its flush ran leaves no trace)
            self._flush_in = loop
            loop.call_soon(self._flush)  # runs after the callbacks already ready this turn
        return await future

    def _flush(self) -> None:
        loop, self._flush_in = asyncio.get_running_loop(), None
        pending = [(k, f) for k, f in self._pending if f.get_loop() is loop]
        self._pending = []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.ensure_future(self._answer(pending[start : start + MAX_BATCH]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            values = await self._fetch([key for key, _ in batch])
        except Exception as exc:  # every waiter gets the error, as its own call would have
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled with the loop: the waiters go with it
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():  # a request that was cancelled meanwhile
                future.set_result(value)
