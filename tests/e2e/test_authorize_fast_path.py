"""``POST /v1/authorize`` on the gateways' fast path (``entrypoints/api/fastpath``), served
by a real uvicorn on SQLite and on PostgreSQL: the same answers as the route, every unusual
call left to the route, and no grant ever cached."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from fast_count import Fast
from jitgate.adapters.db.async_reads import AsyncPgGrantReader
from jitgate.service import access
from served import Served

JANE = "jane.doe@example.com"
DEV = {"user": JANE, "type": "ssh", "environment": "development"}


def grant(served: Served) -> str:
    """jane's self-approved ``dev-ssh`` grant (active at once)."""
    made = served.client(JANE).post(
        "/v1/requests", json={"roles": ["dev-ssh"], "reason": "INC-1", "duration": "30m"}
    )
    assert made.status_code == 201 and made.json()["state"] == "active", made.text
    return str(made.json()["id"])


def test_the_fast_path_answers_as_the_route_does(served: Served, fast: Fast) -> None:
    rid = grant(served)
    gateway = served.client("gateway")
    asks: list[dict[str, Any]] = [DEV, {**DEV, "environment": "production"}]
    first = [gateway.post("/v1/authorize", json=ask) for ask in asks]
    assert fast.answered == 1  # the token's first use went through the route and its check
    again = [gateway.post("/v1/authorize", json=ask) for ask in asks]
    assert fast.answered == 3  # the token is cached: both answered on the fast path
    for before, after in zip(first, again, strict=True):
        assert after.status_code == before.status_code == 200
        assert after.headers["content-type"] == before.headers["content-type"]
        assert after.content == before.content
    allowed, refused = (json.loads(r.content) for r in again)
    assert allowed["allowed"] is True and allowed["request_id"] == rid
    assert allowed["role"] == "dev-ssh"
    assert refused == {
        "allowed": False,
        "request_id": None,
        "role": None,
        "ends_at": None,
        "reason": "no active grant covers this access",
    }


CHUNKED = (
    b"{" + b" " * 100 + b'"user": "' + JANE.encode() + b'", "type": "ssh", ',
    b'"environment": "development"}',
)

LEFT_TO_THE_ROUTE: list[tuple[str, dict[str, Any], int, str]] = [
    ("malformed JSON", {"content": b'{"user": '}, 422, "JSON"),
    ("an unknown field", {"json": {**DEV, "admin": True}}, 422, "admin"),
    ("a NUL in a value", {"json": {**DEV, "type": "s\u0000sh"}}, 422, "NUL"),
    ("an unknown resource", {"json": {"user": JANE, "resource": "nowhere"}}, 422, "nowhere"),
    ("neither resource nor type", {"json": {"user": JANE}}, 422, "resource"),
    ("a query string", {"json": DEV, "params": {"x": "1"}}, 200, ""),
    ("a body of 5,000 bytes", {"content": json.dumps(DEV).replace(",", "," + " " * 2500)}, 200, ""),
    ("a chunked body", {"chunks": CHUNKED}, 200, ""),
]


@pytest.mark.parametrize(
    ("call", "status", "words"),
    [pytest.param(c[1], c[2], c[3], id=c[0]) for c in LEFT_TO_THE_ROUTE],
)
def test_every_other_call_is_left_to_the_route(
    served: Served, fast: Fast, call: dict[str, Any], status: int, words: str
) -> None:
    grant(served)
    gateway = served.client("gateway")
    assert gateway.post("/v1/authorize", json=DEV).json()["allowed"] is True  # token cached
    assert gateway.post("/v1/authorize", json=DEV).status_code == 200
    assert fast.answered == 1
    headers = {"Content-Type": "application/json"}
    if "chunks" in call:  # sent with Transfer-Encoding: chunked, no Content-Length
        call = {"content": iter(call["chunks"])}
    answer = gateway.post("/v1/authorize", headers=headers, **call)
    assert fast.answered == 1, "the call should have been left to the route"
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json()["allowed"] is True
    else:
        assert answer.headers["content-type"] == "application/problem+json"
        assert words in answer.json()["detail"]


