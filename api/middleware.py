"""ASGI middleware: security headers and request metrics (the body limit is FastAPI's own
`max_body_size`).

Plain ASGI rather than `BaseHTTPMiddleware`: it sits on every request, and adds no task per call.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.telemetry import ApiMetrics

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
]


class HardeningMiddleware:
    """Adds security headers to every response; counts and times requests by route."""

    def __init__(self, app: ASGIApp, telemetry: ApiMetrics) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            ms = (time.perf_counter() - started) * 1000
            self.telemetry.request(path, scope["method"], status, ms)
