"""A backend that is down never keeps a grant's sessions running (SPEC §3, RFC 10.4.4): a
served jitgate with a real webhook backend that answers 503 when the grant ends. The end
of the open sessions (``termination_requested_at``, what ``jitgate ssh reap`` and
gateways act on) is asked for the moment the revoke or the expiry is recorded, while the
backend's removal is retried on its own until the backend answers again; and it is asked
once, however many times the removal is retried.

Before: the sessions were asked to end only once every backend had removed the grant, so
an admin's early revoke left them running for as long as the backend was down.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_backend_failure_visible import Sink

from jitgate.service import lifecycle
from jitgate.service.reconcile import enforcement_of
from served import Served, serve

JANE, SEC = "jane.doe@example.com", "sec@example.com"
POLICY = """
version: 1
settings: {{pending_ttl: 1h, sessions_at_expiry: {sessions}, admins: [security]}}
directory:
  users:
    jane.doe@example.com: {{groups: [developers]}}
    sec@example.com: {{groups: [security]}}
resources:
  k8s-dev: {{type: kubernetes, environment: development}}
roles:
  hook-role:
    grants: [{{type: kubernetes, environment: development}}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    backends: [k8s-hook]
approval:
  - match: {{type: kubernetes, environment: development}}
    rule: self
backends:
  k8s-hook: {{type: webhook, url: "{url}", secret_env: JG_DOWN_HOOK_SECRET, timeout: 5}}
"""


@pytest.fixture
def target() -> Iterator[Sink]:
    running = Sink(status=204)
    try:
        yield running
    finally:
        running.stop()


def jitgate(db_url: str, tmp_path: Path, start: datetime, url: str, sessions: str) -> Served:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(url=url, sessions=sessions))
    return serve(db_url, policy, start)


@pytest.fixture
def served_with(
    db_url: str, tmp_path: Path, start: datetime, target: Sink, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv("JG_DOWN_HOOK_SECRET", "whsec_c3VwZXJzZWNyZXRrZXktMDEyMzQ1Njc4OWFiY2RlZg==")
    running: list[Served] = []

    def make(sessions: str) -> Served:
        running.append(jitgate(db_url, tmp_path, start, target.url, sessions))
        return running[-1]

    try:
        yield make
    finally:
        for served in running:
            served.stop()


def granted_with_a_session(served: Served) -> tuple[str, str, str]:
    """Jane's active grant (applied on the backend) and one open session of it."""
    jane, gateway = served.client(JANE), served.client("gateway")
    made = jane.post("/v1/requests", json={"roles": ["hook-role"], "reason": "INC-7"})
    assert made.status_code == 201, made.text
    grant = made.json()
    assert grant["state"] == "active"
    opened = gateway.post(
        "/v1/sessions", json={"user": JANE, "resource": "k8s-dev", "kind": "exec"}
    )
    assert opened.status_code == 201, opened.text
    return grant["id"], opened.json()["id"], grant["ends_at"]


def session(served: Served, session_id: str) -> dict[str, Any]:
    found = served.client("gateway").get(f"/v1/sessions/{session_id}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def backend(served: Served, request_id: str) -> dict[str, Any]:
    (row,) = served.client(JANE).get(f"/v1/requests/{request_id}/backends").json()
    assert isinstance(row, dict)
    return row


def asked(served: Served, request_id: str) -> list[dict[str, Any]]:
    events = served.client(SEC).get(f"/v1/requests/{request_id}/events").json()["items"]
    return [e for e in events if e["type"] == "session.termination_requested"]


def back_up_and_retried(served: Served, target: Sink) -> None:
    """The backend answers again; the removal is retried (as the scheduler's job does)."""
    target.status = 204
    for _ in range(3):
        served.clock.advance(timedelta(minutes=1))
        enforcement_of(served.app.ctx).retry_removals()


def test_an_admins_revoke_asks_for_the_end_of_sessions_while_the_backend_is_down(
    served_with: Any, target: Sink
) -> None:
    served: Served = served_with("continue")
    rid, sid, _ends = granted_with_a_session(served)
    target.status = 503  # the backend is down when security revokes the grant

    revoked = served.client(SEC).post(
        f"/v1/requests/{rid}/revoke", json={"reason": "stolen laptop"}
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"
    assert ("revoke", 503) in target.seen  # the removal was tried, and failed
    row = backend(served, rid)
    assert row["status"] == "removing" and "503" in (row["last_error"] or "")

    now = served.clock.now()
    shown = session(served, sid)
    assert shown["ended_at"] is None  # its gateway ends it and says so
    assert shown["termination_requested_at"] is not None, shown  # was null until the backend
    assert datetime.fromisoformat(shown["termination_requested_at"]) == now
    assert shown["termination_reason"] == "terminated: grant revoked"

    served.clock.advance(timedelta(seconds=40))  # still down: retried, still asked once
    enforcement_of(served.app.ctx).retry_removals()
    assert backend(served, rid)["status"] == "removing"
    back_up_and_retried(served, target)
    assert backend(served, rid)["status"] == "removed"
    assert [e["data"]["session_id"] for e in asked(served, rid)] == [sid]  # never twice
    assert datetime.fromisoformat(session(served, sid)["termination_requested_at"]) == now


def test_expiry_with_terminate_asks_for_the_end_of_sessions_while_the_backend_is_down(
    served_with: Any, target: Sink
) -> None:
    served: Served = served_with("terminate")
    rid, sid, ends_at = granted_with_a_session(served)
    target.status = 503
    served.clock.set(datetime.fromisoformat(ends_at) + timedelta(seconds=1))
    assert lifecycle.tick(served.app.ctx).expired == 1

    assert served.client(JANE).get(f"/v1/requests/{rid}").json()["state"] == "expired"
    assert backend(served, rid)["status"] == "removing"
    shown = session(served, sid)
    assert shown["termination_requested_at"] is not None, shown
    assert datetime.fromisoformat(shown["termination_requested_at"]) == served.clock.now()
    assert shown["termination_reason"] == "terminated: grant expired"

    back_up_and_retried(served, target)
    assert backend(served, rid)["status"] == "removed"
    assert len(asked(served, rid)) == 1


def test_expiry_with_continue_leaves_sessions_alone_whatever_the_backend(
    served_with: Any, target: Sink
) -> None:
    served: Served = served_with("continue")
    rid, sid, ends_at = granted_with_a_session(served)
    target.status = 503
    served.clock.set(datetime.fromisoformat(ends_at) + timedelta(seconds=1))
    lifecycle.tick(served.app.ctx)
    back_up_and_retried(served, target)
    assert backend(served, rid)["status"] == "removed"
    assert session(served, sid)["termination_requested_at"] is None
    assert asked(served, rid) == []


def test_no_backend_call_delays_the_end_of_the_sessions_of_the_grants_that_ended(
    served_with: Any, target: Sink
) -> None:
    """Grants ending in the same tick: every session that must end is asked to end before
    the first backend call of any of them (a backend that hangs until its deadline would
    otherwise hold back the sessions of every grant after it)."""
    served: Served = served_with("terminate")
    first = granted_with_a_session(served)
    served.clock.advance(timedelta(seconds=1))  # the second grant ends later: its session
    second = granted_with_a_session(served)  # opens on it
    assert [session(served, g[1])["request_id"] for g in (first, second)] == [
        first[0],
        second[0],
    ]
    target.status = 503
    asked_when_called: list[list[bool]] = []

    def look(body: dict[str, Any]) -> None:  # as the backend is called: the sessions then
        if body["type"] == "revoke":
            asked = [
                session(served, sid)["termination_requested_at"] for _, sid, _ in (first, second)
            ]
            asked_when_called.append([a is not None for a in asked])

    target.on_post = look
    served.clock.set(datetime.fromisoformat(max(first[2], second[2])) + timedelta(seconds=1))
    assert lifecycle.tick(served.app.ctx).expired == 2
    target.on_post = None
    assert asked_when_called == [[True, True], [True, True]]  # was [[False, False], [False, False]]
