"""Background processes: the fit process yields the CPU to ingestion and dies with the worker."""

import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from streams.processes import BACKGROUND_NICENESS, background_child

_PR_GET_PDEATHSIG = 2


def _state() -> tuple[int, int, int]:
    """(scheduling policy, niceness, the signal this process gets when its parent dies)."""
    death = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_PDEATHSIG, ctypes.byref(death))
    return os.sched_getscheduler(0), os.nice(0), death.value


@pytest.mark.skipif(sys.platform != "linux", reason="SCHED_IDLE and prctl are Linux's")
def test_the_fit_process_runs_idle_niced_and_dies_with_its_parent():
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=background_child,
    ) as pool:
        policy, niceness, death = pool.submit(_state).result(timeout=60)
    assert policy == os.SCHED_IDLE
    assert niceness == min(os.nice(0) + BACKGROUND_NICENESS, 19)
    assert death == signal.SIGKILL


@pytest.mark.skipif(sys.platform != "linux", reason="prctl is Linux's")
def test_a_child_whose_parent_died_before_it_asked_exits_at_once():
    code = (
        "import os; from streams.processes import die_with_parent; die_with_parent({}); print('on')"
    )
    ours = subprocess.run([sys.executable, "-c", code.format(os.getpid())], capture_output=True)
    assert ours.returncode == 0 and ours.stdout.strip() == b"on"
    gone = subprocess.run([sys.executable, "-c", code.format(1)], capture_output=True)
    assert gone.returncode == 1 and gone.stdout == b""  # parent 1 is not its parent: it exits
