"""The `streamrec` command as a newcomer meets it: every mistake one clear line and a non-zero
exit, never a traceback; a taken port refused before anything claims to be up; imports that keep
ids; help that says what a command needs (issue: a newcomer's first hour)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from recommender.privacy.crypto import UserDataCipher, master_cipher
from streamrec.embedded import free_port
from streams.kafka import create_topics
from streams.records import EventV1
from tests.conftest import read_topics

pytestmark = pytest.mark.integration


def streamrec(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, with only the environment given (plus PATH and HOME)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    return subprocess.run(
        [sys.executable, "-m", "streamrec", *argv],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    err = result.stderr.strip()
    assert result.returncode != 0, result
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("streamrec: "), err
    for needle in needles:
        assert needle in err, err


def _env(settings) -> dict[str, str]:
    env: dict[str, str] = settings.as_env()
    return env


def test_missing_empty_and_unreadable_files(tmp_path, settings):
    env = _env(settings)
    one_line_error(streamrec("import", str(tmp_path / "nope.csv"), env=env), "no such file")
    (tmp_path / "empty.csv").write_text("")
    one_line_error(streamrec("import", str(tmp_path / "empty.csv"), env=env), "is empty")
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    one_line_error(streamrec("import", str(tmp_path / "cols.csv"), env=env), "needs columns")
    one_line_error(streamrec("import", env=env), "nothing to import")
    one_line_error(
        streamrec("import", str(tmp_path / "cols.csv"), "--delimiter", ";;", env=env),
        "--delimiter",
    )


def test_unreachable_kafka_and_redis_fail_fast_with_one_line(tmp_path, settings):
    (tmp_path / "r.csv").write_text("user,item,rating,timestamp\n1,2,4,1260000000\n")
    dead = f"127.0.0.1:{free_port()}"
    env = {**_env(settings), "STREAMREC_KAFKA_URL": f"kafka://{dead}"}
    started = time.monotonic()
    one_line_error(streamrec("import", str(tmp_path / "r.csv"), env=env), "cannot reach Kafka")
    assert time.monotonic() - started < 15  # kafka-python alone hung 30 s, then a traceback
    env = {**_env(settings), "STREAMREC_REDIS_URL": f"redis://{dead}/0"}
    one_line_error(streamrec("keys", "list", env=env), "cannot reach Redis", "STREAMREC_REDIS_URL")
    one_line_error(streamrec("models", "list", env=env), "cannot reach Redis")


def test_bad_settings_and_missing_secrets_say_what_to_do(settings):
    env = {**_env(settings), "STREAMREC_API_PORT": "eighty"}
    one_line_error(streamrec("keys", "list", env=env), "STREAMREC_API_PORT")
    env = {k: v for k, v in _env(settings).items() if k != "STREAMREC_PSEUDONYM_KEY"}
    one_line_error(
        streamrec("api", env=env), "STREAMREC_PSEUDONYM_KEY", "the key it was started with"
    )


async def test_rotate_with_master_keys_that_cannot_unwrap_is_one_line(settings, redis):
    cipher = UserDataCipher(redis, master_cipher(settings.require_master_keys()))
    await cipher.encrypt("p1", b"secret")
    wrong = Fernet.generate_key().decode()
    env = {**_env(settings), "STREAMREC_MASTER_KEYS": wrong}
    one_line_error(streamrec("keys", "rotate", env=env), "STREAMREC_MASTER_KEYS cannot unwrap")
    # Nothing was re-wrapped: the right key still reads the data.
    assert await cipher.decrypt("p1", await cipher.encrypt("p1", b"x")) == b"x"


def test_a_taken_port_fails_before_anything_claims_to_be_up(settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"STREAMREC_DATA_DIR": str(settings.data_dir)}
        started = time.monotonic()
        result = streamrec("up", "--port", str(port), env=env)
        one_line_error(result, f"port {port}", "--port", "STREAMREC_API_PORT")
        assert "is up" not in result.stdout and "sr_" not in result.stdout
        assert time.monotonic() - started < 10  # refused before starting Kafka and Valkey


def test_import_keeps_ids_reports_rows_and_writes_rejects(tmp_path, settings):
    create_topics(settings)
    (tmp_path / "r.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        "007,0318,4,1260759144\n"
        ",5,4,1260759144\n"
        "12345678901234567890,1e5,50,1260759144\n"
        "u2,i2,4.5,yesterday\n"
        "u3,i3,3,2024-01-01T00:00:00Z\n"
    )
    result = streamrec(
        "import",
        str(tmp_path / "r.csv"),
        "--rejects",
        str(tmp_path / "bad.csv"),
        env=_env(settings),
    )
    assert result.returncode == 1, result  # published, but rows were left out
    assert "line 3" in result.stdout and "line 4" in result.stdout and "line 5" in result.stdout
    assert "published 2 events" in result.stdout
    assert (tmp_path / "bad.csv").read_text().count("\n") == 4  # header and three rows
    events = [
        EventV1.model_validate_json(m.value) for m in read_topics(settings, settings.topic_events)
    ]
    assert sorted((e.user_id, e.item_id) for e in events) == [("007", "0318"), ("u3", "i3")]


def test_help_says_what_each_command_needs():
    import_help = streamrec("import", "--help").stdout
    for needle in ("epoch seconds", "movieId", "--delimiter", "STREAMREC_KAFKA_URL", "Exit status"):
        assert needle in import_help, needle
    assert "embedded" in streamrec("up", "--help").stdout
    assert "STREAMREC_API_PORT" in streamrec("api", "--help").stdout


def test_demo_serve_prints_the_export_line_and_leaves_nothing_behind(tmp_path):
    """`demo --serve` connects another shell the way `up` does; neither leaves a Faust data
    directory in the working directory."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamrec",
            "demo",
            "--serve",
            "--limit",
            "3000",
            "--port",
            str(port),
        ],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        export = ""
        deadline = time.monotonic() + 180
        assert demo.stdout is not None
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "the demo ended before printing an export line"
            if line.strip().startswith("export STREAMREC_KAFKA_URL="):
                export = line.strip()
                break
        assert f"STREAMREC_API_URL=http://127.0.0.1:{port}" in export
        env = dict(item.split("=", 1) for item in export.removeprefix("export ").split())
        listed = streamrec("models", "list", env=env)
        assert listed.returncode == 0 and "*" in listed.stdout, listed
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(30)
        if demo.stdout is not None:
            demo.stdout.close()
    assert list(tmp_path.iterdir()) == []


