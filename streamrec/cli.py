"""The `streamrec` command: up, worker, api, demo, import, keys, models, bench.

Every error a user can cause (a file, a URL, a key, a flag) is one line on stderr and a non-zero
exit; a traceback only with STREAMREC_DEBUG=1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

# implicit warns, and runs slower, when OpenBLAS spawns its own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pydantic import ValidationError

from recommender.errors import StreamrecError
from recommender.privacy.access import SCOPES
from recommender.settings import Settings
from recommender.store.connections import redacted

EPILOG_ENV = (
    "Connection: STREAMREC_KAFKA_URL and STREAMREC_REDIS_URL (both unset: `up` and `demo` start "
    "an embedded broker and Valkey); STREAMREC_PSEUDONYM_KEY, STREAMREC_MASTER_KEYS and "
    "STREAMREC_DATA_DIR as the running system uses them. `streamrec up` prints one export line "
    "with all of them. Every setting: docs/configuration.md."
)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _with_port(settings: Settings, args: argparse.Namespace) -> Settings:
    port = getattr(args, "port", None)
    return settings if port is None else settings.model_copy(update={"api_port": port})


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from streamrec.banner import print_banner
    from streamrec.runtime import Runtime

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    rt = Runtime(_with_port(settings, args), cluster=args.cluster)
    try:
        rt.start()
        token = rt.create_api_key(set(SCOPES), "embedded") if rt.embedded else None
        print_banner(rt, token, empty=rt.progress().applied == 0)
        if not rt.embedded:
            print("Create an API key with `streamrec keys create --scope read`.")
        while True:
            rt.check_children()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        rt.stop()


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.kafka import create_topics
    from streams.worker import run_worker

    create_topics(settings)  # idempotent; a fresh Kafka needs no separate set-up step
    run_worker(settings, loglevel=args.loglevel)
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from streamrec.api_process import serve

    serve(_with_port(settings, args))
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from streamrec.demo import run_demo

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    return run_demo(_with_port(settings, args), serve=args.serve, limit=args.limit)


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from streamrec.importing import run_import

    return run_import(settings, args)


def cmd_metrics(settings: Settings, args: argparse.Namespace) -> int:
    from streamrec.metrics_console import run_metrics

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    return run_metrics(settings, args)


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """One benchmark, or all of them in turn: each writes its JSON as it ends, so one that
    fails loses only its own; `all` names the failed ones at the end and exits 1."""
    runs = _benchmarks(settings, args)
    if args.which != "all":
        runs[args.which]()
        return 0
    failed = []
    for name, run in runs.items():
        try:
            run()
        except Exception:
            logging.getLogger(__name__).exception("bench %s failed", name)
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)} (the others wrote their JSON to {args.out})")
        return 1
    return 0


def _benchmarks(settings: Settings, args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """Each benchmark by name, in the order `all` runs them, bound to its arguments; its module
    is imported when it runs (torch and River are slow to import)."""
    out: Path = args.out

    def json_for(name: str) -> Path:
        path: Path = args.json or out / f"{name}.json"
        return path

    def content() -> object:
        from streamrec.bench.content import run_content

        return run_content(settings, json_path=json_for("content"))

    def faults() -> object:
        from streamrec.bench.faults import run_faults

        return run_faults(settings, json_path=json_for("faults"))

    def quality() -> object:
        from streamrec.bench.quality import run_quality

        return run_quality(
            settings,
            json_path=json_for("quality"),
            chart_path=out / "quality.png",
            prequential_events=args.prequential_events,
        )

    def freshness() -> object:
        from streamrec.bench.freshness import run_freshness

        return run_freshness(settings, json_path=json_for("freshness"))

    def serve() -> object:
        from streamrec.bench.serve import run_serve

        return run_serve(
            settings, seconds=args.seconds, json_path=json_for("serve"), profile=args.profile
        )

    def monitor() -> object:
        from streamrec.bench.monitor import run_monitor_bench

        return run_monitor_bench(settings, json_path=json_for("monitor"))

    def ingest() -> object:
        from streamrec.bench.ingest import run_ingest

        return run_ingest(
            settings,
            events=args.events,
            freshness_s=args.freshness_seconds,
            json_path=json_for("ingest"),
        )

    def erasure() -> object:
        from streamrec.bench.erasure import run_erasure

        return run_erasure(settings, json_path=json_for("erasure"))

    def chaos() -> object:
        from streamrec.bench.chaos import run_chaos

        return run_chaos(settings, args.chaos_seconds, args.chaos_rate, json_path=json_for("chaos"))

    def scale() -> object:
        from streamrec.bench.scale import run_scale

        return run_scale(settings, serve_s=args.seconds, json_path=json_for("scale"))

    benches = (content, faults, quality, freshness, serve, monitor, ingest, erasure, chaos, scale)
    return {f.__name__: f for f in benches}


IMPORT_HELP = """\
Publish a history file, a catalogue file or the MovieLens sample to the running system's Kafka.

