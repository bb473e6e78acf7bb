"""Replicas on one database during a policy rollout (SQLite and PostgreSQL), over HTTP: a
replica behind the policy in force answers a decision with 503 and changes nothing; a
reload brings the pending requests under the new rules at once, so what a request shows
(its eligible approvers, who may see it, whose inbox it is in) is what a decision does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from jitgate.adapters.db import tables
from served import EXAMPLE_POLICY_PATH, Served, serve

JANE, PRIYA, SAM, DANA, SEC = (
    "jane.doe@example.com",
    "priya@example.com",
    "sam@example.com",
    "dana@example.com",
    "sec@example.com",
)
STAGING_RULE = "any: [{team_lead: true}, {group: sre}]"
STAGING_OPS = """  staging-ops:
    description: Operations on staging hosts
    grants: [{type: ssh, environment: staging}]
    requestable_by: [developers]
    max_duration: 8h
"""


@pytest.fixture
def replicas(db_url: str, tmp_path: Path, start: datetime) -> Iterator[list[tuple[Served, Path]]]:
    """Two replicas on one database, each with its own copy of the example policy."""
    running: list[tuple[Served, Path]] = []
    try:
        for name in ("r1", "r2"):
            policy = tmp_path / f"{name}.yaml"
            shutil.copy(EXAMPLE_POLICY_PATH, policy)
            running.append((serve(db_url, policy, start), policy))
        yield running
    finally:
        for replica, _ in running:
            replica.stop()


def _edit(policy: Path, old: str, new: str) -> None:
    text = policy.read_text()
    assert old in text
    policy.write_text(text.replace(old, new, 1))


def _types(replica: Served, request_id: str) -> list[str]:
    events = replica.client(SEC).get(f"/v1/requests/{request_id}/events").json()["items"]
    return [e["type"] for e in events if e["type"] != "notification.sent"]


def test_a_replica_behind_the_policy_in_force_answers_503_and_closes_nothing(
    replicas: list[tuple[Served, Path]],
) -> None:
    (r1, p1), (r2, _p2) = replicas
    _edit(p1, "  staging-ssh:\n", STAGING_OPS + "  staging-ssh:\n")
    reloaded = r1.client(SEC).post("/v1/policy/reload")
    assert reloaded.status_code == 200
    created = r1.client(JANE).post(
        "/v1/requests", json={"roles": ["staging-ops"], "reason": "INC-9", "duration": "10m"}
    )
    assert created.status_code == 201, created.text
    rid = created.json()["id"]

    stranger = r2.client(DANA).post(f"/v1/requests/{rid}/approve", json={})
    assert stranger.status_code == 403  # a stranger to it learns nothing more
    behind = r2.client(PRIYA).post(f"/v1/requests/{rid}/approve", json={})
    assert behind.status_code == 503, behind.text
    assert behind.headers["Retry-After"].isdigit()
    mine, in_force = r2.app.ctx.policy.current.digest, reloaded.json()["digest"]
    detail = behind.json()["detail"]
    assert f"this replica runs policy {mine[:12]}" in detail
    assert f"the policy in force is {in_force[:12]}" in detail
    assert "reload this replica" in detail
    denied = r2.client(PRIYA).post(f"/v1/requests/{rid}/deny", json={"reason": "no"})
    assert denied.status_code == 503
    ready = r2.client().get("/readyz")  # still serving, and says it is behind
    assert ready.status_code == 200 and ready.json()["policy_step"]["in_step"] is False
    assert ready.json()["policy_step"]["in_force"]["digest"] == in_force
    assert r1.client(JANE).get(f"/v1/requests/{rid}").json()["state"] == "pending"
    assert _types(r1, rid) == ["request.created"]

    approved = r1.client(PRIYA).post(f"/v1/requests/{rid}/approve", json={})
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] in ("approved", "active")
    loaded = r1.client(SEC).get("/v1/audit", params={"type": "policy.loaded"}).json()["items"]
    assert loaded[-1]["data"]["replica"].rsplit(":", 1)[1].isdigit()  # host:pid
    assert r1.client(SEC).get("/v1/audit/verify").json()["ok"]


def test_after_a_reload_reads_show_who_decides_now(replicas: list[tuple[Served, Path]]) -> None:
    (r1, p1), _ = replicas
    body = {"roles": ["staging-ssh"], "reason": "INC-17", "duration": "10m"}
    rid = r1.client(JANE).post("/v1/requests", json=body).json()["id"]
    _edit(p1, STAGING_RULE, "any: [{team_lead: true}]")
    assert r1.client(SEC).post("/v1/policy/reload").status_code == 200

    shown = r1.client(JANE).get(f"/v1/requests/{rid}").json()
    assert shown["eligible_approvers"] == [PRIYA]
    assert r1.client(SAM).get(f"/v1/requests/{rid}").status_code == 404
    inbox = r1.client(SAM).get("/v1/requests", params={"approver": "me"}).json()["items"]
    assert rid not in [r["id"] for r in inbox]
    assert r1.client(SAM).post(f"/v1/requests/{rid}/approve", json={}).status_code in (403, 404)
    assert _types(r1, rid) == ["request.created", "request.rules_updated"]

    _edit(p1, "any: [{team_lead: true}]", "any: [{team_lead: true}, {group: dba}]")
    assert r1.client(SEC).post("/v1/policy/reload").status_code == 200
    seen = r1.client(DANA).get(f"/v1/requests/{rid}")
    assert seen.status_code == 200 and DANA in seen.json()["eligible_approvers"]
    inbox = r1.client(DANA).get("/v1/requests", params={"approver": "me"}).json()["items"]
    assert rid in [r["id"] for r in inbox]
    o = tables.outbox  # dana is told she may decide it now; priya, asked before, is not
    with r1.app.db.engine.connect() as conn:
        told = conn.execute(
            sa.select(o.c.recipient).where(
                o.c.request_id == rid, o.c.event == "request.rules_updated"
            )
        ).scalars()
        recipients = set(told)
    assert DANA in recipients and PRIYA not in recipients and JANE not in recipients
    assert r1.client(DANA).post(f"/v1/requests/{rid}/approve", json={}).status_code == 200
