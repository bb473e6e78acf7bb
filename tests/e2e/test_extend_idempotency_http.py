"""``POST /v1/requests/{id}/extend`` honours ``Idempotency-Key`` as ``POST /v1/requests``
does: the same key and body answer 201 with the first extension (``Idempotent-Replayed``)
and open nothing more; the same key with another body is a 422; a create with that key is
another request."""

from __future__ import annotations

import uuid
from typing import Any

from jitgate.domain.policy import Policy
from served import Served

RAVI = "ravi@example.com"


def _active_db_prod(served: Served, example_policy: Policy) -> str:
    made = served.client(RAVI).post(
        "/v1/requests", json={"roles": ["db-prod"], "reason": "x", "duration": "30m"}
    )
    assert made.status_code == 201, made.text
    rid = str(made.json()["id"])
    dba = example_policy.directory.on_call("dba", served.clock.now())
    assert dba is not None
    approved = served.client(dba).post(f"/v1/requests/{rid}/approve", json={})
    assert approved.status_code == 200 and approved.json()["state"] == "active", approved.text
    return rid


def _pending_extensions(served: Served, rid: str) -> list[dict[str, Any]]:
    listed = served.client(RAVI).get("/v1/requests", params={"state": "pending"}).json()
    return [r for r in listed["items"] if r["extends"] == rid]


def test_the_same_key_extends_once(served: Served, example_policy: Policy) -> None:
    rid = _active_db_prod(served, example_policy)
    ravi = served.client(RAVI)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"duration": "30m", "reason": "more"}
    first = ravi.post(f"/v1/requests/{rid}/extend", json=body, headers=key)
    again = ravi.post(f"/v1/requests/{rid}/extend", json=body, headers=key)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and first.json()["extends"] == rid
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    reordered = ravi.post(
        f"/v1/requests/{rid}/extend", json={"reason": "more", "duration": "30m"}, headers=key
    )
    assert reordered.status_code == 201 and reordered.json()["id"] == first.json()["id"]
    other = ravi.post(
        f"/v1/requests/{rid}/extend", json={"duration": "1h", "reason": "other"}, headers=key
    )
    assert other.status_code == 422, other.text
    assert other.headers["content-type"] == "application/problem+json"
    assert "already used with a different body" in other.json()["detail"]
    assert [r["id"] for r in _pending_extensions(served, rid)] == [first.json()["id"]]
    # without the header, a second call is a second extension, as before
    plain = ravi.post(f"/v1/requests/{rid}/extend", json=body)
    assert plain.status_code == 201 and plain.json()["id"] != first.json()["id"]


def test_a_create_with_the_extensions_key_is_another_request(
    served: Served, example_policy: Policy
) -> None:
    rid = _active_db_prod(served, example_policy)
    ravi = served.client(RAVI)
    key = {"Idempotency-Key": "one-key"}
    extension = ravi.post(
        f"/v1/requests/{rid}/extend", json={"duration": "30m", "reason": "x"}, headers=key
    )
    assert extension.status_code == 201, extension.text
    created = ravi.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "x"}, headers=key)
    assert created.status_code == 201, created.text
    assert "Idempotent-Replayed" not in created.headers
    assert created.json()["id"] not in (rid, extension.json()["id"])
    assert created.json()["extends"] is None
