"""Authentication (an API key in `X-API-Key`), authorization (scopes) and the rate limit.

Every route but the health probes depends on `require(scope)`: 401 without a valid key, 403 when
the key lacks the scope, 429 with `Retry-After` when the key is over its rate.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from recommender.privacy.access import ApiKey, ApiKeyStore, RateLimiter

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="streamrec API key")


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits requests whose key holds ``scope``."""

    async def check(
        request: Request, token: Annotated[str | None, Security(_header)] = None
    ) -> ApiKey:
        if not token:
            raise HTTPException(
                401,
                f"an API key is required in the {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        api_keys: ApiKeyStore = request.state.api_keys
        key = await api_keys.verify(token)
        if key is None:
            raise HTTPException(
                401, "the API key is invalid or revoked", headers={"WWW-Authenticate": "ApiKey"}
            )
        if not key.allows(scope):
            raise HTTPException(403, f"this API key lacks the '{scope}' scope")
        limiter: RateLimiter = request.state.limiter
        wait_s = await limiter.acquire(key.key_id)
        if wait_s > 0:
            raise HTTPException(
                429,
                "rate limit exceeded for this API key",
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
        return key

    return check


ReadKey = Annotated[ApiKey, Depends(require("read"))]
WriteKey = Annotated[ApiKey, Depends(require("write"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
