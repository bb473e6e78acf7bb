"""``POST /v1/sessions`` takes ``{user, resource, kind}`` (SPEC §4): ``kind`` is required, a
body without it is a 422 problem+json that names it and records nothing; the ``kind`` a
gateway gives is the one the audit and the evidence say."""

from __future__ import annotations

from typing import Any

import httpx

from served import Served

RAVI = "ravi@example.com"
SEC = "sec@example.com"


def _used(served: Served, request_id: str) -> list[dict[str, Any]]:
    params = {"request_id": request_id, "type": "access.used"}
    return list(served.client(SEC).get("/v1/audit", params=params).json()["items"])


def _active_db_grant(served: Served) -> str:
    body = {"roles": ["db-readonly-nonprod"], "reason": "kind", "resources": ["dev-db-01"]}
    made = served.client(RAVI).post("/v1/requests", json=body)  # rule: self, active at once
    assert made.status_code == 201 and made.json()["state"] == "active", made.text
    return str(made.json()["id"])


def test_a_session_without_kind_is_a_422_that_names_it(served: Served) -> None:
    rid = _active_db_grant(served)
    gateway = served.client("gateway")
    for body in (
        {"user": RAVI, "resource": "dev-db-01"},
        {"user": RAVI, "type": "database", "environment": "development"},
    ):
        refused: httpx.Response = gateway.post("/v1/sessions", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["status"] == 422 and problem["title"]
        assert problem["detail"] == "kind: Field required", problem
        assert problem["errors"] == [{"loc": ["body", "kind"], "msg": "Field required"}]
    assert _used(served, rid) == []
    assert served.client(RAVI).get(f"/v1/requests/{rid}/sessions").json()["items"] == []


def test_the_kind_given_is_the_kind_recorded(served: Served) -> None:
    rid = _active_db_grant(served)
    body = {"user": RAVI, "resource": "dev-db-01", "kind": "database"}
    opened = served.client("gateway").post("/v1/sessions", json=body)
    assert opened.status_code == 201, opened.text
    assert opened.json()["kind"] == "database" and opened.json()["request_id"] == rid
    assert [e["data"]["kind"] for e in _used(served, rid)] == ["database"]


def test_openapi_says_kind_is_required(served: Served) -> None:
    schema = served.client().get("/openapi.json").json()["components"]["schemas"]["SessionBody"]
    assert "kind" in schema["required"] and "default" not in schema["properties"]["kind"]
