"""The evidence of a request (RFC 10.6.3) on SQLite and PostgreSQL: its sections come from
the hash-chained audit events, not from the editable tables, and every table value that
disagrees with the events is listed in ``discrepancies``; a session's ``access.used`` event
names the gateway that opened it; a recording URL is stored without its credentials."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.adapters.db.engine import normalise_url
from jitgate.domain.creation import Draft
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service import access, evidence, lifecycle, queries
from jitgate.service.context import Context
from jitgate.service.decisions import approve_request, deny_request, revoke_request
from jitgate.service.ports import AuditQuery
from jitgate.service.requests import create_request, extend_request
from served import EXAMPLE_POLICY_PATH, serve

JANE = "jane.doe@example.com"  # developers; manager mark; team payments (lead priya)
MARK = "mark.lee@example.com"
PRIYA = "priya@example.com"
SEC = "sec@example.com"  # security: admin
GW = "service:gw"
H, M = timedelta(hours=1), timedelta(minutes=1)


def _create(ctx: Context, role: str, **draft: Any) -> AccessRequest:
    return create_request(
        ctx, requester=JANE, draft=Draft(roles=(role,), reason="INC-1", **draft)
    ).request


def _oncall(ctx: Context, at: datetime | None = None) -> str:
    person = ctx.policy.current.directory.on_call("sre", at or ctx.clock.now())
    assert person is not None
    return person


def _active_prod_grant(ctx: Context) -> AccessRequest:
    request = _create(ctx, "sre-oncall", duration=2 * H)
    approve_request(ctx, request_id=request.id, approver=_oncall(ctx), comment="on it")
    done = approve_request(ctx, request_id=request.id, approver=MARK).request
    assert done.state is State.ACTIVE
    return done


def _evidence(ctx: Context, request_id: str) -> dict[str, Any]:
    return evidence.evidence(ctx, request_id=request_id, viewer=SEC)


def _write(db_url: str, *statements: sa.Executable) -> None:
    """Someone with write access to the database, behind jitgate's back."""
    engine = sa.create_engine(normalise_url(db_url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        engine.dispose()


def _rows(db_url: str, table: sa.Table) -> list[dict[str, Any]]:
    engine = sa.create_engine(normalise_url(db_url))
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.select(table)).all()]
    finally:
        engine.dispose()


def _session_events(ctx: Context, request_id: str, kind: str) -> list[dict[str, Any]]:
    events = queries.request_events(ctx, request_id=request_id, viewer=SEC)
    return [e.data for e in events if e.type == kind]


# -- 1. the sections come from the chain -------------------------------------------------------


def test_rewritten_rows_do_not_change_the_evidence_and_are_flagged(
    db_url: str, make_ctx: Any
) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx)
    on_call = _oncall(ctx)
    used = access.open_session(ctx, user=JANE, resource="prod-bastion", kind="ssh", opened_by=GW)
    clock.advance(10 * M)
    access.end_session(
        ctx, session_id=used.id, recording_url="https://rec.example.com/s/1", gateway=GW
    )
    honest = _evidence(ctx, grant.id)
    assert honest["discrepancies"] == []

    approvals = next(r["approvals"] for r in _rows(db_url, t.requests) if r["id"] == grant.id)
    approvals = [{**a, "approver": SEC} if a["approver"] == MARK else a for a in approvals]
    requests, sessions = t.requests, t.sessions
    _write(
        db_url,
        requests.update()
        .where(requests.c.id == grant.id)
        .values(reason="routine check", approvals=approvals, purpose="maintenance"),
        sessions.update()
        .where(sessions.c.id == used.id)
        .values(recording_url="https://evil.example/fake", opened_by="service:other"),
        sessions.insert().values(
            id="forged-1",
            request_id=grant.id,
            user=JANE,
            resource="prod-bastion",
            kind="ssh",
            started_at=clock.now(),
            opened_by=GW,
        ),
    )
    assert queries.get_request(ctx, request_id=grant.id, viewer=SEC).reason == "routine check"

    shown = _evidence(ctx, grant.id)
    assert shown["justified"]["reason"] == "INC-1"
    assert shown["justified"]["purpose"] is None
    assert [a["approver"] for a in shown["authorized"]["approvals"]] == [on_call, MARK]
    assert {r["satisfied_by"] for r in shown["authorized"]["requirements"]} == {on_call, MARK}
    assert [s["id"] for s in shown["used"]["sessions"]] == [used.id]  # not the forged one
    session = shown["used"]["sessions"][0]
    assert session["recording_url"] == "https://rec.example.com/s/1"
    assert session["opened_by"] == GW
    flagged = {d["field"]: d for d in shown["discrepancies"]}
    assert set(flagged) == {
        "justified.reason",
        "justified.purpose",
        "authorized.approvals",
        f"used.sessions[{used.id}].recording_url",
        f"used.sessions[{used.id}].opened_by",
        "used.sessions[forged-1]",
    }
    assert flagged["justified.reason"] == {
        "field": "justified.reason",
        "table": "routine check",
        "events": "INC-1",
    }
    recording = flagged[f"used.sessions[{used.id}].recording_url"]
    assert recording["table"] == "https://evil.example/fake"
    assert recording["events"] == "https://rec.example.com/s/1"
    assert flagged["used.sessions[forged-1]"]["events"] is None
    assert queries.audit_verify(ctx, viewer=SEC).ok  # the chain itself was not touched


