"""The production image's assumptions, without Docker: the worker and the API run as an
unprivileged process from a read-only working directory (the image's root-owned `/app`), writing
only under STREAMREC_DATA_DIR (its `/data` volume). Faust used to make its data directory in the
working directory, which failed there with a PermissionError."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recommender.store.connections import redis_sync
from streamrec.embedded import free_port
from streamrec.progress import read_progress, wait_for
from streamrec.supervisor import Supervisor
from streams.kafka import create_topics
from streams.producer import EventProducer
from tests.factories import clustered_interactions
from tests.integration.test_end_to_end import _wire

pytestmark = pytest.mark.integration

NOBODY = 65534


def _world_can_run(path: Path) -> bool:
    """Whether a user with no privileges can reach and execute ``path``."""
    path = path.resolve()
    dirs_ok = all(os.stat(p).st_mode & stat.S_IXOTH for p in path.parents)
    return dirs_ok and bool(os.stat(path).st_mode & stat.S_IXOTH)


def unprivileged() -> list[str]:
    """A command prefix that runs a program without privileges.

    Not root: we already are unprivileged. Root: as `nobody` when it can reach this Python
    (a system-wide one, as in the image); otherwise (a Python under /root, as on the
    development machine) as uid 0 stripped of every capability, which the kernel treats like
    any other user for file permissions: a directory mode 555 refuses it."""
    if os.geteuid() != 0:
        return []
    if _world_can_run(Path(sys.executable)) and _world_can_run(Path(__file__)):
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return [
        "setpriv",
        "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--ambient-caps=-all",
    ]


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """(a read-only working directory, a data directory the process may write)."""
    base = Path(tempfile.mkdtemp(prefix="streamrec-image-"))
    base.chmod(0o755)
    workdir, data = base / "app", base / "data"
    workdir.mkdir()
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, NOBODY, NOBODY)
    data.chmod(0o777)
    workdir.chmod(0o555)
    try:
        yield workdir, data
    finally:
        workdir.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_worker_and_api_run_unprivileged_from_a_read_only_directory(settings, redis, dirs):
    workdir, data = dirs
    probe = subprocess.run([*unprivileged(), "touch", str(workdir / "x")], capture_output=True)
    assert probe.returncode != 0, "the working directory must refuse writes to this process"

    s = settings.model_copy(update={"data_dir": data, "api_port": free_port()})
    create_topics(s)
    env = {
        **os.environ,
        **s.as_env(),
        "HOME": str(workdir),  # stricter than the image: nothing may write a home either
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    logs = Path(tempfile.mkdtemp(prefix="streamrec-image-logs-"))
    supervisor = Supervisor(logs)
    python = [*unprivileged(), sys.executable, "-m", "streamrec"]
    try:
        worker = supervisor.start("worker", [*python, "worker"], env, cwd=workdir)
        api = supervisor.start("api", [*python, "api"], env, cwd=workdir)

        interactions = clustered_interactions()
        with EventProducer(s.kafka_url or "", s.topic_events) as producer:
            for e in interactions:
                producer.send_event(_wire(e))
        client = redis_sync(s.redis_url or "")

        def alive() -> None:
            for child in supervisor.dead():
                raise AssertionError(f"{child.name} died:\n{supervisor.tail(child, 60)}")

        wait_for(
            lambda: read_progress(client),
            lambda p: p.model_watermark >= len(interactions),
            120,
            poll_s=0.2,
            check=alive,
        )
        client.close()
        base = f"http://127.0.0.1:{s.api_port}"
        deadline = time.monotonic() + 30
        while True:
            alive()
            try:
                if httpx.get(f"{base}/v1/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, supervisor.tail(api)
            time.sleep(0.1)
        assert list(workdir.iterdir()) == []
        assert (data / "models").is_dir() and (data / "faust").is_dir()
        for child in (worker, api):
            log = (logs / f"{child.name}.log").read_text()
            assert "PermissionError" not in log and "Traceback" not in log, log[-3000:]
    finally:
        supervisor.stop_all()
        shutil.rmtree(logs, ignore_errors=True)
