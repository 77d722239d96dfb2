"""`streamrec import`: history and catalogue files, and the MovieLens sample, published to Kafka.

Files are read with the `csv` module, every cell as text and every row with the line it starts
on, so that ids stay exactly as written and a bad row is reported by its line. Rows are checked
one by one; a bad row is left out and reported, the rest are published.
"""

from __future__ import annotations

import argparse
import base64
import csv
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recommender.errors import ConfigurationError, InvalidRecordError, StreamrecError
from recommender.settings import Settings
from streamrec.progress import Progress
from streamrec.ratings_csv import ImportReport, Reject, clean_history
from streams.records import ContentV1, validate

#: The largest cell we read; longer text is then refused by the row checks, not by `csv`.
FIELD_LIMIT = 16 * 1024 * 1024
#: Column names of a catalogue file (case and surrounding spaces ignored), mapped to ours.
ITEM_ALIASES = {
    "id": "item_id",
    "item": "item_id",
    "item_id": "item_id",
    "itemid": "item_id",
    "movieid": "item_id",
    "movie_id": "item_id",
    "title": "title",
    "name": "title",
    "categories": "categories",
    "category": "categories",
    "genres": "categories",
    "text": "text",
    "description": "text",
    "image": "image",
    "ts": "ts",
    "timestamp": "ts",
}
#: Categories in one cell are separated by this (MovieLens' convention).
CATEGORY_SEPARATOR = "|"


class ImportFileError(StreamrecError):
    """A file that cannot be imported at all (missing, empty, unreadable, wrong columns)."""


@dataclass
class Table:
    """A CSV file as text: the header, the rows that have its shape, and the ones that don't."""

    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    malformed: list[Reject] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.header, dtype=object)


def delimiter_of(text: str) -> str:
    """`--delimiter`: one character, or `tab`."""
    value = "\t" if text in {"tab", "\\t"} else text
    if len(value) != 1:
        raise ImportFileError(f"--delimiter must be one character or 'tab', not {text!r}")
    return value


def read_table(path: Path, delimiter: str = ",") -> Table:
    """Every cell of ``path`` as text (UTF-8, an optional BOM), rows with their line numbers.

    A row whose number of fields differs from the header's, or that is not UTF-8, is kept aside
    as malformed; blank lines are skipped."""
    if not path.exists():
        raise ImportFileError(f"no such file: {path}")
    if path.is_dir():
        raise ImportFileError(f"{path} is a directory, not a CSV file")
    csv.field_size_limit(FIELD_LIMIT)
    # surrogateescape: one undecodable byte spoils its row, not the whole file.
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header: list[str] | None = None
        table = Table([])
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                table.malformed.append(Reject(start, f"unreadable CSV row: {exc}", ""))
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if len(row) <= 1 and not "".join(row).strip():
                continue  # a blank line (a row of empty cells is reported, not skipped)
            if header is None:
                header = table.header = [c.strip() for c in row]
                continue
            if any(_undecodable(cell) for cell in row):
                table.malformed.append(Reject(line, "not UTF-8 text", ""))
            elif len(row) != len(header):
                table.malformed.append(
                    Reject(
                        line,
                        f"{len(row)} fields where the header has {len(header)}",
                        delimiter.join(row)[:80],
                    )
                )
            else:
                table.rows.append(row)
                table.lines.append(line)
    if header is None:
        raise ImportFileError(
            f"{path} is empty: expected a header line such as user,item,rating,timestamp"
        )
    return table


def _undecodable(cell: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in cell)


def read_history(
    path: Path, rating_scale: float, delimiter: str = ","
) -> tuple[pd.DataFrame, ImportReport]:
    """A history file validated row by row (see `streamrec.ratings_csv.clean_history`)."""
    table = read_table(path, delimiter)
    try:
        events, report = clean_history(table.frame(), rating_scale, table.lines)
    except InvalidRecordError as exc:
        raise ImportFileError(f"{path}: {exc}") from None
    report.rows_read += len(table.malformed)
    report.rejects = sorted(table.malformed + report.rejects, key=lambda r: r.line)
    return events, report


def read_items(
    path: Path, delimiter: str = ",", now_ms: int | None = None
) -> tuple[list[ContentV1], ImportReport]:
    """A catalogue file (item id, title, and optionally categories separated by `|`, text, an
    image file path relative to the CSV, a timestamp) as content items, each checked against
    the `content` topic's schema."""
    table = read_table(path, delimiter)
    names = [ITEM_ALIASES.get(h.strip().lower(), h) for h in table.header]
    if not {"item_id", "title"} <= set(names):
        raise ImportFileError(
            f"{path}: a catalogue needs columns id and title (and optionally categories, text, "
            f"image, ts); found {', '.join(table.header) or 'none'}"
        )
    report = ImportReport(len(table.rows) + len(table.malformed), list(table.malformed))
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    items: list[ContentV1] = []
    for row, line in zip(table.rows, table.lines, strict=True):
        cells = dict(zip(names, row, strict=True))
        try:
            items.append(validate(ContentV1, _item_record(cells, path.parent, now)))
        except (InvalidRecordError, ImportFileError) as exc:
            report.rejects.append(Reject(line, str(exc), cells.get("item_id", "")[:80]))
    report.rejects.sort(key=lambda r: r.line)
    return items, report


