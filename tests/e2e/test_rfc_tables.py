"""Every row of the RFC-PAM-0001 §10 tables, as encoded in examples/policy.yaml, exercised
through the served API (10.1.3, 10.3.1 all eight rows, 10.3.4, 10.4.2)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from jitgate.domain.policy import Policy
from jitgate.service import lifecycle
from served import Served

JANE, SAM, MARK = "jane.doe@example.com", "sam@example.com", "mark.lee@example.com"


def create(served: Served, who: str, **body: object) -> dict:
    response = served.client(who).post("/v1/requests", json={"reason": "INC-7", **body})
    assert response.status_code == 201, response.text
    return response.json()


def approve(served: Served, who: str, rid: str) -> dict:
    response = served.client(who).post(f"/v1/requests/{rid}/approve")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("role", "resource"),
    [
        ("dev-ssh", None),  # 10.3.1 SSH / Development: self-approve
        ("db-readonly-nonprod", "dev-db-01"),  # 10.3.1 Database / Non-prod: self-approve
        ("db-readonly-nonprod", "staging-db-01"),
        ("k8s-nonprod", None),  # 10.3.1 Kubernetes exec / Non-prod: self-approve
    ],
)
def test_self_approved_rows(served: Served, role: str, resource: str | None) -> None:
    body = {"roles": [role], **({"resources": [resource]} if resource else {})}
    req = create(served, JANE, **body)
    assert req["state"] == "active"
    assert req["requirements"]
    for requirement in req["requirements"]:
        assert requirement["spec"] == {"self": True}
        assert requirement["satisfied_by"] == "policy"
    events = served.client(JANE).get(f"/v1/requests/{req['id']}/events").json()["items"]
    approved = next(e for e in events if e["type"] == "request.approved")
    assert approved["actor"] == "policy"


@pytest.mark.parametrize("approver", ["priya@example.com", SAM])
def test_ssh_staging_team_lead_or_sre(served: Served, approver: str) -> None:
    """10.3.1 SSH / Staging: team lead OR SRE."""
    req = create(served, JANE, roles=["staging-ssh"])
    assert approve(served, approver, req["id"])["state"] == "active"


def test_ssh_staging_others_cannot_approve(served: Served) -> None:
    req = create(served, JANE, roles=["staging-ssh"])
    for outsider in (MARK, "dana@example.com", "ravi@example.com"):
        response = served.client(outsider).post(f"/v1/requests/{req['id']}/approve")
        assert response.status_code in (403, 404)


def test_ssh_production_oncall_and_manager(served: Served, on_call: str) -> None:
    """10.3.1 SSH / Production: SRE on-call AND manager; neither alone is enough."""
    req = create(served, JANE, roles=["sre-oncall"], resources=["prod-bastion"])
    assert approve(served, MARK, req["id"])["state"] == "pending"
    assert approve(served, on_call, req["id"])["state"] == "active"


def test_database_production_dba_oncall(
    served: Served, example_policy: Policy, start: datetime
) -> None:
    """10.3.1 Database / Production: DBA on-call."""
    dba = example_policy.directory.on_call("dba", start)
    other = next(p for p in ("dana@example.com", "dave@example.com") if p != dba)
    req = create(served, JANE, roles=["db-prod"], resources=["prod-db-01"])
    assert served.client(other).post(f"/v1/requests/{req['id']}/approve").status_code == 403
    assert approve(served, str(dba), req["id"])["state"] == "active"


def test_root_security_and_manager(served: Served) -> None:
    """10.3.1 Root / Any: Security AND Manager (sam's manager is mark)."""
    req = create(served, SAM, roles=["root-any"])
    assert approve(served, "sec@example.com", req["id"])["state"] == "pending"
    assert approve(served, MARK, req["id"])["state"] == "active"


def test_kubernetes_production_sre_oncall(served: Served, on_call: str) -> None:
    """10.3.1 Kubernetes exec / Production: SRE on-call."""
    req = create(served, JANE, roles=["k8s-prod"])
    assert approve(served, on_call, req["id"])["state"] == "active"


def test_developers_cannot_request_root(served: Served) -> None:
    """10.1.3 Root/admin access: JIT, and only for the groups policy names."""
    response = served.client(JANE).post("/v1/requests", json={"roles": ["root-any"], "reason": "x"})
    assert response.status_code == 403


def test_escalation_after_30m_lets_secondary_approve(served: Served, on_call: str) -> None:
    """10.3.4 No response in 30 minutes: escalate to secondary approvers (sre-leads)."""
    req = create(served, JANE, roles=["sre-oncall"])
    lee = served.client("lee@example.com")
    assert lee.post(f"/v1/requests/{req['id']}/approve").status_code == 403
    served.clock.advance(timedelta(minutes=31))
    assert lifecycle.tick(served.app.ctx).escalated == 1
    assert served.client(JANE).get(f"/v1/requests/{req['id']}").json()["escalated"] is True
    assert approve(served, on_call, req["id"])["state"] == "pending"
    assert approve(served, "lee@example.com", req["id"])["state"] == "active"


def test_pending_expires_after_1h(served: Served, on_call: str) -> None:
    """10.3.4 No response in 1 hour: the request expires; a late approval gets 409."""
    req = create(served, JANE, roles=["sre-oncall"])
    served.clock.advance(timedelta(hours=1))
    assert lifecycle.tick(served.app.ctx).expired_pending == 1
    late = served.client(on_call).post(f"/v1/requests/{req['id']}/approve")
    assert late.status_code == 409
    assert served.client(JANE).get(f"/v1/requests/{req['id']}").json()["state"] == "expired"


def test_urgent_request_is_recorded_for_paging(served: Served) -> None:
    """10.3.4 Urgent request: notify via PagerDuty (the event that routes to it)."""
    req = create(served, JANE, roles=["sre-oncall"], urgency="high")
    types = [
        e["type"]
        for e in served.client(JANE).get(f"/v1/requests/{req['id']}/events").json()["items"]
    ]
    assert "request.urgent" in types


@pytest.mark.parametrize(
    ("purpose", "default", "maximum"),
    [
        ("incident-response", 2, 8),
        ("debugging", 1, 4),
        ("maintenance", 4, 8),
        ("break-glass", 0.5, 1),
    ],
)
def test_duration_guidelines(served: Served, purpose: str, default: float, maximum: float) -> None:
    """10.4.2: typical duration is the default; over the max is 422 unless cap: true."""
    req = create(served, JANE, roles=["sre-oncall"], purpose=purpose)
    assert req["duration_seconds"] == int(default * 3600)
    over = f"{int(maximum * 60) + 60}m"
    refused = served.client(JANE).post(
        "/v1/requests",
        json={"roles": ["sre-oncall"], "purpose": purpose, "duration": over, "reason": "x"},
    )
    assert refused.status_code == 422
    capped = create(served, JANE, roles=["sre-oncall"], purpose=purpose, duration=over, cap=True)
    assert capped["duration_seconds"] == int(maximum * 3600)