History CSV (FILE): one event per row, a header line naming the columns (any order, case
ignored; aliases in brackets):
  user       the user id                [userId, user_id]
  item       the item id                [itemId, item_id, movieId, movie_id]
  timestamp  epoch seconds, epoch milliseconds or an ISO 8601 date   [ts, time]
  rating     a number from 0 to STREAMREC_RATING_SCALE (default 5)   [value]
  type       view, click, cart, purchase, rating or review; without this column every row
             is a rating                [event_type]
  text       optional review text       [review]
Ids are kept exactly as written (007 stays 007). Each row is checked on its own: a bad row is
left out and reported by line and reason (all of them with --rejects), the rest published.
Importing the same file twice applies nothing new (event ids come from the row's content).

Catalogue CSV (--items): id, title, and optionally categories (separated by |), text, image
(a PNG or JPEG file, relative to the CSV) and ts; published to the `content` topic.

Exit status: 0 every row published; 1 published, but some rows were left out; 2 nothing
published (a missing file, an unreachable Kafka, ...).

example: streamrec import ratings.csv --items items.csv --wait
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec",
        description="streamrec: an event-driven, streaming recommender (Kafka, Faust, Redis, "
        "ALS, FastAPI).",
        epilog=EPILOG_ENV,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    up = sub.add_parser(
        "up",
        help="run the whole system until Ctrl-C",
        description="Run the worker and the API, and, when STREAMREC_KAFKA_URL and "
        "STREAMREC_REDIS_URL are unset, an embedded Kafka-compatible broker (Tansu) and Valkey "
        "on free loopback ports, all removed again on exit. Prints the API's address, an API "
        "key with every scope, and an export line for another shell.",
        epilog=EPILOG_ENV,
    )
    up.add_argument("--port", type=int, help="API port (default STREAMREC_API_PORT, 8000)")
    up.add_argument(
        "--cluster",
        action="store_true",
        help="embedded only: a 3-primary Valkey Cluster, 6 partitions, 2 workers, 2 API "
        "processes, model versions in a local S3 server (see docs/operations.md)",
    )
    up.set_defaults(func=cmd_up)

    w = sub.add_parser(
        "worker",
        help="run the Faust worker against the configured Kafka and Redis",
        description="Consume the events and content topics, keep the features in Redis and the "
        "models current. Needs STREAMREC_KAFKA_URL, STREAMREC_REDIS_URL and "
        "STREAMREC_PSEUDONYM_KEY; creates the topics if missing. Run several for more "
        "throughput, never more than STREAMREC_TOPIC_PARTITIONS.",
    )
    w.add_argument("--loglevel", default="info", help="Faust's log level (default info)")
    w.set_defaults(func=cmd_worker)

    a = sub.add_parser(
        "api",
        help="run the HTTP API against the configured Kafka and Redis",
        description="Serve the /v1 HTTP API (uvicorn, one process) on STREAMREC_API_HOST and "
        "STREAMREC_API_PORT. Needs STREAMREC_KAFKA_URL, STREAMREC_REDIS_URL, "
        "STREAMREC_PSEUDONYM_KEY and STREAMREC_MASTER_KEYS, and the worker's "
        "STREAMREC_DATA_DIR (model artifacts).",
    )
    a.add_argument("--port", type=int, help="port (default STREAMREC_API_PORT, 8000)")
    a.set_defaults(func=cmd_api)

    d = sub.add_parser(
        "demo",
        help="replay MovieLens through the system and show recommendations",
        description="Start an embedded system, publish the MovieLens movies and 100,004 ratings, "
        "wait until the worker applied them and a model covers them, and print three users' "
        "recommendations fetched over HTTP.",
    )
    d.add_argument("--serve", action="store_true", help="keep running afterwards, as `up` does")
    d.add_argument("--port", type=int, help="API port with --serve (default 8000)")
    d.add_argument("--limit", type=int, default=None, help="replay only the first N ratings")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser(
        "import",
        help="publish a history CSV, a catalogue CSV or the MovieLens sample",
        description=IMPORT_HELP,
        formatter_class=raw,
        epilog=EPILOG_ENV,
    )
    i.add_argument("file", type=Path, nargs="?", help="history CSV (see above)")
    i.add_argument("--items", type=Path, metavar="FILE", help="catalogue CSV (see above)")
    i.add_argument(
        "--movielens",
        action="store_true",
        help="the MovieLens sample: 9,066 movies, 100,004 ratings",
    )
    i.add_argument("--limit", type=int, metavar="N", help="publish only the first N events")
    i.add_argument(
        "--delimiter", default=",", metavar="C", help="field separator: one character or 'tab'"
    )
    i.add_argument("--rejects", type=Path, metavar="PATH", help="write every left-out row here")
    i.add_argument(
        "--wait",
        action="store_true",
        help="wait until the worker applied them and a model covers them (needs "
        "STREAMREC_REDIS_URL)",
    )
    i.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits (600)")
    i.set_defaults(func=cmd_import)

    from streamrec.admin import add_models_parser, add_parser as add_keys

    add_keys(sub)
    add_models_parser(sub)
    m = sub.add_parser(
        "metrics",
        help="watch the metrics topic live (or --json)",
        description="Tail the metrics topic: a live console of throughput, lag, freshness, API "
        "latency and served versions, or with --json one record per line as published "
        "(docs/monitoring.md). Needs STREAMREC_KAFKA_URL (the export line `streamrec up` prints).",
        epilog=EPILOG_ENV,
    )
    m.add_argument("--json", action="store_true", help="print the records as JSON lines")
    m.add_argument(
        "--from-beginning", action="store_true", help="start from the oldest retained record"
    )
    m.add_argument("--seconds", type=float, default=None, help="stop after this long")
    m.set_defaults(func=cmd_metrics)
    b = sub.add_parser("bench", help="run benchmarks; JSON and a table")
    b.add_argument(
        "which",
        choices=[
            "ingest",
            "faults",
            "quality",
            "freshness",
            "serve",
            "content",
            "monitor",
            "erasure",
            "chaos",
            "scale",
            "all",
        ],
    )
    b.add_argument("--json", type=Path, default=None, help="JSON path (one benchmark)")
    b.add_argument("--out", type=Path, default=Path("bench-results"), help="JSON directory")
    b.add_argument("--events", type=int, default=200_000)
    b.add_argument("--freshness-seconds", type=float, default=30.0)
    b.add_argument("--prequential-events", type=int, default=5000, help="quality: events replayed")
    b.add_argument("--seconds", type=float, default=20.0, help="serve: load duration per endpoint")
    b.add_argument("--chaos-seconds", type=float, default=300.0, help="chaos: traffic duration")
    b.add_argument("--chaos-rate", type=float, default=2000.0, help="chaos: records per second")
    b.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="serve: py-spy's stacks of the API under load to this file, a summary beside",
    )
    b.set_defaults(func=cmd_bench)
    return parser


