"""``GET /v1/audit?actor=`` names a person as everything else does, by their email in any
case and with blanks around it (``Sam@Example.com`` is ``sam@example.com``); a gateway is
``service:NAME``, its name as given. ``jitgate audit --actor`` asks the API, so it does too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from served import Served

JG = str(Path(sys.executable).with_name("jitgate"))
JANE = "jane.doe@example.com"
SEC = "sec@example.com"


def _actors(served: Served, actor: str) -> list[str]:
    answer = served.client(SEC).get("/v1/audit", params={"actor": actor})
    assert answer.status_code == 200, answer.text
    return [e["actor"] for e in answer.json()["items"]]


def test_an_email_finds_its_events_in_any_case(served: Served) -> None:
    jane = served.client(JANE)
    for _ in range(2):
        made = jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "x"})
        assert made.status_code == 201, made.text
    gateway = served.client("gateway")
    body = {"user": JANE, "type": "ssh", "environment": "development", "kind": "ssh"}
    opened = gateway.post("/v1/sessions", json=body)  # access.used: jane's
    assert opened.status_code == 201, opened.text
    ended = gateway.post(f"/v1/sessions/{opened.json()['id']}/end", json={})
    assert ended.status_code == 200, ended.text  # session.ended: the gateway's
    exact = _actors(served, JANE)
    assert exact and set(exact) == {JANE}
    for written in ("Jane.Doe@Example.com", "JANE.DOE@EXAMPLE.COM", f"  {JANE} "):
        assert _actors(served, written) == exact, written
    assert set(_actors(served, "service:gw")) == {"service:gw"}
    assert _actors(served, " service:gw ") == _actors(served, "service:gw")
    assert _actors(served, "service:GW") == []  # a gateway's name is as given, not an email


def test_the_cli_finds_them_too(served: Served) -> None:
    made = served.client(JANE).post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "x"})
    assert made.status_code == 201, made.text
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env.update(JITGATE_SERVER=served.url, JITGATE_TOKEN=served.tokens[SEC])
    done = subprocess.run(
        [JG, "audit", "--actor", "Jane.Doe@Example.com", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)["items"]
    assert items and {e["actor"] for e in items} == {JANE}
