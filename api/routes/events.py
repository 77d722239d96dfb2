"""`/v1/events`: publish a batch of user events to Kafka."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.auth import WriteKey
from api.deps import PublisherDep
from api.publisher import Publisher, PublishError, validate_batch
from api.schemas import AUTH_ERRORS, KAFKA_DOWN, AcceptedOut, EventsIn, Rejected
from streams.records import EventV1

router = APIRouter(prefix="/v1/events", tags=["events"], responses=AUTH_ERRORS)


async def publish_rows(
    publisher: Publisher,
    topic: str,
    records: list[tuple[str, bytes]],
    rejected: list[tuple[int, str]],
) -> AcceptedOut:
    """Publish the valid records (acknowledged by Kafka before the answer); list the others."""
    try:
        await publisher.publish(topic, records)
    except PublishError as exc:
        raise HTTPException(503, str(exc)) from None
    return AcceptedOut(
        accepted=len(records),
        rejected=len(rejected),
        errors=[Rejected(index=i, reason=why) for i, why in rejected],
    )


@router.post("", status_code=202, response_model=AcceptedOut, responses=KAFKA_DOWN)
async def post_events(body: EventsIn, publisher: PublisherDep, _: WriteKey) -> AcceptedOut:
    """Up to 1,000 events in the `events` topic's schema, each validated on its own."""
    return await publish_rows(
        publisher, publisher.events_topic, *validate_batch(body.events, EventV1)
    )
