"""Revoking a grant with an open SSH login, through a real sshd running ``jitgate ssh
authorize``, the real ssh client and ``jitgate ssh reap``: the revoke asks for the end
(``session.termination_requested``) while the connection still runs; ``session.ended``
(``terminated: true``) is audited when reap has ended the connection, at that time; a
login that had closed by itself before the revoke is recorded ``closed``, never
terminated."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from typing import Any

from test_ssh_enforcement import Stack, _reap, stack  # noqa: F401  (the module's stack)


def _events(on: Stack, request_id: str, who: str) -> list[dict[str, Any]]:
    with on.http(who) as client:
        return list(client.get(f"/v1/requests/{request_id}/events").json()["items"])


def _of(events: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {e["data"]["session_id"]: e for e in events if e["type"] == kind}


def test_reap_reports_the_real_end_of_a_revoked_login(stack: Stack) -> None:  # noqa: F811
    ann = "ann@example.com"
    grant = stack.request(who=ann)
    key, certificate = stack.key_with_certificate("fx3-login", grant["id"], who=ann)
    assert stack.helper.login(key, certificate).returncode == 0  # closes by itself
    command = stack.helper.ssh(key, certificate, "echo in; exec sleep 120")
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "in"
        with stack.http(ann) as http:
            sessions = http.get(f"/v1/requests/{grant['id']}/sessions").json()["items"]
            (closed_id, held_id) = [s["id"] for s in sessions]
            http.post(f"/v1/requests/{grant['id']}/revoke", json={"reason": "done"})
        revoked = _events(stack, grant["id"], ann)
        assert _of(revoked, "session.ended") == {}  # nothing ended yet …
        assert set(_of(revoked, "session.termination_requested")) == {closed_id, held_id}
        with stack.http(ann) as http:
            evidence = http.get(f"/v1/requests/{grant['id']}/evidence").json()
        shown = {s["id"]: s for s in evidence["used"]["sessions"]}
        assert shown[held_id]["ended_at"] is None
        assert shown[held_id]["termination_requested_at"] is not None
        time.sleep(1.0)
        assert client.poll() is None  # … and indeed the connection still runs

        reaped = _reap(stack)
        assert reaped.returncode == 0, reaped.stderr
        assert "ended (terminated: grant revoked), recorded" in reaped.stdout, reaped.stdout
        assert f"session {closed_id} of {grant['id']}: closed, recorded" in reaped.stdout
        client.wait(timeout=15)
    finally:
        client.kill()
        client.communicate()

    ended = _of(_events(stack, grant["id"], ann), "session.ended")
    held = ended[held_id]
    assert held["actor"] == "service:sshd" and held["data"]["terminated"] is True
    assert held["data"]["reason"] == "terminated: grant revoked"
    asked_at = datetime.fromisoformat(held["data"]["termination_requested_at"])
    assert (datetime.fromisoformat(held["at"]) - asked_at).total_seconds() >= 1.0  # real time
    closed = ended[closed_id]
    assert closed["data"]["terminated"] is False and closed["data"]["reason"] == "closed"
    with stack.http(ann) as http:
        evidence = http.get(f"/v1/requests/{grant['id']}/evidence").json()
    shown = {s["id"]: s for s in evidence["used"]["sessions"]}
    assert shown[held_id]["terminated"] is True and shown[held_id]["ended_at"] is not None
    assert shown[closed_id]["terminated"] is False and shown[closed_id]["end_reason"] == "closed"
    assert evidence["discrepancies"] == []
    assert list((stack.state_dir / "sessions").glob("*.json")) == []
