"""Every topic name and record schema of streamrec (version 1), and their decoders.

Records are JSON. Events are keyed by `user_id` (one user's events stay in one partition, in
order); content by `item_id`. A record that fails here goes to the dead-letter topic.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from models.pixels import ImageDecodeError, decode_image
from recommender.errors import InvalidRecordError
from recommender.monitoring.metrics import MetricPoint
from recommender.settings import Settings
from recommender.types import ID_PATTERN, MAX_ID_CHARS, EventType, Interaction, ItemMeta

#: Under the 1 MiB a Kafka producer (`max.request.size`) and broker (`message.max.bytes`) take
#: by default: a valid record always publishes, and a bigger one is refused as invalid (422 at
#: the API), not as a Kafka failure (a 503 would invite retries of a permanent error).
MAX_RECORD_BYTES = 1_000_000
MAX_TEXT_CHARS = 20_000
#: Its base64 (4/3 of it) and the record's other fields stay under MAX_RECORD_BYTES.
MAX_IMAGE_BYTES = 700_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]
#: Epoch milliseconds up to the year 2286; strict, so `true` or `"1"` is no timestamp.
Millis = Annotated[int, Strict(), Field(ge=0, le=10**13, description="epoch milliseconds")]


def topic_names(settings: Settings) -> list[str]:
    """Every topic streamrec uses, in creation order."""
    return [
        settings.topic_events,
        settings.topic_content,
        settings.topic_metrics,
        settings.topic_dead_letter,
    ]


class EventV1(BaseModel):
    """A user event on the `events` topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    user_id: Id
    item_id: Id
    type: EventType
    value: float | None = Field(None, ge=-1e9, le=1e9)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    ts: Millis
    recommendation_id: Id | None = Field(
        None, description="The `recommendation_id` of the list this event answers, if any"
    )

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v

    @property
    def partition_key(self) -> str:
        return self.user_id

    def to_interaction(self, pseudonym: Callable[[str], str] | None = None) -> Interaction:
        """The domain record, with the user's pseudonym when ``pseudonym`` is given."""
        return Interaction(
            self.event_id,
            self.user_id,
            self.item_id,
            self.type,
            self.ts,
            self.value,
            self.text,
            self.recommendation_id,
            pseudonym=pseudonym(self.user_id) if pseudonym is not None else None,
        )


class ContentV1(BaseModel):
    """A content item on the `content` topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    item_id: Id
    title: str = Field(min_length=1, max_length=500)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    categories: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    image: str | None = Field(None, description="base64 PNG or JPEG")
    ts: Millis

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if len(v) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise ValueError(f"image over {MAX_IMAGE_BYTES} bytes")
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("image is not valid base64") from exc
        if not (raw.startswith(PNG_MAGIC) or raw.startswith(JPEG_MAGIC)):
            raise ValueError("image is neither PNG nor JPEG")
        try:
            decode_image(raw)  # the right first bytes are not yet an image
        except ImageDecodeError as exc:
            raise ValueError(str(exc)) from None
        return v

    @property
    def partition_key(self) -> str:
        return self.item_id

    def to_item(self) -> ItemMeta:
        return ItemMeta(
            self.item_id, self.title, self.ts, self.text, tuple(self.categories), self.image
        )


class DeadLetterV1(BaseModel):
    """What the dead-letter topic holds: the reason, where the record came from (its topic,
    partition and offset find it while Kafka keeps it), and a bounded, redacted prefix of it
    (`streams.dead_letters`): a dead letter always fits the producer's request limit and holds
    no personal field in clear."""

    reason: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    original_b64: str = Field(description="The original, redacted and cut to a prefix")
    original_bytes: int | None = Field(None, description="The original's full size")
    original_sha256: str | None = Field(None, description="Of the original's full bytes")
    truncated: bool = False
    failed_at: int


#: The CloudEvents `type` of a metric record; a consumer that meets another type skips it.
METRIC_TYPE: Final = "io.streamrec.metric.v1"
#: ... and of a monitor's decision.
DECISION_TYPE: Final = "io.streamrec.decision.v1"


class MetricDataV1(BaseModel):
    """One metric over one window, shaped like an OpenTelemetry data point."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    kind: Literal["sum", "gauge", "histogram"]
    unit: str
    labels: dict[str, str]
    start_ms: Millis = Field(description="window start, inclusive")
    end_ms: Millis = Field(description="window end, exclusive")
    value: float | None = Field(None, description="a sum's count in the window, a gauge's value")
    bounds: list[float] | None = Field(None, description="histogram bucket upper bounds")
    counts: list[int] | None = Field(
        None, description="observations per bucket; one more than `bounds` (the last is open)"
    )
    sum: float | None = Field(None, description="histogram: sum of the observations")
    count: int | None = Field(None, description="histogram: number of observations")