def _item_record(cells: dict[str, str], base: Path, now_ms: int) -> dict[str, object]:
    record: dict[str, object] = {
        "item_id": cells["item_id"].strip(),
        "title": cells["title"].strip(),
        "categories": [
            c.strip()
            for c in cells.get("categories", "").split(CATEGORY_SEPARATOR)
            if c.strip() and c.strip() != "(no genres listed)"
        ],
        "ts": now_ms,
    }
    if cells.get("text", "").strip():
        record["text"] = cells["text"].strip()
    if cells.get("ts", "").strip():
        stamp = cells["ts"].strip()
        record["ts"] = int(stamp) if stamp.isdigit() else stamp  # the schema says why not
    if cells.get("image", "").strip():
        image = (base / cells["image"].strip()).resolve()
        try:
            record["image"] = base64.b64encode(image.read_bytes()).decode()
        except OSError as exc:
            raise ImportFileError(f"image: cannot read {image}: {exc.strerror}") from None
    return record


def write_rejects(path: Path, reports: Iterator[tuple[str, ImportReport]]) -> int:
    """Every left-out row as CSV (file, line, reason, value); returns how many."""
    count = 0
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "line", "reason", "value"])
        for name, report in reports:
            for r in report.rejects:
                out.writerow([name, r.line, r.reason, r.value])
                count += 1
    return count


@dataclass
class Source:
    """One thing to publish: a name for messages, its events and items, and its report."""

    name: str
    report: ImportReport
    events: pd.DataFrame | None = None
    items: list[ContentV1] = field(default_factory=list)


def _movielens(rating_scale: float) -> list[Source]:
    from streamrec.movielens import load_ratings, movies

    ratings = load_ratings()
    catalogue = list(movies(ratings))
    events, report = clean_history(ratings, rating_scale)
    return [
        Source("MovieLens movies", ImportReport(len(catalogue)), items=catalogue),
        Source("MovieLens ratings", report, events=events),
    ]


def read_sources(settings: Settings, args: argparse.Namespace) -> list[Source]:
    """Everything the command was asked to import, read and checked before anything is sent."""
    if not (args.file or args.items or args.movielens):
        raise ImportFileError(
            "nothing to import: give a history FILE, --items FILE or --movielens "
            "(`streamrec import --help` shows the formats)"
        )
    delimiter = delimiter_of(args.delimiter)
    sources: list[Source] = []
    if args.movielens:
        sources += _movielens(settings.rating_scale)
    if args.items:
        items, report = read_items(args.items, delimiter)
        sources.append(Source(str(args.items), report, items=items))
    if args.file:
        events, report = read_history(args.file, settings.rating_scale, delimiter)
        sources.append(Source(str(args.file), report, events=events))
    if args.limit is not None:
        for source in sources:
            if source.events is not None:
                source.events = source.events.head(max(args.limit, 0))
    return sources


def _describe(source: Source) -> None:
    kind = "events" if source.events is not None else "items"
    kept = len(source.events) if source.events is not None else len(source.items)
    r = source.report
    left_out = len(r.rejects) + len(r.duplicate_lines)
    tail = f", {len(r.rejects):,} left out" if r.rejects else ""
    print(f"{source.name}: {r.rows_read:,} rows, {kept:,} {kind} to publish{tail}")
    if left_out:
        for line in r.describe():
            print(f"  {line}")


def run_import(settings: Settings, args: argparse.Namespace) -> int:
    """`streamrec import`: read and check everything, then publish; 0, or 1 if rows were left
    out (the rest published)."""
    from recommender.store.connections import check_redis, redis_sync
    from streamrec.progress import read_progress, wait_until_served
    from streamrec.publish import publish_events, publish_items
    from streams.kafka import check_kafka, kafka_security
    from streams.producer import EventProducer

    if not settings.kafka_url:
        raise ConfigurationError(
            "STREAMREC_KAFKA_URL is not set: point it at the running system's broker "
            "(`streamrec up` prints an export line with it)"
        )
    if args.wait and not settings.redis_url:
        raise ConfigurationError("--wait reads the worker's progress: set STREAMREC_REDIS_URL too")
    sources = read_sources(settings, args)
    for source in sources:
        _describe(source)
    check_kafka(settings.kafka_url)
    client = None
    if args.wait:
        check_redis(settings.redis_url or "")
        client = redis_sync(settings.redis_url or "")
    before = read_progress(client) if client is not None else None
    progress = sys.stderr.isatty()
    sent_events = sent_items = 0
    with EventProducer(
        settings.kafka_url,
        settings.topic_events,
        settings.topic_content,
        **kafka_security(settings),
    ) as out:
        for source in sources:
            if source.items:
                sent_items += publish_items(out, source.items, len(source.items), progress)
        for source in sources:
            if source.events is not None:
                sent_events += publish_events(out, source.events, progress)
    print(
        f"published {sent_events:,} events to `{settings.topic_events}` and {sent_items:,} items "
        f"to `{settings.topic_content}`"
    )
    rejected = sum(len(s.report.rejects) for s in sources)
    if args.rejects is not None:
        n = write_rejects(args.rejects, iter([(s.name, s.report) for s in sources]))
        print(f"wrote {n:,} left-out rows to {args.rejects}")
    if client is not None and before is not None:
        try:
            done = wait_until_served(
                lambda: read_progress(client),
                before.processed + sent_events,
                settings.als_min_events,
                args.timeout,
            )
        finally:
            client.close()
        print(_outcome(done, settings))
    return 1 if rejected else 0


def _outcome(done: Progress, settings: Settings) -> str:
    applied, served = done.applied, done.served
    if served is not None and served.watermark >= applied:
        return f"the worker has applied {applied:,} events; model {served.version} covers them"
    if served is not None:
        return (
            f"the worker has applied {applied:,} events; model {served.version} (fitted on "
            f"{served.watermark:,}) is still served: `streamrec models list` says why"
        )
    return (
        f"the worker has applied {applied:,} events; no model yet: the first fit needs "
        f"{settings.als_min_events:,} (STREAMREC_ALS_MIN_EVENTS), and recommendations are popular "
        "items until then"
    )
