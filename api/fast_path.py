"""The common recommendations request, answered in front of FastAPI's routing and middleware.

`GET /v1/users/{user_id}/recommendations`, with no query or only `k`, is what clients call most.
Through FastAPI it passes a dozen ASGI layers (error handling, four body-limit layers, our
hardening, routers, an exit stack), dependency solving and validation before the service is
asked: ad hoc, in a py-spy profile of `bench serve`, 37% of the API's samples were under
FastAPI's request handler and 15% under dependency solving alone, against 17% under the service
call. Answered as a middleware inside that stack, the layers around it and their wrappers of
`send` still took about a tenth of the API's samples.

`RecommendationsFastPath.answer` answers that request itself, before FastAPI sees it, when it is
well formed and its key is valid, holds the `read` scope and is within its rate: the same checks
(`api.auth.authorize`), the same answer (`Recommending.answer`), the same
JSON, the same headers (`api.middleware.SECURITY_HEADERS`) and request metrics. Every other
request goes on to FastAPI untouched: another route or method, another query parameter, an id
or `k` the route would refuse, a missing, bad, under-scoped or limited key. So every error
answer (401, 403, 422, 429) and the OpenAPI document still come from the declared route, and a
request is never half-answered here: what this path refuses it has not charged to the key.

While serving keeps a user's answer (`RecommendationService.answers`: the same object while it
stands), its JSON is kept too, around the one field that changes per request (`encoded`).
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import TypeAdapter
from starlette.types import Scope, Send

from api.auth import API_KEY_HEADER, authorize
from api.deps import Recommending, document
from api.middleware import SECURITY_HEADERS
from api.services import services_of
from api.telemetry import ApiMetrics
from recommender.privacy.access import ApiKey
from recommender.serving.answers import ANSWERS_KEPT, Recommendations
from recommender.serving.service import RecommendationService
from recommender.types import ID_PATTERN, MAX_ID_CHARS

#: The declared route this path stands in for (`api/routes/users.py`).
ROUTE_PATH = "/v1/users/{user_id}/recommendations"
PREFIX, _, SUFFIX = ROUTE_PATH.partition("{user_id}")
DEFAULT_K = 10  # the route's default
_ID = re.compile(ID_PATTERN)
_HEADER = API_KEY_HEADER.lower().encode("latin-1")
_JSON = TypeAdapter(Any)  # pydantic's JSON writer, as FastAPI's for the route
_HEADERS = [(b"content-type", b"application/json"), *SECURITY_HEADERS]


def plain_request(scope: Scope) -> tuple[str, int] | None:
    """``(user_id, k)`` for a request this path may answer, else None (FastAPI answers it).

    ``k`` is only checked against the route's own bounds here; `max_k` by the caller."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    user_id = path[len(PREFIX) : -len(SUFFIX)]
    if not 0 < len(user_id) <= MAX_ID_CHARS or "/" in user_id or not _ID.match(user_id):
        return None
    query: bytes = scope["query_string"]
    if not query:
        return user_id, DEFAULT_K
    digits = query[2:]
    if not query.startswith(b"k=") or not digits.isdigit() or digits[:1] == b"0" or len(digits) > 4:
        return None
    k = int(digits)
    return (user_id, k) if 1 <= k <= 1000 else None


def _token(scope: Scope) -> str | None:
    """The key in `X-API-Key`, else in `Authorization: Bearer` (as `api.auth.require`)."""
    bearer = None
    for name, value in scope["headers"]:
        if name == _HEADER:  # the first, as Starlette's `headers.get` reads it
            return bytes(value).decode("latin-1") or None
        if name == b"authorization" and bearer is None:
            scheme, _, credentials = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials:
                bearer = credentials.strip()
    return bearer


def encoded(recs: Recommendations) -> tuple[bytes, bytes]:
    """The JSON of ``recs``'s document (`api.deps.document`) before and after its
    `recommendation_id`, a plain 32-hex-digit string that needs no escaping: the two and an id
    between them are what the route's JSON writer gives for the whole document."""
    whole = _JSON.dump_json(document(recs, ""))
    cut = whole.index(b'"recommendation_id":""') + len(b'"recommendation_id":"')
    return whole[:cut], whole[cut:]


class RecommendationsFastPath:
    """Answers the common recommendations request (`answer`); ``route`` is the declared route
    it stands in for, named in the request metrics."""

    def __init__(self, route: Any, telemetry: ApiMetrics) -> None:
        self.path = route.path
        self._telemetry = telemetry
        # (user, k) -> the answer the service returned and its JSON; dropped with the
        # service's memo of answers (its generation), which bounds what this one holds.
        self._encoded: dict[tuple[str, int], tuple[Recommendations, bytes, bytes]] = {}
        self._generation = -1

    def _body(
        self, service: RecommendationService, k: int, recs: Recommendations, rid: str
    ) -> bytes:
        key = (recs.user_id, k)
        if self._generation != service.answers.generation or len(self._encoded) > ANSWERS_KEPT:
            self._encoded.clear()
            self._generation = service.answers.generation
        held = self._encoded.get(key)
        if held is None or held[0] is not recs:
            held = self._encoded[key] = (recs, *encoded(recs))
        return held[1] + rid.encode() + held[2]

    async def answer(self, scope: Scope, send: Send) -> bool:
        """Answer ``scope`` if it is the common request and its key may make it; False when
        nothing was sent (FastAPI answers)."""
        found = plain_request(scope)
        state: dict[str, Any] | None = scope.get("state")
        token = _token(scope) if found is not None else None
        if found is None or token is None or state is None:
            return False
        started = time.perf_counter()
        user_id, k = found
        services = services_of(state)
        parts = Recommending.of(services)
        # A refused request took no token: the route's own check answers it (`authorize`).
        if k > parts.settings.max_k or not isinstance(
            await authorize(services, token, "read"), ApiKey
        ):
            return False
        status = 500
        try:
            recs = await parts.recommend(user_id, k)
            body = self._body(parts.service, k, recs, parts.served(recs))
            headers = [(b"content-length", str(len(body)).encode()), *_HEADERS]
            status = 200
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            ms = (time.perf_counter() - started) * 1000
            self._telemetry.request(self.path, "GET", status, ms)
        return True
