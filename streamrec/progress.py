"""How far a running system got, read from Redis: for the demo, `import --wait`, the benchmarks
and the tests (one polling loop on one connection for all of them)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from tqdm import tqdm

from recommender.errors import StreamrecError
from recommender.lifecycle.state import ServedModel
from recommender.store import keys
from recommender.store.stats import merged_counters


class WorkerTimeoutError(StreamrecError):
    """The worker did not get through what was published in time."""


@dataclass(frozen=True)
class Progress:
    """The feature store's counters and the served model."""

    stats: dict[str, int]
    served: ServedModel | None

    @property
    def applied(self) -> int:
        return self.stats.get("events_applied", 0)

    @property
    def processed(self) -> int:
        """Records the worker is done with: applied, suppressed as duplicates, dead-lettered."""
        s = self.stats
        return (
            s.get("events_applied", 0)
            + s.get("duplicates_suppressed", 0)
            + s.get("dead_letters", 0)
        )

    @property
    def model_watermark(self) -> int:
        return self.served.watermark if self.served else 0


def applied_at_least(n: int) -> Callable[[Progress], bool]:
    """A `wait_for` condition: the worker applied ``n`` events or more."""
    return lambda progress: progress.applied >= n


def read_progress(client: redis.Redis, shards: int | None = None) -> Progress:
    """Counters and served model, in one round trip (``shards``: the counters' on a cluster)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.model_current(keys.CF))
    for name in keys.counter_keys(shards):
        pipe.hgetall(name)
    current, *stats = pipe.execute()
    return Progress(merged_counters(stats), ServedModel.from_hash(current))


def wait_for(
    read: Callable[[], Progress],
    done: Callable[[Progress], bool],
    timeout_s: float,
    poll_s: float = 0.05,
    check: Callable[[], None] = lambda: None,
) -> Progress:
    """Poll ``read`` until ``done``; ``check`` raises if something it watches died."""
    deadline = time.monotonic() + timeout_s
    while True:
        check()
        progress = read()
        if done(progress):
            return progress
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"not done after {timeout_s:g}s: {progress.stats}, model {progress.served}"
            )
        time.sleep(poll_s)


def wait_until_served(
    read: Callable[[], Progress],
    processed: int,
    min_events: int,
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
    show: bool | None = None,
    poll_s: float = 0.2,
) -> Progress:
    """Show the worker catching up until it processed ``processed`` records, then wait for a
    model that covers every applied event (when there are ``min_events`` for one), saying so.

    What a person watches after a bulk publish: without it the demo sat silent for most of a
    minute after its progress bar reached 100%."""
    start = read()
    bar = tqdm(
        total=max(processed - start.processed, 0) or None,
        desc="applied by the worker",
        unit="ev",
        disable=not (sys.stderr.isatty() if show is None else show),
        file=sys.stderr,
    )
    base = start.processed
    seen = 0

    def tick(p: Progress) -> bool:
        nonlocal seen
        bar.update(max(p.processed - base - seen, 0))
        seen = max(seen, p.processed - base)
        return p.processed >= processed

    try:
        progress = wait_for(read, tick, timeout_s, poll_s=poll_s, check=check)
    except TimeoutError:
        now = read()
        raise WorkerTimeoutError(
            f"the worker processed {now.processed - base:,} of {processed - base:,} records in "
            f"{timeout_s:g} s: is a worker running on this Kafka and Redis? (`streamrec up` "
            "runs one)"
        ) from None
    finally:
        bar.close()
    if progress.applied < min_events:
        return progress
    if progress.model_watermark < progress.applied:
        print(
            f"fitting a model on {progress.applied:,} events (ALS, in the worker's background "
            "process)...",
            file=sys.stderr,
            flush=True,
        )
        target = progress.applied
        try:
            progress = wait_for(
                read, lambda p: p.model_watermark >= target, timeout_s, poll_s=poll_s, check=check
            )
        except TimeoutError:
            return read()  # a pinned or gated model: the caller says what is served
    return progress
