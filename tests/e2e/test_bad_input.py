"""Bad input gets a 4xx problem+json with a useful detail, never a 500; nothing is lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from served import Served

JANE = "jane.doe@example.com"


def assert_problem(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and words in body["detail"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"roles": ["no-such-role"], "reason": "x"}, "unknown role"),
        ({"roles": [], "reason": "x"}, "roles"),
        ({"roles": ["dev-ssh"], "reason": "x", "duration": "-5m"}, "not a duration"),
        ({"roles": ["dev-ssh"], "reason": "x", "duration": "banana"}, "not a duration"),
        ({"roles": ["dev-ssh"], "reason": "x", "duration": "999999999999d"}, "ten years"),
        ({"roles": ["dev-ssh"], "reason": "x", "duration": "PT1.5S"}, "whole number of seconds"),
        ({"roles": ["dev-ssh"], "reason": "x", "duration": 1.5}, "duration"),
        ({"roles": ["dev-ssh"], "reason": ""}, "reason"),
        ({"roles": ["dev-ssh"]}, "reason"),
        ({"roles": ["dev-ssh"], "reason": "x", "urgency": "asap"}, "urgency"),
        ({"roles": ["dev-ssh"], "reason": "x", "purpose": "fun"}, "unknown purpose"),
        ({"roles": ["dev-ssh"], "reason": "x", "resources": ["nope"]}, "unknown resource"),
        ({"roles": ["dev-ssh"], "reason": "x", "extra": 1}, "extra"),
        ({"roles": "dev-ssh", "reason": "x"}, "roles"),
        ({"roles": ["dev-ssh"], "reason": "x" * 2001}, "reason"),
        ({"roles": ["dev-ssh"], "reason": "x", "cap": "yes"}, "cap: Input should be a valid bool"),
    ]
    + [
        ({"roles": ["dev-ssh"], "reason": "x", "duration": bad}, "duration: must be a duration")
        for bad in ("", 0, -5, True, 10 * 365 * 86400 + 1)
    ],
)
def test_invalid_bodies(served: Served, body: dict, words: str) -> None:
    assert_problem(served.client(JANE).post("/v1/requests", json=body), 422, words)


def test_malformed_json(served: Served) -> None:
    response = served.client(JANE).post(
        "/v1/requests", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "body: the body is not valid JSON (it breaks at character 1)")
    # authorize reads its own body (pydantic's reader): the place is said too, as line/column
    cut = served.client("gateway").post(
        "/v1/authorize",
        content=b'{"user": "a@example.com"',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(cut, 422, "body: the body is not valid JSON (it breaks at line 1, column 24)")


def test_a_duration_in_seconds_is_taken(served: Served) -> None:
    body = {"roles": ["dev-ssh"], "reason": "x", "duration": 5400}
    created = served.client(JANE).post("/v1/requests", json=body)
    assert created.status_code == 201 and created.json()["duration_seconds"] == 5400


def test_two_megabyte_reason(served: Served) -> None:
    body = {"roles": ["dev-ssh"], "reason": "x" * (2 * 1024 * 1024)}
    assert_problem(served.client(JANE).post("/v1/requests", json=body), 413, "larger")


@pytest.mark.parametrize("path", ["/v1/requests", "/v1/authorize"])
def test_a_large_body_sent_in_chunks_is_refused_like_a_large_one(served: Served, path: str) -> None:
    """No Content-Length to refuse up front: the limit holds while the body is read."""
    pieces = [b'{"roles": ["dev-ssh"], "reason": "', *[b"x" * 65536] * 5, b'"}']
    who = JANE if path == "/v1/requests" else "gateway"
    answer = served.client(who).post(
        path, content=iter(pieces), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in answer.request.headers
    assert_problem(answer, 413, "larger")
    mine = served.client(JANE).get("/v1/requests", params={"requester": JANE}).json()
    assert mine["items"] == []


def test_start_past_max_schedule_ahead(served: Served) -> None:
    start = served.clock.now() + timedelta(days=8)
    body = {"roles": ["dev-ssh"], "reason": "x", "start_at": start.isoformat()}
    assert_problem(served.client(JANE).post("/v1/requests", json=body), 422, "max_schedule")


def test_start_in_the_past_and_without_zone(served: Served) -> None:
    past = (served.clock.now() - timedelta(hours=1)).isoformat()
    naive = (served.clock.now() + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    jane = served.client(JANE)
    assert_problem(
        jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "x", "start_at": past}),
        422,
        "past",
    )
    assert_problem(
        jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "x", "start_at": naive}),
        422,
        "zone",
    )


def test_scheduled_start_waits_then_activates(served: Served) -> None:
    from jitgate.service import lifecycle

    start = served.clock.now() + timedelta(hours=2)
    req = (
        served.client(JANE)
        .post(
            "/v1/requests",
            json={
                "roles": ["dev-ssh"],
                "reason": "maintenance",
                "duration": "1h",
                "start_at": start.isoformat(),
            },
        )
        .json()
    )
    assert req["state"] == "approved"
    assert datetime.fromisoformat(req["starts_at"]) == start.astimezone(UTC)
    served.clock.advance(timedelta(hours=2))
    assert lifecycle.tick(served.app.ctx).activated == 1
    assert served.client(JANE).get(f"/v1/requests/{req['id']}").json()["state"] == "active"


def test_unknown_ids(served: Served) -> None:
    jane = served.client(JANE)
    assert_problem(jane.get("/v1/requests/does-not-exist"), 404, "no request")
    assert_problem(jane.post("/v1/requests/nope/approve"), 404, "no request")
    assert_problem(served.client("gateway").post("/v1/sessions/nope/end"), 404, "no session")


def test_missing_and_wrong_tokens(served: Served) -> None:
    bare = served.client()
    assert_problem(bare.get("/v1/requests"), 401, "missing bearer")
    wrong = served.client(headers={"Authorization": "Bearer jg_nope"})
    assert_problem(wrong.get("/v1/requests"), 401, "invalid")
    basic = served.client(headers={"Authorization": "Basic abc"})
    assert_problem(basic.get("/v1/requests"), 401, "bearer")
    assert bare.get("/healthz").status_code == 200
    assert bare.get("/readyz").json()["status"] == "ready"


def test_bad_cursor_and_limits(served: Served) -> None:
    jane = served.client(JANE)
    assert_problem(jane.get("/v1/requests", params={"cursor": "garbage!"}), 422, "cursor")
    # well-formed, but not a place a page could end (base64 of ["x","y"]): was a 500
    assert_problem(jane.get("/v1/requests", params={"cursor": "WyJ4IiwieSJd"}), 422, "cursor")
    # no redirect to add or drop a slash: it would point at whatever Host the client sent
    slashed = jane.get("/v1/requests/", headers={"Host": "evil.example"})
    assert slashed.status_code == 404 and "location" not in slashed.headers
    assert_problem(jane.get("/v1/requests", params={"limit": 0}), 422, "limit")
    assert_problem(
        served.client("sec@example.com").get("/v1/audit", params={"since": "2026-01-01T00:00:00"}),
        422,
        "zone",
    )
    for moment in ("50", "yesterday", "2026-13-01T00:00:00Z"):
        answer = served.client("sec@example.com").get("/v1/audit", params={"since": moment})
        assert_problem(answer, 422, "since must be an ISO 8601 time")
    # found by schemathesis: a cursor past 64 bits overflowed the driver (was a 500)
    sec = served.client("sec@example.com")
    assert_problem(sec.get("/v1/audit", params={"cursor": 2**63}), 422, "cursor")
    assert sec.get("/v1/audit", params={"cursor": 2**63 - 1}).json()["items"] == []


def test_deny_needs_reason(served: Served) -> None:
    rid = (
        served.client(JANE)
        .post("/v1/requests", json={"roles": ["staging-ssh"], "reason": "x"})
        .json()["id"]
    )
    priya = served.client("priya@example.com")
    assert_problem(priya.post(f"/v1/requests/{rid}/deny", json={}), 422, "reason")
    assert_problem(priya.post(f"/v1/requests/{rid}/deny", json={"reason": "  "}), 422, "reason")
    assert served.client(JANE).get(f"/v1/requests/{rid}").json()["state"] == "pending"


def test_nul_characters_are_refused_on_every_way_in(served: Served) -> None:
    """PostgreSQL cannot hold NUL in text (these were 500s there): a body holding one is
    a 422, a URL holding one a 400, on both databases, and nothing is written."""
    jane = served.client(JANE)
    before = jane.get("/v1/requests").json()["items"]
    for body in (
        {"roles": ["dev-ssh"], "reason": "x\u0000y"},
        {"roles": ["dev-ssh\u0000"], "reason": "x"},
        {"roles": ["dev-ssh"], "reason": "x", "purpose": "debugging\u0000"},
    ):
        assert_problem(jane.post("/v1/requests", json=body), 422, "NUL")
    assert jane.get("/v1/requests").json()["items"] == before
    rid = jane.post("/v1/requests", json={"roles": ["staging-ssh"], "reason": "x"}).json()["id"]
    priya = served.client("priya@example.com")
    assert_problem(
        priya.post(f"/v1/requests/{rid}/approve", json={"comment": "ok\u0000"}), 422, "NUL"
    )
    assert_problem(priya.post(f"/v1/requests/{rid}/deny", json={"reason": "\u0000"}), 422, "NUL")
    assert jane.get(f"/v1/requests/{rid}").json()["state"] == "pending"
    gateway = served.client("gateway")
    check = {"user": f"{JANE}\u0000", "type": "ssh", "environment": "development"}
    assert_problem(gateway.post("/v1/authorize", json=check), 422, "NUL")
    assert_problem(jane.get("/v1/requests/x%00y"), 400, "NUL")
    assert_problem(jane.get("/v1/requests?requester=a%00b"), 400, "NUL")
    sec = served.client("sec@example.com")
    assert_problem(sec.get("/v1/audit?actor=a%00b"), 400, "NUL")
    assert sec.get("/v1/audit/verify").json()["ok"] is True


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", "JSON"),
        (b"", "JSON"),
        (b'{"type": "ssh", "environment": "development"}', "user"),
        (b'{"user": "jane.doe@example.com", "type": "ssh", "surprise": 1}', "surprise"),
        (b'{"user": 5, "type": "ssh", "environment": "development"}', "user"),
        (b"[]", "body"),
    ],
)
def test_authorize_bodies_are_checked_like_any_body(
    served: Served, content: bytes, words: str
) -> None:
    """``/v1/authorize`` reads its body itself (the hot path): the same 422 problem."""
    gateway = served.client("gateway")
    headers = {"Content-Type": "application/json"}
    response = gateway.post("/v1/authorize", content=content, headers=headers)
    assert_problem(response, 422, words)
    assert response.json()["errors"]
    # the token is checked first: without one it is a 401 whatever the body
    assert_problem(served.client().post("/v1/authorize", content=content), 401, "bearer")


@pytest.mark.parametrize("path", ["/v1/authorize", "/v1/sessions"])
@pytest.mark.parametrize("extra", [{"type": "database"}, {"environment": "development"}])
def test_a_resource_and_a_type_or_environment_together_are_refused(
    served: Served, path: str, extra: dict[str, str]
) -> None:
    """Which one would count? Neither: a gateway names a resource, or a type and an
    environment."""
    kind = {"kind": "ssh"} if path == "/v1/sessions" else {}  # required there (SPEC §4)
    body = {"user": JANE, "resource": "prod-bastion", **kind, **extra}
    assert_problem(served.client("gateway").post(path, json=body), 422, "not both")


def test_the_authorize_body_is_documented_in_openapi(served: Served) -> None:
    schema = served.client().get("/openapi.json").json()
    body = schema["paths"]["/v1/authorize"]["post"]["requestBody"]
    assert body["required"] is True
    ref = body["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    assert name == "AuthorizeBody"
    documented = schema["components"]["schemas"][name]
    assert set(documented["properties"]) == {"user", "resource", "type", "environment"}
    assert documented["required"] == ["user"]