class _Envelope(BaseModel):
    """A CloudEvents 1.0 envelope in structured JSON mode."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    source: str = Field(
        description="`/streamrec/worker/<instance>`, `/streamrec/api/<instance>`, or "
        "`/streamrec/api/<instance>/<pid>` where API processes share an instance"
    )
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    time: str = Field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"),
        description="RFC 3339: when the record was made",
    )
    datacontenttype: Literal["application/json"] = "application/json"
    signature: str | None = Field(
        None,
        description="HMAC-SHA256 of the record without it (`streams.signing`): the monitor acts "
        "only on signed records",
    )


class MetricV1(_Envelope):
    """A record on the `metrics` topic: one metric point. Keyed by the metric's name, so a
    consumer can partition by metric."""

    type: Literal["io.streamrec.metric.v1"] = METRIC_TYPE
    data: MetricDataV1

    @property
    def partition_key(self) -> str:
        return self.data.name


class DecisionDataV1(BaseModel):
    """A lifecycle decision taken by the monitor."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    family: str
    action: Literal["refit", "promote", "rollback"]
    version: str = Field(
        description="promote/rollback: the version now served; refit: the "
        "served version that degraded"
    )
    reason: str
    at_ms: Millis


class DecisionV1(_Envelope):
    """A record on the `metrics` topic: what the monitor decided, and why. Keyed `decision`."""

    type: Literal["io.streamrec.decision.v1"] = DECISION_TYPE
    data: DecisionDataV1

    @property
    def partition_key(self) -> str:
        return "decision"


def metric_record(point: MetricPoint, source: str) -> MetricV1:
    """The metrics-topic record for one point."""
    histogram = point.kind == "histogram"
    return MetricV1(
        source=source,
        data=MetricDataV1(
            name=point.name,
            kind=point.kind,
            unit=point.unit,
            labels=point.labels,
            start_ms=point.start_ms,
            end_ms=point.end_ms,
            value=None if histogram else point.value,
            bounds=list(point.bounds) if histogram else None,
            counts=list(point.counts) if histogram else None,
            sum=point.total if histogram else None,
            count=point.count if histogram else None,
        ),
    )


def decode_metric(raw: bytes) -> MetricV1:
    """Bytes from `metrics` to a MetricV1, or `InvalidRecordError` saying why not."""
    return _decode(MetricV1, raw)


def decode_metrics_record(raw: bytes) -> MetricV1 | DecisionV1:
    """Bytes from `metrics` to a metric or a decision, by its `type`; `InvalidRecordError` for
    a record of neither."""
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecordError(f"record of {len(raw)} bytes is over {MAX_RECORD_BYTES}")
    try:
        return _METRICS_RECORD.validate_json(raw)
    except ValidationError as exc:
        raise _reason(exc) from None


M = TypeVar("M", bound=BaseModel)

_METRICS_RECORD: TypeAdapter[MetricV1 | DecisionV1] = TypeAdapter(
    Annotated[MetricV1 | DecisionV1, Field(discriminator="type")]
)


def _reason(exc: ValidationError) -> InvalidRecordError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return InvalidRecordError(f"{where}: {first['msg']}")


def _decode(model: type[M], raw: bytes) -> M:
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecordError(f"record of {len(raw)} bytes is over {MAX_RECORD_BYTES}")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _reason(exc) from None


def validate(model: type[M], obj: object) -> M:
    """An already-parsed JSON value (e.g. from an HTTP body) as ``model``, or
    `InvalidRecordError` with the same reason the dead-letter topic would give."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise _reason(exc) from None


def decode_event(raw: bytes, pseudonym: Callable[[str], str] | None = None) -> Interaction:
    """Bytes from `events` to an Interaction (with the user's ``pseudonym`` when given), or
    `InvalidRecordError` saying why not."""
    return _decode(EventV1, raw).to_interaction(pseudonym)


def decode_content(raw: bytes) -> ItemMeta:
    """Bytes from `content` to an ItemMeta, or `InvalidRecordError` saying why not."""
    return _decode(ContentV1, raw).to_item()


def encode(record: BaseModel) -> bytes:
    return record.model_dump_json(exclude_none=True).encode()
