"""`/v1/events`: publish a batch of user events to Kafka."""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException

from api.auth import WriteKey
from api.deps import LimiterDep, PublisherDep
from api.publisher import Publisher, PublishError, validate_batch
from api.schemas import AUTH_ERRORS, KAFKA_DOWN, AcceptedOut, EventsIn, Rejected
from recommender.privacy.access import ApiKey, RateLimiter
from streams.records import EventV1

router = APIRouter(prefix="/v1/events", tags=["events"], responses=AUTH_ERRORS)


async def publish_rows(
    publisher: Publisher,
    limiter: RateLimiter,
    key: ApiKey,
    topic: str,
    records: list[tuple[str, bytes]],
    rejected: list[tuple[int, str]],
) -> AcceptedOut:
    """Publish the valid records (acknowledged by Kafka before the answer); list the others.
    What is published is charged to the key's ingest bucket first: one unit per record and
    per KiB, so that the request limit is not a thousand events' worth a request."""
    cost = len(rejected) + sum(1 + len(value) // 1024 for _, value in records)
    wait_s = await limiter.charge(key.key_id, cost)
    if wait_s > 0:
        raise HTTPException(
            429,
            "ingest rate exceeded for this API key (STREAMREC_API_INGEST_PER_S: records and "
            "KiB per second)",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )
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
async def post_events(
    body: EventsIn, publisher: PublisherDep, limiter: LimiterDep, key: WriteKey
) -> AcceptedOut:
    """Up to 1,000 events in the `events` topic's schema, each validated on its own."""
    return await publish_rows(
        publisher, limiter, key, publisher.events_topic, *validate_batch(body.events, EventV1)
    )
