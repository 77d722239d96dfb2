"""`/v1/dashboard`: the live dashboard's page and assets, and `/v1/metrics/stream`, the metrics
topic as server-sent events that it reads.

The page and its script hold no data and need no key (a browser cannot send a header when it
navigates); the stream they read needs a `read` key in `X-API-Key`, which the page takes from
its URL's fragment (`#key=...`, never sent to a server) or asks for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from api.auth import ReadKey
from api.deps import FeedDep
from api.services import services_of

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
#: The page runs only its own script and style, and talks only to this API.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/v1/dashboard")
async def page() -> Response:
    body = (STATIC / "dashboard.html").read_bytes()
    return Response(
        body, media_type="text/html; charset=utf-8", headers={"content-security-policy": CSP}
    )


@router.get("/v1/dashboard/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, "no such file")
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name])


@router.get("/v1/metrics/stream")
async def stream(request: Request, feed: FeedDep, key: ReadKey) -> StreamingResponse:
    """Every record of the metrics topic from now on (the last minute first), one
    server-sent event each: `data: <the record's JSON>`. At most
    `STREAMREC_API_STREAMS_PER_KEY` open per key and process (429 beyond)."""
    services = services_of(request.state)
    open_now = services.streams_open
    if open_now.get(key.key_id, 0) >= services.settings.api_streams_per_key:
        raise HTTPException(429, "this API key holds as many metric streams as it may")
    open_now[key.key_id] = open_now.get(key.key_id, 0) + 1

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": streamrec metrics\n\n"
            async for raw in feed.subscribe():
                if await request.is_disconnected():
                    break
                yield b"data: " + raw + b"\n\n"
        finally:
            open_now[key.key_id] -= 1
            if open_now[key.key_id] <= 0:
                del open_now[key.key_id]

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"x-accel-buffering": "no"},  # proxies must not hold the stream back
    )