def test_a_rewritten_window_state_and_requester_are_flagged(db_url: str, make_ctx: Any) -> None:
    ctx, _clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx)
    unrelated = _create(ctx, "staging-ssh")
    assert grant.ends_at is not None
    real_end = grant.ends_at.isoformat()
    requests = t.requests
    _write(
        db_url,
        requests.update()
        .where(requests.c.id == grant.id)
        .values(ends_at=grant.ends_at + 6 * H, duration_seconds=8 * 3600, requester=PRIYA),
        requests.update().where(requests.c.id == unrelated.id).values(extends=grant.id),
    )
    shown = _evidence(ctx, grant.id)
    assert shown["requester"] == JANE
    assert shown["time_limited"]["ends_at"] == real_end
    assert shown["time_limited"]["duration_seconds"] == 2 * 3600
    # a request whose own events do not say it extends this one has no state here
    assert shown["time_limited"]["extensions"] == [{"id": unrelated.id, "state": None}]
    flagged = {d["field"] for d in shown["discrepancies"]}
    assert flagged == {
        "requester",
        "time_limited.ends_at",
        "time_limited.duration_seconds",
        f"time_limited.extensions[{unrelated.id}]",
    }


# -- no false alarms: every path of a request, untouched, agrees with its events ---------------


def _agrees(ctx: Context, request_id: str) -> dict[str, Any]:
    """The evidence of an untouched request: no discrepancy, and what it shows is what the
    request and its sessions say."""
    shown = _evidence(ctx, request_id)
    assert shown["discrepancies"] == [], shown["discrepancies"]
    stored = queries.get_request(ctx, request_id=request_id, viewer=SEC)
    assert shown["state"] == stored.state.value
    window = shown["time_limited"]
    for name in ("starts_at", "ends_at", "closed_at", "close_reason"):
        value = getattr(stored, name)
        assert window[name] == (value.isoformat() if isinstance(value, datetime) else value)
    return shown


def test_no_discrepancy_through_use_extension_and_expiry(db_url: str, make_ctx: Any) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx)
    ssh = access.open_session(ctx, user=JANE, resource="prod-bastion", kind="ssh", opened_by=GW)
    kubectl = access.open_session(
        ctx,
        user=JANE,
        resource=None,
        kind="kubectl",
        type="kubernetes",
        environment="production",
        opened_by=GW,
    )
    clock.advance(5 * M)
    access.end_session(ctx, session_id=kubectl.id, recording_url="https://rec/1", gateway=GW)
    _agrees(ctx, grant.id)

    extension = extend_request(
        ctx, request_id=grant.id, requester=JANE, duration=H, reason="more time"
    )
    assert _agrees(ctx, extension.id)["state"] == "pending"
    assert _agrees(ctx, grant.id)["time_limited"]["extensions"] == [
        {"id": extension.id, "state": "pending"}
    ]
    clock.advance(M)
    approve_request(ctx, request_id=extension.id, approver=_oncall(ctx))
    approve_request(ctx, request_id=extension.id, approver=MARK)
    moved = _agrees(ctx, grant.id)
    assert moved["time_limited"]["ends_at"] == (grant.ends_at + H).isoformat()  # type: ignore[operator]
    assert _agrees(ctx, extension.id)["time_limited"]["starts_at"] == grant.ends_at.isoformat()  # type: ignore[union-attr]

    stored = queries.get_request(ctx, request_id=grant.id, viewer=SEC)
    assert stored.ends_at is not None
    clock.set(stored.ends_at + M)
    lifecycle.tick(ctx)
    shown = _agrees(ctx, grant.id)
    assert shown["state"] == "expired"
    assert shown["time_limited"]["close_reason"] == "grant ended"
    assert shown["authorized"]["decision"]["outcome"] == "approved"
    assert shown["authorized"]["decision"]["by"] == MARK
    assert {s["id"] for s in shown["used"]["sessions"]} == {ssh.id, kubectl.id}
    _agrees(ctx, extension.id)


