"""The `streamrec` command: up, worker, api, demo, import, keys, models, bench."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

# implicit warns, and runs slower, when OpenBLAS spawns its own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from recommender.errors import StreamrecError
from recommender.settings import Settings


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from streamrec.runtime import Runtime

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    rt = Runtime(settings)
    try:
        rt.start()
        s = rt.settings
        print(
            f"streamrec is up.\n  API:   {rt.api_url}  (GET {rt.api_url}/v1/users/1/"
            f"recommendations)\n  Kafka: {s.kafka_url}\n  Redis: {s.redis_url}\n"
            f"  logs:  {rt.log_dir}\n"
        )
        if rt.embedded:
            token = rt.create_api_key({"read", "write", "admin"}, "embedded")
            print(
                f"An API key for this run (all scopes; header X-API-Key):\n  {token}\n"
                f"  e.g. curl -H 'X-API-Key: {token}' {rt.api_url}/v1/items/popular\n"
            )
        if rt.embedded:
            print(
                "To publish, or manage keys and models, from another shell (throwaway secrets "
                "of this run):\n"
                f"  export STREAMREC_KAFKA_URL={s.kafka_url} STREAMREC_REDIS_URL={s.redis_url} "
                f"STREAMREC_DATA_DIR={s.data_dir} STREAMREC_PSEUDONYM_KEY="
                f"{s.pseudonym_key.get_secret_value() if s.pseudonym_key else ''} "
                f"STREAMREC_MASTER_KEYS="
                f"{s.master_keys.get_secret_value() if s.master_keys else ''}\n"
            )
        print("Ctrl-C stops everything.", flush=True)
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
    import uvicorn

    from api.app import create_app

    app = create_app(settings)
    uvicorn.run(
        app, host=settings.api_host, port=settings.api_port, log_level="warning", access_log=False
    )
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from streamrec.demo import run_demo

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    return run_demo(settings, serve=args.serve, limit=args.limit)


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    import pandas as pd

    from recommender.history import clean_history
    from streamrec.publish import publish_events
    from streams.kafka import bootstrap_servers
    from streams.producer import EventProducer

    if not settings.kafka_url:
        raise StreamrecError(
            "set STREAMREC_KAFKA_URL to the running system's broker (`streamrec up` prints it)"
        )
    events, report = clean_history(pd.read_csv(args.file))
    with EventProducer(
        bootstrap_servers(settings.kafka_url), settings.topic_events, settings.topic_content
    ) as producer:
        sent = publish_events(producer, events, progress=sys.stderr.isatty())
    print(
        f"read {report.rows_read} rows: dropped {report.missing_dropped} with missing values, "
        f"{report.invalid_dropped} with an unknown type, {report.duplicates_dropped} duplicates; "
        f"published {sent} events to {settings.topic_events}"
    )
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from streamrec.bench.faults import run_faults
    from streamrec.bench.freshness import run_freshness
    from streamrec.bench.ingest import run_ingest
    from streamrec.bench.quality import run_quality
    from streamrec.bench.serve import run_serve

    out: Path = args.out
    if args.which in {"faults", "all"}:
        run_faults(settings, json_path=args.json or out / "faults.json")
    if args.which in {"quality", "all"}:
        run_quality(
            settings,
            json_path=args.json or out / "quality.json",
            chart_path=out / "quality.png",
            prequential_events=args.prequential_events,
        )
    if args.which in {"freshness", "all"}:
        run_freshness(settings, json_path=args.json or out / "freshness.json")
    if args.which in {"serve", "all"}:
        run_serve(settings, seconds=args.seconds, json_path=args.json or out / "serve.json")
    if args.which in {"ingest", "all"}:
        run_ingest(
            settings,
            events=args.events,
            freshness_s=args.freshness_seconds,
            json_path=args.json or out / "ingest.json",
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "up", help="run the whole system (embedded Kafka and Valkey if no URLs)"
    ).set_defaults(func=cmd_up)
    w = sub.add_parser("worker", help="run the Faust worker against the configured URLs")
    w.add_argument("--loglevel", default="info")
    w.set_defaults(func=cmd_worker)
    sub.add_parser("api", help="run the HTTP API against the configured URLs").set_defaults(
        func=cmd_api
    )
    d = sub.add_parser("demo", help="replay MovieLens through the system and show recommendations")
    d.add_argument("--serve", action="store_true", help="keep running afterwards")
    d.add_argument("--limit", type=int, default=None, help="replay only the first N ratings")
    d.set_defaults(func=cmd_demo)
    i = sub.add_parser("import", help="publish a history CSV (user,item,rating|type,timestamp)")
    i.add_argument("file", type=Path)
    i.set_defaults(func=cmd_import)
    from streamrec.admin import add_models_parser
    from streamrec.admin import add_parser as add_keys

    add_keys(sub)
    add_models_parser(sub)
    b = sub.add_parser("bench", help="run benchmarks; JSON and a table")
    b.add_argument("which", choices=["ingest", "faults", "quality", "freshness", "serve", "all"])
    b.add_argument("--json", type=Path, default=None, help="JSON path (one benchmark)")
    b.add_argument("--out", type=Path, default=Path("bench-results"), help="JSON directory")
    b.add_argument("--events", type=int, default=200_000)
    b.add_argument("--freshness-seconds", type=float, default=30.0)
    b.add_argument("--prequential-events", type=int, default=5000, help="quality: events replayed")
    b.add_argument("--seconds", type=float, default=20.0, help="serve: load duration per endpoint")
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command in {"worker", "api"} else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python's selector warns about its own slow tasks while we produce in bulk.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        settings = Settings()
        rc: int = args.func(settings, args)
        return rc
    except StreamrecError as exc:
        print(f"streamrec: {exc}", file=sys.stderr)
        return 2
