"""`streamrec bench serve`: recommendation latency and throughput of the API under load.

MovieLens goes through the running system (Kafka, worker, Redis) until a model covers it; then
wrk (a C load generator, one thread) asks the API (`STREAMREC_API_PROCESSES` processes, 1 unless
set) for random known users' recommendations at concurrency 32, and in the same run for
`/v1/health/live` on the same server: the ceiling of the framework, the server and the machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recommender.errors import StreamrecError
from recommender.settings import Settings
from streamrec.bench.report import write
from streamrec.bench.workload import isolated, seed_movielens, sequential_version
from streamrec.runtime import Runtime

CONCURRENCY = 32

LUA = """
local users = {%(users)s}
wrk.headers["X-API-Key"] = "%(token)s"
math.randomseed(7)
request = function()
  return wrk.format("GET", "/v1/users/" .. users[math.random(#users)] .. "/recommendations?k=10")
end
"""


def _wrk(url: str, seconds: float, script: Path | None) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds:g}s", "--latency", "--timeout", "5s"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    return _parse(out)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _parse(out: str) -> dict[str, float]:
    """p50, p99 (ms), requests/s and non-2xx count from wrk's `--latency` report."""
    pct = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    found: dict[str, float] = {}
    for name, text in (("p50_ms", pct.get("50")), ("p99_ms", pct.get("99"))):
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text or "")
        if m is None:
            raise StreamrecError(f"cannot read wrk's latency report:\n{out}")
        found[name] = _ms(m.group(1), m.group(2))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    found["rps"] = float(rps.group(1)) if rps else 0.0
    found["non_2xx"] = float(bad.group(1)) if bad else 0.0
    found["socket_errors"] = float(sum(int(g) for g in errors.groups())) if errors else 0.0
    return found


@contextmanager
def _profiled(rt: Runtime, out: Path | None, seconds: float) -> Iterator[None]:
    """py-spy samples the API processes while the block runs, when ``out`` is given: collapsed
    stacks in ``out``, and a summary of where the time went beside it (``.txt``)."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise StreamrecError("--profile needs py-spy: pip install py-spy")
    (api,) = [c for c in rt.supervisor.children if c.name == "api"]
    argv = [spy, "record", "-p", str(api.process.pid), "-d", f"{seconds:g}", "-r", "200"]
    argv += ["-f", "raw", "-o", str(out), "--nonblocking", "--subprocesses"]  # every process
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.wait(timeout=seconds + 30)
    summary = summarize_profile(out.read_text())
    out.with_suffix(".txt").write_text(summary)
    print(summary)


#: Where a request's time goes, by the frames it passes through (inclusive: a sample under two
#: of these counts in both; the rest is the framework, the server and the event loop).
PROFILE_PARTS = {
    "scoring (numpy, the model)": ("models/als.py", "models/base.py", "models/neighbours.py"),
    "serving chain (recommender/serving/service.py)": ("recommender/serving/service.py",),
    "Redis round trips (redis-py)": ("redis/asyncio/",),
    "dependencies and validation (FastAPI)": ("fastapi/dependencies/", "fastapi/_compat"),
    "auth and rate limit": ("api/auth.py", "recommender/privacy/access.py"),
    "answered in front of FastAPI (api/fast_path.py)": ("api/fast_path.py",),
    # py-spy names a frame `function (path:line)`.
    "response (pydantic, JSON)": ("serialize_response (fastapi/routing.py", "pydantic/main.py"),
    "impressions and metrics": ("recommender/monitoring/impressions.py", "api/telemetry.py"),
}


def summarize_profile(raw: str, top: int = 15) -> str:
    """The share of samples under each of `PROFILE_PARTS`, and the functions with the most
    samples of their own, from py-spy's collapsed stacks (``frame;frame;... count``)."""
    total = 0
    parts = dict.fromkeys(PROFILE_PARTS, 0)
    own: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        for part, needles in PROFILE_PARTS.items():
            if any(needle in stack for needle in needles):
                parts[part] += n
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] = own.get(leaf, 0) + n
    if not total:
        return "profile: no samples"
    lines = [f"profile: {total} samples of the API processes; share of samples under:"]
    lines += [f"  {100 * n / total:5.1f}%  {part}" for part, n in parts.items()]
    lines.append("  own time, top functions:")
    for leaf, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {leaf}")
    return "\n".join(lines)


def recommendations_under_load(
    rt: Runtime, users: list[str], seconds: float, profile: Path | None = None
) -> dict[str, float]:
    """wrk asking ``rt``'s API for random ``users``' recommendations for ``seconds`` (after a
    2 s warm-up: the model loaded, the connections open)."""
    token = rt.create_api_key({"read"}, "bench")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "recs.lua"
        script.write_text(LUA % {"users": ",".join(f'"{u}"' for u in users), "token": token})
        _wrk(rt.api_url, 2, script)
        with _profiled(rt, profile, seconds):
            return _wrk(rt.api_url, seconds, script)


def run_serve(
    settings: Settings,
    seconds: float = 20.0,
    json_path: Path | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise StreamrecError(
            "the serve benchmark drives load with wrk: install it (Debian/Ubuntu: apt-get "
            "install wrk; macOS: brew install wrk)"
        )
    bench_settings = isolated(settings, "serve").model_copy(
        update={"api_rate_per_s": 1e9, "api_rate_burst": 10**9}
    )
    with Runtime(bench_settings, api_port=0) as rt:
        users = sorted(seed_movielens(rt)["user_id"].unique())
        sequential = sequential_version(rt)
        recs = recommendations_under_load(rt, users, seconds, profile)
        trivial = _wrk(f"{rt.api_url}/v1/health/live", seconds, None)
    results: dict[str, Any] = {
        "load_generator": f"wrk -t1 -c{CONCURRENCY} (C, one thread)",
        "concurrency": CONCURRENCY,
        "api_processes": settings.api_processes,
        "sequential_version": sequential,
        "seconds": seconds,
        "users": len(users),
        "p50_ms": round(recs["p50_ms"], 2),
        "p99_ms": round(recs["p99_ms"], 2),
        "rps": round(recs["rps"], 1),
        "non_2xx": int(recs["non_2xx"]),
        "socket_errors": int(recs["socket_errors"]),
        "trivial_p50_ms": round(trivial["p50_ms"], 2),
        "trivial_p99_ms": round(trivial["p99_ms"], 2),
        "trivial_rps": round(trivial["rps"], 1),
        "rps_ratio": round(recs["rps"] / trivial["rps"], 3) if trivial["rps"] else 0.0,
    }
    return write(json_path, "serve", results)