def test_no_discrepancy_when_denied_withdrawn_timed_out_or_self_approved(
    db_url: str, make_ctx: Any
) -> None:
    ctx, clock = make_ctx(db_url)
    denied = _create(ctx, "staging-ssh")
    deny_request(ctx, request_id=denied.id, approver=PRIYA, reason="use a runbook")
    withdrawn = _create(ctx, "staging-ssh")
    revoke_request(ctx, request_id=withdrawn.id, actor=JANE, reason="not needed")
    mine = _create(ctx, "dev-ssh", purpose="debugging")
    scheduled = _create(ctx, "dev-ssh", start_at=clock.now() + 2 * H)
    waiting = _create(ctx, "staging-ssh")

    assert _agrees(ctx, denied.id)["time_limited"]["close_reason"] == "use a runbook"
    assert _agrees(ctx, withdrawn.id)["state"] == "revoked"
    self_approved = _agrees(ctx, mine.id)
    assert self_approved["authorized"]["decision"]["by"] == "policy"
    assert self_approved["justified"] == {
        "reason": "INC-1",
        "purpose": "debugging",
        "urgency": "normal",
    }
    assert _agrees(ctx, scheduled.id)["state"] == "approved"

    clock.set(waiting.expires_at + M)
    lifecycle.tick(ctx)
    timed_out = _agrees(ctx, waiting.id)
    assert timed_out["time_limited"]["closed_at"] == waiting.expires_at.isoformat()
    assert timed_out["time_limited"]["close_reason"] == "no decision in time"


def test_an_early_revocation_agrees_and_a_rewritten_close_is_flagged(
    db_url: str, make_ctx: Any
) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx)
    clock.advance(20 * M)
    revoke_request(ctx, request_id=grant.id, actor=SEC, reason="incident closed")
    shown = _agrees(ctx, grant.id)
    assert shown["time_limited"]["ends_at"] == clock.now().isoformat()
    _write(
        db_url,
        t.requests.update()
        .where(t.requests.c.id == grant.id)
        .values(state="expired", close_reason="grant ended"),
    )
    flagged = {d["field"]: d for d in _evidence(ctx, grant.id)["discrepancies"]}
    assert set(flagged) == {"state", "time_limited.close_reason"}
    assert flagged["state"]["events"] == "revoked"


def test_no_discrepancy_when_an_extension_or_its_original_is_revoked(
    db_url: str, make_ctx: Any
) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx)
    first = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="more")
    second = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="again")
    for extension in (first, second):
        approve_request(ctx, request_id=extension.id, approver=_oncall(ctx))
        approve_request(ctx, request_id=extension.id, approver=MARK)
    clock.advance(10 * M)
    revoke_request(ctx, request_id=second.id, actor=JANE, reason="done sooner")
    for request_id in (grant.id, first.id, second.id):
        _agrees(ctx, request_id)
    clock.advance(10 * M)
    revoke_request(ctx, request_id=grant.id, actor=SEC, reason="incident closed")
    shown = _agrees(ctx, grant.id)
    extensions = {e["id"]: e["state"] for e in shown["time_limited"]["extensions"]}
    assert extensions == {first.id: "revoked", second.id: "revoked"}
    _agrees(ctx, first.id)
    _agrees(ctx, second.id)


# -- 2. the gateway that opened a session -------------------------------------------------------


