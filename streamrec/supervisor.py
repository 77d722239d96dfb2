"""Child processes started, watched and stopped by PID (a Faust worker may ignore SIGTERM)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from streams.processes import die_with_parent

log = logging.getLogger(__name__)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this child when its parent dies (`stop_all` is the other guarantee)."""
    die_with_parent()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None


class Supervisor:
    """Starts children in their own process groups and stops them in reverse order.

    `stop_all` sends SIGTERM to each child's group, waits `grace_s`, then SIGKILLs what is left,
    so nothing outlives the supervisor.
    """

    def __init__(self, log_dir: Path | None = None, grace_s: float = 8.0) -> None:
        self._children: list[Child] = []
        self._log_dir = log_dir
        self._grace_s = grace_s

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        log_path = self._log_dir / f"{name}.log" if self._log_dir else None
        # Appended: a restarted child (a worker after a kill) keeps the log of the one before.
        out: IO[bytes] | int = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            if not isinstance(out, int):
                out.close()  # the child holds its own copy of the descriptor
        child = Child(name, proc, log_path)
        self._children.append(child)
        log.info("started %s (pid %d)", name, proc.pid)
        return child

    def dead(self) -> list[Child]:
        """Children that exited on their own."""
        return [c for c in self._children if c.process.poll() is not None]

    def tail(self, child: Child, lines: int = 30) -> str:
        if child.log_path is None or not child.log_path.exists():
            return ""
        return "\n".join(child.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, child: Child) -> None:
        self._signal(child, signal.SIGTERM)
        try:
            child.process.wait(self._grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %.0fs; killing it", child.name, self._grace_s)
            self._signal(child, signal.SIGKILL)
            child.process.wait()
        if child in self._children:
            self._children.remove(child)

    def kill(self, child: Child) -> None:
        """SIGKILL, as the OOM killer would: no handler runs, nothing is flushed."""
        self._signal(child, signal.SIGKILL)
        child.process.wait()
        if child in self._children:
            self._children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(self._children):
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + self._grace_s
        for child in reversed(self._children):
            try:
                child.process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM; killing it", child.name)
                self._signal(child, signal.SIGKILL)
                child.process.wait()
        self._children.clear()

    @staticmethod
    def _signal(child: Child, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, sig)
