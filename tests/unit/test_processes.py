"""Background processes: the fit process and the content trainer yield the CPU to ingestion."""

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from streams.processes import BACKGROUND_NICENESS, run_in_background


def _priority() -> tuple[int, int]:
    return os.sched_getscheduler(0), os.nice(0)


@pytest.mark.skipif(sys.platform != "linux", reason="SCHED_IDLE is Linux's")
def test_a_background_process_runs_idle_and_niced():
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=run_in_background,
    ) as pool:
        policy, niceness = pool.submit(_priority).result(timeout=60)
    assert policy == os.SCHED_IDLE
    assert niceness == min(os.nice(0) + BACKGROUND_NICENESS, 19)
