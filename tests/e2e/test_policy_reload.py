"""Reload keeps the last good policy: a bad file is refused with every problem listed; a
good one takes effect at once and is named in the audit chain by its digest."""

from __future__ import annotations

from pathlib import Path

from served import Served


def test_reload_keeps_last_good_policy(editable: tuple[Served, Path]) -> None:
    served, policy = editable
    sec, jane = served.client("sec@example.com"), served.client("jane.doe@example.com")
    assert jane.post("/v1/policy/reload").status_code == 403
    good_text = policy.read_text()
    policy.write_text(good_text.replace("max_duration: 8h", "max_duration: banana", 1))
    refused = sec.post("/v1/policy/reload")
    assert refused.status_code == 422
    assert any("max_duration" in p for p in refused.json()["problems"])
    created = jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "still works"})
    assert created.status_code == 201

    policy.write_text(good_text.replace("  dev-ssh:", "  dev-ssh-renamed:", 1))
    accepted = sec.post("/v1/policy/reload")
    assert accepted.status_code == 200
    gone = jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "x"})
    assert gone.status_code == 422 and "unknown role" in gone.json()["detail"]
    events = sec.get("/v1/audit", params={"type": "policy.loaded"}).json()["items"]
    assert [e["data"]["digest"] for e in events] == [accepted.json()["digest"]]
    assert events[0]["actor"] == "sec@example.com"
