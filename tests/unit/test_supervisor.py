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


def test_children_die_with_a_supervisor_that_is_killed(tmp_path):
    """A supervisor killed with SIGKILL cannot clean up; the kernel must stop its children."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from streamrec.supervisor import Supervisor\n"
        "sup = Supervisor()\n"
        "child = sup.start('sleeper', [sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"Path({str(tmp_path / 'pid')!r}).write_text(str(child.process.pid))\n"
        "time.sleep(60)\n"
    )
    import signal
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", script])
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    assert _alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)
