"""Authentication (an API key in `X-API-Key`, or as `Authorization: Bearer`, as Prometheus sends
it), authorization (scopes) and the rate limit.

`authorize(services, token, scope)` is the one check: every route but the health probes depends
on `require(scope)`, which raises what it refuses (401 without a valid key, 403 when the key
lacks the scope, 429 with `Retry-After` when the key is over its rate); the fast path
(`api.fast_path`) calls it too, and leaves a refused request to the route.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.services import ApiServices, services_of
from recommender.privacy.access import ApiKey
from recommender.store.faults import is_infrastructure_fault

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="streamrec API key")
_bearer = HTTPBearer(auto_error=False, description="streamrec API key as a bearer token")
_CHALLENGE = {"WWW-Authenticate": "ApiKey"}


async def authorize(services: ApiServices, token: str | None, scope: str) -> ApiKey | HTTPException:
    """The key ``token`` stands for when it may make a request of ``scope`` now (one token of
    its rate taken), else the refusal the route answers with. A key over its rate takes no
    token, so asking again costs nothing."""
    if not token:
        return HTTPException(
            401,
            f"an API key is required in the {API_KEY_HEADER} header (or as a bearer token)",
            headers=_CHALLENGE,
        )
    key = await services.api_keys.verify(token)
    if key is None:
        return HTTPException(401, "the API key is invalid or revoked", headers=_CHALLENGE)
    if not key.allows(scope):
        return HTTPException(403, f"this API key lacks the '{scope}' scope")
    try:
        wait_s = await services.limiter.acquire(key.key_id)
    except Exception as exc:
        if not is_infrastructure_fault(exc):
            raise
        # Redis refuses the bucket's write (full, read-only, away): the limit cannot be kept
        # for now, and a refusal would fail every request; admitted (logged).
        log.warning("rate limit not applied: Redis refuses its bucket (%s)", exc)
        wait_s = 0.0
    if wait_s > 0:
        return HTTPException(
            429,
            "rate limit exceeded for this API key",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )
    return key


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits requests whose key holds ``scope``."""

    async def check(
        request: Request,
        token: Annotated[str | None, Security(_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> ApiKey:
        if token is None and bearer is not None:
            token = bearer.credentials
        found = await authorize(services_of(request.state), token, scope)
        if isinstance(found, HTTPException):
            raise found
        return found

    return check


ReadKey = Annotated[ApiKey, Depends(require("read"))]
WriteKey = Annotated[ApiKey, Depends(require("write"))]
ProfileKey = Annotated[ApiKey, Depends(require("profile"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
