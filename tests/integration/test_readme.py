"""The README and the docs pages, run as written: every `sh` and `python` block, in order (the
README, then the pages in the order it links them), the way a newcomer pastes them into one
terminal (`make up` in the background, its export line pasted, then each block in the same
shell: what one block exports or activates, the next one has).

A block that cannot run here is preceded by `<!-- readme-test: not run: WHY -->`; the `make up`
block by `<!-- readme-test: runs in the background ... -->`. Other fences (`text`, `mermaid`,
output samples) are not commands.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from recommender.store import keys
from streamrec.embedded import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(
    r"(?:<!-- readme-test: (?P<marker>.*?) -->\n)?^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$",
    re.S | re.M,
)
#: Shell variables that belong to one bash process, not to the terminal a person pastes into.
PER_PROCESS = {"PWD", "OLDPWD", "SHLVL", "_", "BASH_EXECUTION_STRING"}


#: The pages whose examples run after the README's, in the README's order.
PAGES = re.compile(r"^- \[[^]]+\]\((docs/[\w-]+\.md)\)", re.M)


@dataclass(frozen=True)
class Block:
    line: str  # file:line
    lang: str
    body: str
    marker: str


def documents() -> list[Path]:
    readme = ROOT / "README.md"
    return [readme, *(ROOT / p for p in PAGES.findall(readme.read_text()))]


def readme_blocks() -> list[Block]:
    blocks = []
    for doc in documents():
        text = doc.read_text()
        name = doc.relative_to(ROOT)
        blocks += [
            Block(
                f"{name}:{text[: m.start('body')].count(chr(10)) + 1}",
                m["lang"],
                m["body"],
                m["marker"] or "",
            )
            for m in FENCE.finditer(text)
        ]
    return blocks


def test_every_page_is_read():
    pages = {p.name for p in documents()[1:]}
    assert pages >= {p.name for p in (ROOT / "docs").glob("*.md")} - {"benchmark-history.md"}


class Terminal:
    """One shell session: each block runs in bash, and the environment it leaves carries on."""

    def __init__(self, env: dict[str, str], state: Path) -> None:
        self.env = env
        self._state = state

    def run(self, block: Block, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        if block.lang == "python":
            argv = [sys.executable, "-c", block.body]
        else:
            script = f"set -eo pipefail\n{block.body}\nenv -0 > {shlex.quote(str(self._state))}\n"
            argv = ["bash", "-c", script]
        result = subprocess.run(
            argv, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        if block.lang != "python" and result.returncode == 0:
            pairs = self._state.read_text().split("\0")
            self.env = {
                k: v for k, _, v in (p.partition("=") for p in pairs if p) if k not in PER_PROCESS
            }
        return result

    def paste_export(self, line: str) -> None:
        for pair in shlex.split(line.strip())[1:]:
            name, _, value = pair.partition("=")
            self.env[name] = value


def _start_background(block: Block, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Run the block in the background until it prints its export line; return both."""
    proc = subprocess.Popen(
        ["bash", "-c", block.body],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.strip().startswith("export STREAMREC_"):
            return proc, line
    _stop(proc)
    raise AssertionError(f"{block.line} printed no export line:\n{''.join(seen)}")


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_the_readme_blocks_are_found():
    blocks = readme_blocks()
    runnable = [b for b in blocks if b.lang in {"sh", "python"}]
    assert len(runnable) >= 10
    for b in runnable:
        assert b.marker == "" or b.marker.startswith(("not run: ", "runs ")), b
    skipped = [b for b in runnable if b.marker.startswith("not run: ")]
    assert all(len(b.marker) > len("not run: ") + 10 for b in skipped)  # each says why
    assert len(skipped) <= 3


def test_every_example_runs_as_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env["STREAMREC_API_PORT"] = str(free_port())  # `make up`'s 8000 may be taken on this machine
    terminal = Terminal(env, tmp_path / "env")
    background: subprocess.Popen[str] | None = None
    ran: list[str] = []
    try:
        for block in readme_blocks():
            if block.lang not in {"sh", "python"} or block.marker.startswith("not run: "):
                continue
            if block.marker.startswith("runs in the background"):
                background, export = _start_background(block, terminal.env)
                terminal.paste_export(export)
                continue
            result = terminal.run(block)
            assert result.returncode == 0, (
                f"{block.line} exited {result.returncode}:\n{block.body}\n"
                f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
            )
            ran.append(block.line)
        assert background is not None and background.poll() is None, "`make up` died"
        # The examples did what they say: u-42's events from the two Python producers applied.
        client = redis.Redis.from_url(terminal.env["STREAMREC_REDIS_URL"], decode_responses=True)
        secret = terminal.env["STREAMREC_PSEUDONYM_KEY"].encode()
        items = keys.user_items(keys.pseudonymize(secret, "u-42"))
        deadline = time.monotonic() + 30
        while set(client.hkeys(items)) != {"318", "296"} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(client.hkeys(items)) == {"318", "296"}
        client.close()
    finally:
        if background is not None:
            _stop(background)
    assert len(ran) >= 8
