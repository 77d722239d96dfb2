"""The API process's garbage collector.

CPython's full (generation 2) collection walks every tracked object. After importing FastAPI,
pydantic, Faust, torch and the rest, an API process holds ~140,000 of them, and under
`bench serve` the full collection ran every one to two seconds and took 80-120 ms each time
(ad hoc, timed with `gc.callbacks`), collecting nothing: it was the p99 of the request latency.
`gc.freeze()` moves what exists at start-up into the permanent generation, which no collection
walks, and a larger first threshold makes collections rarer (more garbage per collection, the
same total work). Cycles created later are still collected; objects frozen at start-up that
become garbage are not, which costs at most what start-up allocated.

Not the worker's: there a young threshold of 50,000 made its young collections take milliseconds
and its middle ones tens of them, and the ingest benchmark's freshness p99 read 144.4 and
133.3 ms against 107.6, 87.8 and 117.1 untouched (ad hoc, the freshness phase alone after a
50,000-event drain); freezing alone read 108.7 and 177.8: no gain shown.
"""

from __future__ import annotations

import gc

#: Allocations between young collections (CPython's default: 700).
YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Call once the process has imported what it runs with, before it starts serving."""
    gc.collect()  # what start-up left as garbage is not frozen with the rest
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
