"""Child processes: ones that must not outlive their parent, and background ones."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal

#: Background work's niceness, which also counts where the SCHED_IDLE policy does not exist.
BACKGROUND_NICENESS = 10

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:  # pragma: no cover - in a child
    """Ask Linux to SIGKILL this process when its parent dies, however the parent dies. With
    ``parent_pid``, also exit now if that parent died before the request was made (the
    request covers only a parent alive when it is made)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's own clean-up remains the only guarantee
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def die_with_spawning_parent() -> None:  # pragma: no cover - runs in a child process
    """`die_with_parent` in a child that `multiprocessing` started, checked against the process
    that started it: a parent killed between the spawn and this call is caught too."""
    parent = multiprocessing.parent_process()
    die_with_parent(parent.pid if parent is not None else None)


def run_in_background() -> None:  # pragma: no cover - runs in a child process
    """Lower this process (and the threads it starts) to background priority: niceness 10, and
    Linux's SCHED_IDLE policy, which any ordinary process preempts as it wakes (a niced process
    keeps the core for the rest of its time slice)."""
    os.nice(BACKGROUND_NICENESS)
    with contextlib.suppress(AttributeError, OSError):  # not Linux
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def background_child() -> None:  # pragma: no cover - runs in a child process
    """A background child that dies with its parent: the content trainer's process and the fit
    process (the pool's initializer; a worker killed with SIGKILL left it behind, idle)."""
    die_with_spawning_parent()
    run_in_background()
