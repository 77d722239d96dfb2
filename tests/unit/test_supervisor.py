import os
import sys
import time

from streamrec.supervisor import Supervisor

STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    sup = Supervisor(tmp_path, grace_s=0.5)
    child = sup.start("stubborn", [sys.executable, "-c", STUBBORN])
    deadline = time.monotonic() + 10
    while "ready" not in (tmp_path / "stubborn.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    sup.stop_all()
    assert child.process.returncode == -9
    assert not _alive(child.process.pid)
    assert sup.children == []


def test_dead_children_are_reported_with_their_log(tmp_path):
    sup = Supervisor(tmp_path)
    child = sup.start("crash", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    child.process.wait(10)
    assert sup.dead() == [child]
    assert "boom" in sup.tail(child)
    sup.stop_all()
