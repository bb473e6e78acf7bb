"""``POST /v1/policy/reload`` on a served jitgate: a time out of range and a bug while
loading are both a 422 problem (never a 500), and the last good policy stays in force."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from served import Served

OVERRIDE_FROM = "from: 2026-02-02T09:00:00Z"


def test_a_time_out_of_range_is_refused_with_its_line(editable: tuple[Served, Path]) -> None:
    served, policy = editable
    before = served.app.ctx.policy.current
    good = policy.read_text()
    policy.write_text(good.replace(OVERRIDE_FROM, "from: 0001-01-01T00:00:00+01:00"))
    line = good[: good.index(OVERRIDE_FROM)].count("\n") + 1
    refused = served.client("sec@example.com").post("/v1/policy/reload")
    assert refused.status_code == 422, refused.text
    assert refused.json()["problems"] == [
        f"{policy}:{line}: directory.oncall.sre.overrides[0].from: 0001-01-01T00:00:00+01:00 "
        "is outside the years 1 to 9999 in UTC"
    ]
    assert served.app.ctx.policy.current is before
    created = served.client("jane.doe@example.com").post(
        "/v1/requests", json={"roles": ["dev-ssh"], "reason": "the old policy stays"}
    )
    assert created.status_code == 201


def test_a_bug_while_loading_is_a_422_logged_server_side(
    editable: tuple[Served, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    served, _ = editable
    before = served.app.ctx.policy.current

    def boom() -> None:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(served.app, "reload_policy", boom)
    with caplog.at_level(logging.DEBUG, logger="jitgate.policy"):
        refused = served.client("sec@example.com").post("/v1/policy/reload")
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["detail"] == "policy is invalid; the last good policy stays in force"
    assert body["problems"] == [
        f"{served.app.settings.policy_path}:1: the policy could not be loaded: unexpected "
        "OverflowError (see the server log)"
    ]
    assert "Traceback" not in refused.text and "out of range" not in refused.text
    assert served.app.ctx.policy.current is before
    logged = [r for r in caplog.records if r.name == "jitgate.policy"]
    assert [r.levelno for r in logged] == [logging.ERROR, logging.DEBUG]
    assert "unexpected OverflowError: date value out of range" in logged[0].getMessage()
    assert logged[1].exc_info is not None
