"""Which requests `api.fast_path` may answer itself; FastAPI answers every other one."""

from __future__ import annotations

from typing import Any

import pytest

from api.fast_path import plain_request


def scope(path: str, query: bytes = b"", method: str = "GET", **extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query, **extra}


@pytest.mark.parametrize(
    ("request_scope", "expected"),
    [
        (scope("/v1/users/alice/recommendations"), ("alice", 10)),
        (scope("/v1/users/alice/recommendations", b"k=5"), ("alice", 5)),
        (scope("/v1/users/a%b.c@d/recommendations", b"k=1000"), ("a%b.c@d", 1000)),
        # The route refuses these (422, 404, 405) or needs its full chain: not answered here.
        (scope("/v1/users/alice/recommendations", b"k=0"), None),
        (scope("/v1/users/alice/recommendations", b"k=1001"), None),
        (scope("/v1/users/alice/recommendations", b"k=010"), None),
        (scope("/v1/users/alice/recommendations", b"k=-1"), None),
        (scope("/v1/users/alice/recommendations", b"k="), None),
        (scope("/v1/users/alice/recommendations", b"k=5&explain=true"), None),
        (scope("/v1/users/alice/recommendations", b"category=scifi"), None),
        (scope("/v1/users/alice/recommendations", b"exclude=i1"), None),
        (scope("/v1/users/alice/recommendations", method="HEAD"), None),
        (scope("/v1/users/alice/recommendations", method="POST"), None),
        (scope("/v1/users/alice/recommendations/"), None),
        (scope("/v1/users//recommendations"), None),
        (scope("/v1/users/a/b/recommendations"), None),
        (scope("/v1/users/a b/recommendations"), None),
        (scope("/v1/users/a|b/recommendations"), None),
        (scope(f"/v1/users/{'x' * 129}/recommendations"), None),
        (scope("/v1/users/alice/profile"), None),
        (scope("/v1/users/alice/recommendations", root_path="/api"), None),
        ({"type": "websocket", "path": "/v1/users/alice/recommendations"}, None),
    ],
)
def test_only_the_plain_request_is_answered_below_fastapi(request_scope, expected):
    assert plain_request(request_scope) == expected