def _settings_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = "STREAMREC_" + "_".join(str(p) for p in first["loc"]).upper()
    return f"{name}: {first['msg']}"


def _run(args: argparse.Namespace) -> int:
    """Run the command; every failure becomes one line on stderr."""
    import redis
    from kafka.errors import KafkaError

    settings: Settings | None = None
    try:
        settings = Settings()
        rc: int = args.func(settings, args)
        return rc
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        print(f"streamrec: {_settings_error(exc)}", file=sys.stderr)
    except StreamrecError as exc:
        print(f"streamrec: {exc}", file=sys.stderr)
    except redis.RedisError as exc:
        url = redacted(settings.redis_url or "") if settings else ""
        print(f"streamrec: Redis at {url} (STREAMREC_REDIS_URL): {exc}", file=sys.stderr)
    except KafkaError as exc:
        url = redacted(settings.kafka_url or "") if settings else ""
        print(f"streamrec: Kafka at {url} (STREAMREC_KAFKA_URL): {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"streamrec: {exc}", file=sys.stderr)
    except Exception as exc:
        if os.environ.get("STREAMREC_DEBUG"):
            raise
        print(
            f"streamrec: unexpected error: {type(exc).__name__}: {exc} "
            "(STREAMREC_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command in {"worker", "api"} else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python's selector warns about its own slow tasks while we produce in bulk, and logs
    # connection failures that the command reports itself in one line.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return _run(args)
