"""A revoked grant's sessions in the evidence, through the real ``jitgate`` CLI and a
gateway on a served jitgate: revoking asks for their end (``termination_requested_at``,
``session.termination_requested``) but ends none; ``session.ended`` is audited when the
gateway reports the end, at that time, ``terminated`` only if the gateway ended it; a
session that closed by itself is never called terminated; a termination asked for and
not confirmed after a while is a discrepancy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from served import Served

JG = str(Path(sys.executable).with_name("jitgate"))
JANE = "jane.doe@example.com"
TARGET = {"user": JANE, "type": "ssh", "environment": "development", "kind": "ssh"}


def run(served: Served, *args: str, who: str = JANE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env.update({"JITGATE_SERVER": served.url, "JITGATE_TOKEN": served.tokens[who]})
    done = subprocess.run([JG, *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def _evidence(served: Served, request_id: str) -> dict[str, Any]:
    return dict(json.loads(run(served, "evidence", request_id).stdout))


def _events(served: Served, request_id: str, kind: str) -> list[dict[str, Any]]:
    items = served.client(JANE).get(f"/v1/requests/{request_id}/events").json()["items"]
    return [e for e in items if e["type"] == kind]


def test_revoke_asks_for_the_end_and_the_gateway_reports_it(served: Served) -> None:
    rid = run(served, "request", "dev-ssh", "--for", "1h", "--reason", "x", "-q").stdout.strip()
    gateway = served.client("gateway")
    held, closed_before, closed_after = (
        gateway.post("/v1/sessions", json=TARGET).json()["id"] for _ in range(3)
    )
    assert gateway.post(f"/v1/sessions/{closed_before}/end", json={}).status_code == 200

    served.clock.advance(timedelta(minutes=1))
    revoked_at = served.clock.now()
    run(served, "revoke", rid, "--reason", "done")

    # nothing ended yet: the termination of the two open ones is asked for, not done
    (before,) = _events(served, rid, "session.ended")
    assert before["data"]["session_id"] == closed_before
    assert before["data"]["reason"] == "closed" and before["data"]["terminated"] is False
    asked = _events(served, rid, "session.termination_requested")
    assert sorted(e["data"]["session_id"] for e in asked) == sorted([held, closed_after])
    shown = gateway.get(f"/v1/sessions/{held}").json()
    assert shown["ended_at"] is None and shown["termination_reason"] == "terminated: grant revoked"
    assert datetime.fromisoformat(shown["termination_requested_at"]) == revoked_at
    evidence = _evidence(served, rid)
    sessions = {s["id"]: s for s in evidence["used"]["sessions"]}
    assert sessions[held]["ended_at"] is None
    assert sessions[held]["termination_requested_at"] == revoked_at.isoformat()
    assert sessions[closed_before]["termination_requested_at"] is None  # it had ended
    assert evidence["discrepancies"] == []

    served.clock.advance(timedelta(minutes=1))
    closed = gateway.post(f"/v1/sessions/{closed_after}/end", json={"terminated": False})
    assert closed.json()["end_reason"] == "closed"  # not "terminated", though asked for

    served.clock.advance(timedelta(minutes=6))  # the held one is still not confirmed
    late = _evidence(served, rid)["discrepancies"]
    assert [d["field"] for d in late] == [f"used.sessions[{held}].ended_at"]
    assert f"termination requested at {revoked_at.isoformat()}" in late[0]["note"]
    assert "no end confirmed" in late[0]["note"]

    ended_at = served.clock.now()
    ended = gateway.post(f"/v1/sessions/{held}/end", json={"terminated": True}).json()
    assert ended["end_reason"] == "terminated: grant revoked"
    final = _evidence(served, rid)
    sessions = {s["id"]: s for s in final["used"]["sessions"]}
    assert sessions[held]["ended_at"] == ended_at.isoformat()  # the real end, not the revoke
    assert sessions[held]["termination_requested_at"] == revoked_at.isoformat()
    assert sessions[held]["terminated"] is True
    assert sessions[closed_after]["terminated"] is False
    assert sessions[closed_after]["end_reason"] == "closed"
    assert final["discrepancies"] == []
    ended_events = {e["data"]["session_id"]: e for e in _events(served, rid, "session.ended")}
    assert ended_events[held]["data"]["terminated"] is True
    assert datetime.fromisoformat(ended_events[held]["at"]) == ended_at
