"""``jitgate show`` of an approved extension, through the real CLI against a served
jitgate with an ``ssh-ca`` backend: an extension has no backend rows of its own (its
time is applied on its original's), so it shows its original's (applied, then removed
with the grant), never "never applied"; it never warns, and it ends with its grant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from test_krl_when_an_extension_is_revoked import JANE, extended_grant, served_ca

from jitgate.service import lifecycle
from served import Served

__all__ = ["served_ca"]  # the fixture, for the tests below

JG = str(Path(sys.executable).with_name("jitgate"))


def show(served: Served, request_id: str) -> tuple[str, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env.update({"JITGATE_SERVER": served.url, "JITGATE_TOKEN": served.tokens[JANE]})
    text = subprocess.run(
        [JG, "show", request_id], capture_output=True, text=True, env=env, timeout=60
    )
    assert text.returncode == 0, text.stderr
    raw = subprocess.run(
        [JG, "show", request_id, "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert raw.returncode == 0, raw.stderr
    return text.stdout, json.loads(raw.stdout)


def test_an_extension_shows_its_originals_backends_through_its_life(served_ca: Served) -> None:
    served = served_ca
    rid, ext, old_end = extended_grant(served)
    served.clock.set(old_end + timedelta(minutes=1))  # the extension's time has begun
    lifecycle.tick(served.app.ctx)
    text, body = show(served, ext)
    assert body["state"] == "active"
    assert "never applied" not in text and "not applied yet" not in text, text
    assert [b["status"] for b in body["backends"]] == ["applied"]  # type: ignore[union-attr]

    end = old_end + timedelta(hours=1)
    served.clock.set(end - timedelta(minutes=5))  # inside the expiry warning
    lifecycle.tick(served.app.ctx)
    served.clock.set(end)
    lifecycle.tick(served.app.ctx)
    text, body = show(served, ext)
    assert body["state"] == "expired" and "never applied" not in text, text
    (row,) = body["backends"]  # type: ignore[misc]
    assert row["status"] == "removed"
    assert datetime.fromisoformat(row["removed_at"]) == end
    events = served.client(JANE).get(f"/v1/requests/{ext}/events").json()["items"]
    kinds = [e["type"] for e in events if e["type"].startswith("access.")]
    assert kinds == ["access.granted", "access.expired"]  # no access.expiring of its own
    original = served.client(JANE).get(f"/v1/requests/{rid}/events").json()["items"]
    (warned,) = [e for e in original if e["type"] == "access.expiring"]
    assert warned["data"]["ends_at"] == end.isoformat()
