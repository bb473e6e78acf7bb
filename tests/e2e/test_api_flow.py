"""The whole JIT flow through the served API, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from jitgate.domain.policy import Policy
from jitgate.service import lifecycle
from jitgate.service.ports import Principal
from jitgate.service.tokens import create_token
from served import Served

JANE = "jane.doe@example.com"


def create(served: Served, who: str, **body: object) -> dict:
    response = served.client(who).post("/v1/requests", json={"reason": "INC-12345", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_request_approve_use_revoke(served: Served, on_call: str) -> None:
    jane, gateway = served.client(JANE), served.client("gateway")
    req = create(served, JANE, roles=["sre-oncall"], duration="2h")
    rid = req["id"]
    assert req["state"] == "pending"
    assert set(req["eligible_approvers"]) >= {on_call, "mark.lee@example.com"}

    own = jane.post(f"/v1/requests/{rid}/approve", json={})
    assert own.status_code == 403
    assert own.headers["content-type"] == "application/problem+json"
    assert "own request" in own.json()["detail"]
    not_on_call = next(p for p in ("sam@example.com", "sue@example.com") if p != on_call)
    assert served.client(not_on_call).post(f"/v1/requests/{rid}/approve").status_code == 403

    first = served.client(on_call).post(f"/v1/requests/{rid}/approve", json={"comment": "ok"})
    assert first.status_code == 200 and first.json()["state"] == "pending"
    assert on_call not in first.json()["eligible_approvers"], "who approved is done"
    assert "mark.lee@example.com" in first.json()["eligible_approvers"]
    mine = jane.get("/v1/requests", params={"requester": "me"}).json()["items"]
    assert [r["id"] for r in mine] == [rid]
    final = served.client("mark.lee@example.com").post(f"/v1/requests/{rid}/approve")
    body = final.json()
    assert body["state"] == "active"
    assert {r["satisfied_by"] for r in body["requirements"]} == {on_call, "mark.lee@example.com"}
    assert body["ends_at"] is not None

    assert served.client("ravi@example.com").get(f"/v1/requests/{rid}").status_code == 404
    assert (
        jane.post("/v1/authorize", json={"user": JANE, "resource": "prod-bastion"}).status_code
        == 403
    )
    assert gateway.get(f"/v1/requests/{rid}").status_code == 403

    verdict = gateway.post("/v1/authorize", json={"user": JANE, "resource": "prod-bastion"}).json()
    assert verdict["allowed"] is True and verdict["request_id"] == rid
    assert verdict["role"] == "sre-oncall"
    other = gateway.post("/v1/authorize", json={"user": JANE, "resource": "prod-db-01"}).json()
    assert other["allowed"] is False

    session = gateway.post(
        "/v1/sessions", json={"user": JANE, "resource": "prod-bastion", "kind": "ssh"}
    )
    assert session.status_code == 201 and session.json()["request_id"] == rid
    sid = session.json()["id"]
    open_now = gateway.get(f"/v1/sessions/{sid}")  # a gateway asks whether it still stands
    assert open_now.status_code == 200 and open_now.json()["ended_at"] is None
    assert jane.get(f"/v1/sessions/{sid}").status_code == 403  # a service endpoint
    assert gateway.get("/v1/sessions/no-such-session").status_code == 404
    # only the gateway that opened a session ends it: a leaked token of another gateway
    # cannot close it, nor put a recording of its choosing into the evidence
    served.tokens["gw-2"] = create_token(served.app.ctx, principal=Principal("service", "gw-2"))
    foreign = served.client("gw-2").post(
        f"/v1/sessions/{sid}/end", json={"recording_url": "https://evil.example/rec"}
    )
    assert foreign.status_code == 403 and "another gateway" in foreign.json()["detail"]
    for unsafe in ("javascript:alert(1)", "file:///etc/passwd", "https://"):
        refused = gateway.post(f"/v1/sessions/{sid}/end", json={"recording_url": unsafe})
        assert refused.status_code == 422 and "http" in refused.json()["detail"]
    ended = gateway.post(
        f"/v1/sessions/{sid}/end", json={"recording_url": "https://rec.example.com/s/1"}
    )
    assert ended.status_code == 200
    assert gateway.get(f"/v1/sessions/{sid}").json()["end_reason"] == "closed"
    sessions = jane.get(f"/v1/requests/{rid}/sessions").json()["items"]
    assert [s["id"] for s in sessions] == [sid]
    evidence = jane.get(f"/v1/requests/{rid}/evidence").json()
    assert evidence["used"]["sessions"][0]["recording_url"] == "https://rec.example.com/s/1"
    assert evidence["justified"]["reason"] == "INC-12345"
    assert [a["approver"] for a in evidence["authorized"]["approvals"]] == [
        on_call,
        "mark.lee@example.com",
    ]

    revoked = served.client("sec@example.com").post(
        f"/v1/requests/{rid}/revoke", json={"reason": "incident closed"}
    )
    assert revoked.json()["state"] == "revoked"
    again = gateway.post("/v1/authorize", json={"user": JANE, "resource": "prod-bastion"})
    assert again.json()["allowed"] is False
    assert (
        gateway.post(
            "/v1/sessions", json={"user": JANE, "resource": "prod-bastion", "kind": "ssh"}
        ).status_code
        == 403
    )
    late = served.client("mark.lee@example.com").post(
        f"/v1/requests/{rid}/deny", json={"reason": "late"}
    )
    assert late.status_code == 409

    types = [e["type"] for e in jane.get(f"/v1/requests/{rid}/events").json()["items"]]
    assert types == [
        "request.created",
        "approval.recorded",
        "approval.recorded",
        "request.approved",
        "access.granted",
        "access.used",
        "session.ended",
        "access.revoked",
    ]
    assert jane.get("/v1/audit/verify").status_code == 403
    security = served.client("sec@example.com")
    # the rest of the chain: the fixture's tokens, each audited by its id, never the token
    minted = security.get("/v1/audit", params={"type": "token.created"}).json()["items"]
    assert len(minted) == len(served.tokens)
    assert not any(token in json.dumps(minted) for token in served.tokens.values())
    check = security.get("/v1/audit/verify").json()
    assert check["ok"] is True and check["events"] == len(types) + len(minted)


def test_grant_past_ends_at_is_never_honoured_without_a_tick(served: Served) -> None:
    req = create(served, JANE, roles=["dev-ssh"], duration="30m")
    assert req["state"] == "active"
    gateway = served.client("gateway")
    ask = {"user": JANE, "type": "ssh", "environment": "development"}
    assert gateway.post("/v1/authorize", json=ask).json()["allowed"] is True
    served.clock.advance(timedelta(minutes=30))
    assert gateway.post("/v1/authorize", json=ask).json()["allowed"] is False
    assert gateway.post("/v1/sessions", json={**ask, "kind": "ssh"}).status_code == 403
    assert served.client(JANE).get(f"/v1/requests/{req['id']}").json()["state"] == "active"
    report = lifecycle.tick(served.app.ctx)
    assert report.expired == 1
    assert served.client(JANE).get(f"/v1/requests/{req['id']}").json()["state"] == "expired"


def test_extension_goes_through_approval_and_is_capped(
    served: Served, example_policy: Policy, start: datetime
) -> None:
    dba = served.client(str(example_policy.directory.on_call("dba", start)))
    req = create(served, JANE, roles=["db-prod"], resources=["prod-db-01"], duration="1h")
    assert dba.post(f"/v1/requests/{req['id']}/approve").json()["state"] == "active"
    staging = create(served, JANE, roles=["staging-ssh"])
    refused = served.client(JANE).post(
        f"/v1/requests/{staging['id']}/extend", json={"duration": "1h", "reason": "more"}
    )
    assert refused.status_code in (403, 409)
    ext = served.client(JANE).post(
        f"/v1/requests/{req['id']}/extend", json={"duration": "7h", "reason": "still debugging"}
    )
    assert ext.status_code == 201
    assert ext.json()["extends"] == req["id"] and ext.json()["state"] == "pending"
    by_other = served.client("sam@example.com").post(
        f"/v1/requests/{req['id']}/extend", json={"duration": "1h", "reason": "x"}
    )
    assert by_other.status_code in (403, 404)
    assert dba.post(f"/v1/requests/{ext.json()['id']}/approve").status_code == 200
    original = served.client(JANE).get(f"/v1/requests/{req['id']}").json()
    window = _ts(original["ends_at"]) - _ts(original["starts_at"])
    assert window == timedelta(hours=4)  # the role's max in total, not 1h + 7h
    extension = served.client(JANE).get(f"/v1/requests/{ext.json()['id']}").json()
    assert extension["state"] == "approved"  # its grant is the time it adds, still ahead
    assert extension["ends_at"] == original["ends_at"]
    assert _ts(extension["starts_at"]) == _ts(original["starts_at"]) + timedelta(hours=1)


def test_list_filters_and_pagination(served: Served) -> None:
    ids = [create(served, JANE, roles=["dev-ssh"], duration="1h")["id"] for _ in range(5)]
    jane = served.client(JANE)
    page = jane.get("/v1/requests", params={"limit": 2}).json()
    seen = [r["id"] for r in page["items"]]
    while page["next_cursor"]:
        page = jane.get("/v1/requests", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [r["id"] for r in page["items"]]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    pending = create(served, JANE, roles=["staging-ssh"])
    todo = served.client("priya@example.com").get("/v1/requests", params={"approver": "me"})
    assert [r["id"] for r in todo.json()["items"]] == [pending["id"]]
    # a pending request waits on an approver until they decided it, then it is history
    prod = create(served, JANE, roles=["sre-oncall"])
    mark = served.client("mark.lee@example.com")
    waiting = {"approver": "me", "state": "pending"}
    assert [r["id"] for r in mark.get("/v1/requests", params=waiting).json()["items"]] == [
        prod["id"]
    ]
    assert mark.post(f"/v1/requests/{prod['id']}/approve").json()["state"] == "pending"
    assert mark.get("/v1/requests", params=waiting).json()["items"] == []
    mine = mark.get("/v1/requests", params={"approver": "me"}).json()["items"]
    assert [r["id"] for r in mine] == []  # still pending, and no longer waiting on mark
    priya = served.client("priya@example.com")
    assert priya.post(f"/v1/requests/{pending['id']}/approve").json()["state"] == "active"
    done = priya.get("/v1/requests", params={"approver": "me"}).json()["items"]
    assert [r["id"] for r in done] == [pending["id"]]  # decided: she took part
    # someone else's requests: those one may open, never a 403 (SPEC §4)
    others = jane.get("/v1/requests", params={"requester": "sam@example.com"})
    assert others.status_code == 200 and others.json()["items"] == []
    seen = priya.get("/v1/requests", params={"requester": JANE}).json()["items"]
    assert [r["id"] for r in seen] == [pending["id"]]  # she decided it; not jane's others
    still = jane.get("/v1/requests", params={"state": "pending"}).json()["items"]
    assert [r["id"] for r in still] == [prod["id"]]


def test_idempotency_key(served: Served) -> None:
    jane = served.client(JANE)
    body = {"roles": ["dev-ssh"], "reason": "INC-1", "duration": "1h"}
    first = jane.post("/v1/requests", json=body, headers={"Idempotency-Key": "k-1"})
    again = jane.post("/v1/requests", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = jane.post(
        "/v1/requests", json={**body, "duration": "2h"}, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422
    listed = jane.get("/v1/requests").json()["items"]
    assert len(listed) == 1


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_who_may_see_a_request_follows_who_may_decide_it_now(served: Served) -> None:
    """SPEC §4: requester, eligible approvers (those who may decide it now, or did) and
    admins. Someone who could decide it while pending (any SRE, for staging SSH) does not
    read it once others closed it; to anyone else it does not exist, on every route."""
    req = create(served, JANE, roles=["staging-ssh"], duration="1h")
    rid, sue, ravi = req["id"], served.client("sue@example.com"), served.client("ravi@example.com")
    assert sue.get(f"/v1/requests/{rid}").status_code == 200  # pending: she may decide it
    approved = served.client("lee@example.com").post(f"/v1/requests/{rid}/approve", json={})
    assert approved.json()["state"] == "active"
    assert served.client("lee@example.com").get(f"/v1/requests/{rid}").status_code == 200
    for path in ("", "/events", "/sessions", "/evidence"):
        assert sue.get(f"/v1/requests/{rid}{path}").status_code == 404, path
    assert sue.post(f"/v1/requests/{rid}/approve", json={}).status_code == 409  # may decide
    # ravi (a developer of another team) has no part: the answers of an unknown id
    unknown = "00000000-0000-4000-8000-000000000000"
    for target in (rid, unknown):
        assert ravi.post(f"/v1/requests/{target}/approve", json={}).status_code in (403, 404)
        extend = ravi.post(f"/v1/requests/{target}/extend", json={"duration": "1h", "reason": "x"})
        assert extend.status_code == 404, extend.text
        assert ravi.get(f"/v1/requests/{target}/credentials").status_code == 404
    refused = ravi.post(f"/v1/requests/{rid}/approve", json={})
    assert refused.status_code == 403 and "not an eligible approver" in refused.json()["detail"]