async def test_below_the_minimum_every_door_says_why_there_is_no_model(settings, redis):
    """Below STREAMREC_ALS_MIN_EVENTS there was silently no model."""
    from recommender.store.features import FeatureStore
    from tests.conftest import serve_api
    from tests.factories import clustered_interactions

    await FeatureStore(redis, settings).apply_interactions(clustered_interactions()[:12])
    async with serve_api(settings) as api:
        ready = (await api.get("/v1/health/ready")).json()
    assert ready["model_version"] is None
    assert "12 of the 50 events" in ready["model_note"]
    assert "STREAMREC_ALS_MIN_EVENTS" in ready["model_note"]
    listed = await asyncio.to_thread(streamrec, "models", "list", env=_env(settings))
    assert listed.returncode == 0 and "the first fit needs 50" in listed.stdout


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if entry.name.isdigit() and fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _answers(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_api_processes_share_the_port_and_die_with_their_manager(settings):
    port = free_port()
    env = {**os.environ, **_env(settings), "STREAMREC_API_PORT": str(port)}
    env["STREAMREC_API_PROCESSES"] = "2"
    url = f"http://{settings.api_host}:{port}/v1/health/live"
    manager = subprocess.Popen(
        [sys.executable, "-m", "streamrec", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers: list[int] = []
    try:
        _answers(url)
        servers = [p for p in _children(manager.pid) if "spawn_main" in _cmdline(p)]
        assert len(servers) == 2, servers
        os.kill(servers[0], signal.SIGKILL)  # one replica dies: the other answers meanwhile
        _answers(url, timeout_s=5)
        servers = _children(manager.pid)  # with the one uvicorn starts in its place, if yet
        os.kill(manager.pid, signal.SIGKILL)  # the manager dies: no replica keeps the port
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{p}").exists() for p in servers):
            assert time.monotonic() < deadline, "an API process outlived its manager"
            time.sleep(0.1)
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, timeout=1)
    finally:
        manager.kill()
        manager.wait()
        for pid in servers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