def test_access_used_names_the_gateway_and_the_type_and_environment(
    db_url: str, make_ctx: Any
) -> None:
    ctx, _clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx)
    by_resource = access.open_session(
        ctx, user=JANE, resource="prod-bastion", kind="ssh", opened_by=GW
    )
    by_scope = access.open_session(
        ctx,
        user=JANE,
        resource=None,
        kind="kubectl",
        type="kubernetes",
        environment="production",
        opened_by="service:k8s-gw",
    )
    used = _session_events(ctx, grant.id, "access.used")
    assert used == [
        {
            "session_id": by_resource.id,
            "resource": "prod-bastion",
            "kind": "ssh",
            "role": "sre-oncall",
            "opened_by": GW,
        },
        {
            "session_id": by_scope.id,
            "resource": None,
            "kind": "kubectl",
            "role": "sre-oncall",
            "opened_by": "service:k8s-gw",
            "type": "kubernetes",
            "environment": "production",
        },
    ]
    events = queries.request_events(ctx, request_id=grant.id, viewer=SEC)
    assert {e.actor for e in events if e.type == "access.used"} == {JANE}  # whose access

    sessions = {s["id"]: s for s in _evidence(ctx, grant.id)["used"]["sessions"]}
    assert sessions[by_resource.id]["opened_by"] == GW
    assert (sessions[by_resource.id]["type"], sessions[by_resource.id]["environment"]) == (
        None,
        None,
    )
    assert sessions[by_scope.id]["opened_by"] == "service:k8s-gw"
    assert sessions[by_scope.id]["type"] == "kubernetes"
    assert sessions[by_scope.id]["environment"] == "production"
    assert sessions[by_scope.id]["user"] == JANE


# -- 3. no credential of a recording URL is stored ----------------------------------------------

SIGNED = (
    "https://rec-user:rec-pass@rec.example.com/r/1?sig=SECRET1&id=7"
    "&X-Amz-Signature=SECRET2&X-Amz-Credential=SECRET3&X-Amz-Security-Token=SECRET4"
    "&access_token=SECRET5&sv=2024-01-01&sp=r#token=SECRET6"
)
REDACTED = (
    "https://rec.example.com/r/1?sig=REDACTED&id=7"
    "&X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED"
    "&access_token=REDACTED&sv=2024-01-01&sp=r#token=REDACTED"
)


def test_a_recording_url_is_stored_and_audited_without_its_credentials(
    db_url: str, make_ctx: Any
) -> None:
    ctx, _clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx)
    used = access.open_session(ctx, user=JANE, resource="prod-bastion", kind="ssh", opened_by=GW)
    ended = access.end_session(ctx, session_id=used.id, recording_url=SIGNED, gateway=GW)
    assert ended.recording_url == REDACTED
    assert _session_events(ctx, grant.id, "session.ended")[0]["recording_url"] == REDACTED
    assert queries.session(ctx, session_id=used.id).recording_url == REDACTED
    assert _evidence(ctx, grant.id)["used"]["sessions"][0]["recording_url"] == REDACTED

    stored = json.dumps([_rows(db_url, t.audit_events), _rows(db_url, t.sessions)], default=str)
    assert "SECRET" not in stored and "rec-pass" not in stored and "rec-user" not in stored
    with ctx.uow(write=False) as uow:
        everything = uow.audit.find(AuditQuery(limit=10_000))
    assert "SECRET" not in json.dumps([e.as_dict() for e in everything])


def test_over_http_the_gateway_is_named_and_the_signature_never_stored(
    db_url: str, start: datetime
) -> None:
    """The black-box path: ``POST /v1/sessions`` and ``/end`` with a gateway's token, then
    ``GET /v1/requests/{id}/evidence`` and the audit log."""
    served = serve(db_url, EXAMPLE_POLICY_PATH, start)
    try:
        grant = _create(served.app.ctx, "dev-ssh")  # rule: self, active at once
        gateway, jane = served.client("gateway"), served.client(JANE)
        opened = gateway.post(
            "/v1/sessions",
            json={"user": JANE, "type": "ssh", "environment": "development", "kind": "ssh"},
        )
        assert opened.status_code == 201, opened.text
        sid = opened.json()["id"]
        ended = gateway.post(
            f"/v1/sessions/{sid}/end",
            json={"recording_url": "https://rec.example.com/r/1?sig=SECRET&id=7"},
        )
        assert ended.status_code == 200, ended.text
        assert ended.json()["recording_url"] == "https://rec.example.com/r/1?sig=REDACTED&id=7"

        evidence = jane.get(f"/v1/requests/{grant.id}/evidence").json()
        session = evidence["used"]["sessions"][0]
        assert (session["opened_by"], session["type"], session["environment"]) == (
            "service:gw",
            "ssh",
            "development",
        )
        assert session["recording_url"] == "https://rec.example.com/r/1?sig=REDACTED&id=7"
        assert evidence["discrepancies"] == []
        audit = served.client(SEC).get("/v1/audit", params={"request_id": grant.id})
        assert audit.status_code == 200 and "SECRET" not in audit.text
        assert "service:gw" in audit.text
    finally:
        served.stop()