def test_many_gateways_asking_at_once_each_get_their_own_answer(
    served: Served, fast: Fast, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 calls in flight together, for four users, one with a grant: on PostgreSQL the
    reads are coalesced (``AsyncPgGrantReader``); every answer is still the caller's own."""
    rid = grant(served)
    users = [JANE, "ravi@example.com", JANE.upper(), "priya@example.com"]
    token = served.tokens["gateway"]
    reads: list[int] = []
    if served.app.grant_reader is not None:  # PostgreSQL: count the statements it sends
        real = AsyncPgGrantReader._read

        async def counted(self, users, earliest, latest):  # type: ignore[no-untyped-def]
            reads.append(len(users))
            return await real(self, users, earliest, latest)

        monkeypatch.setattr(AsyncPgGrantReader, "_read", counted)
    assert served.client("gateway").post("/v1/authorize", json=DEV).status_code == 200

    async def ask_all() -> list[tuple[str, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=50)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=served.url, headers=headers, limits=limits, timeout=30
        ) as client:

            async def one(user: str) -> tuple[str, dict[str, Any]]:
                answer = await client.post("/v1/authorize", json={**DEV, "user": user})
                assert answer.status_code == 200, answer.text
                return user, answer.json()

            return await asyncio.gather(*(one(users[n % 4]) for n in range(300)))

    answers = asyncio.run(ask_all())
    assert fast.answered == 300  # the first call (above) checked the token on the route
    for user, answer in answers:
        mine = user.lower() == JANE
        assert answer["allowed"] is mine and answer["request_id"] == (rid if mine else None)
    assert sum(answer["allowed"] for _, answer in answers) == 150
    if served.app.grant_reader is not None:
        assert len(reads) < 300 and max(reads) > 1, reads  # calls shared reads


def test_a_persons_cached_token_still_gets_403(served: Served, fast: Fast) -> None:
    jane = served.client(JANE)
    grant(served)  # jane's token is now in the cache
    refused = jane.post("/v1/authorize", json=DEV)
    assert refused.status_code == 403 and "service token" in refused.json()["detail"]
    assert fast.answered == 0
    assert served.client().post("/v1/authorize", json=DEV).status_code == 401


def test_no_grant_is_cached_revocation_and_ends_at_hold_at_once(served: Served, fast: Fast) -> None:
    gateway, security = served.client("gateway"), served.client("sec@example.com")
    rid = grant(served)
    assert gateway.post("/v1/authorize", json=DEV).json()["allowed"] is True
    revoked = security.post(f"/v1/requests/{rid}/revoke", json={"reason": "leaver"})
    assert revoked.status_code == 200, revoked.text
    assert gateway.post("/v1/authorize", json=DEV).json()["allowed"] is False

    grant(served)
    assert gateway.post("/v1/authorize", json=DEV).json()["allowed"] is True
    served.clock.advance(timedelta(minutes=30))  # no tick: the grant is still "active"
    assert gateway.post("/v1/authorize", json=DEV).json()["allowed"] is False
    assert fast.answered == 3  # all but the token's first use answered on the fast path


def test_an_unexpected_error_gets_the_apis_500_problem(
    served: Served, fast: Fast, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = served.client("gateway")
    assert gateway.post("/v1/authorize", json=DEV).status_code == 200  # token cached

    def broken(*_: object, **__: object) -> object:
        raise RuntimeError("the database is gone")

    monkeypatch.setattr(access, "authorize", broken)
    monkeypatch.setattr(access, "authorize_async", broken)
    answer = gateway.post("/v1/authorize", json=DEV)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "internal error; the event was logged"
    assert "database is gone" not in answer.text
    assert fast.answered == 0
