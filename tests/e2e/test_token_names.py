"""A token names its person the way requests and approvals do (SPEC §5): ``token create``
stores ``" Jane.Doe@Example.com "`` as ``jane.doe@example.com``, so that person sees the
requests their token created; a name holding whitespace, a control or an invisible format
character (a zero-width space) is refused in one line, for people and gateways alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jitgate.domain.errors import Invalid
from jitgate.service.ports import Principal
from jitgate.service.tokens import create_token, list_tokens
from served import Served

JG = str(Path(sys.executable).with_name("jitgate"))
JANE = "jane.doe@example.com"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    return subprocess.run(
        [JG, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_a_token_for_a_padded_name_sees_its_own_requests(served: Served) -> None:
    token = create_token(served.app.ctx, principal=Principal("user", f" {JANE.upper()} "))
    headers = {"Authorization": f"Bearer {token}"}
    client = served.client(headers=headers)
    created = client.post("/v1/requests", json={"roles": ["sre-oncall"], "reason": "INC-1"})
    assert created.status_code == 201, created.text
    assert created.json()["requester"] == JANE
    got = client.get(f"/v1/requests/{created.json()['id']}")
    assert got.status_code == 200, got.text
    listed = client.get("/v1/requests", params={"requester": JANE})
    assert created.json()["id"] in [r["id"] for r in listed.json()["items"]]


@pytest.mark.parametrize(
    "principal",
    [
        Principal("user", "jane.doe\u200b@example.com"),  # zero-width space
        Principal("user", "jane doe@example.com"),
        Principal("user", "jane.doe@example.com\u202e"),
        Principal("user", "jane.doe\x1b@example.com"),
        Principal("user", "jane.doe@exa\u00a0mple.com"),  # no-break space
        Principal("user", "jane.doe"),
        Principal("user", "   "),
        Principal("service", "gw\u200b"),
        Principal("service", "gate way"),
        Principal("service", "g\nw"),
        Principal("service", ""),
    ],
)
def test_a_name_with_invisible_or_control_characters_is_refused(
    served: Served, principal: Principal
) -> None:
    before = list_tokens(served.app.ctx)
    with pytest.raises(Invalid):
        create_token(served.app.ctx, principal=principal)
    assert list_tokens(served.app.ctx) == before


def test_the_cli_stores_the_normal_name_and_refuses_a_bad_one_in_one_line(
    tmp_path: Path,
) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/t.db"]
    made = run("token", "create", f" {JANE} ", *db)
    assert made.returncode == 0, made.stderr
    listed = json.loads(run("token", "ls", "--json", *db).stdout)
    assert [(t["kind"], t["subject"]) for t in listed] == [("user", JANE)]
    service = run("token", "create", "--service", " gw-1 ", *db)
    assert service.returncode == 0, service.stderr

    for bad in (["jane.doe\u200b@example.com"], ["--service", "gw\u200b"]):
        refused = run("token", "create", *bad, *db)
        assert refused.returncode != 0 and refused.stdout == ""
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert refused.stderr.startswith("error: ") and "U+200B" in refused.stderr
    listed = json.loads(run("token", "ls", "--json", *db).stdout)
    assert sorted(t["subject"] for t in listed) == ["gw-1", JANE]


def test_a_token_an_older_release_stored_unnormalised_still_sees_its_requests(
    served: Served,
) -> None:
    """Tokens from before names were checked may hold `` Jane.Doe@Example.com``: the
    person they name is the one requests know, so she sees what she asked for."""
    from jitgate.service.tokens import hash_token

    with served.app.ctx.uow() as uow:
        uow.tokens.add(
            hash_token("jg_legacy-jane"),
            Principal("user", " Jane.Doe@Example.com"),
            served.clock.now(),
            None,
        )
        uow.commit()
    legacy = served.client(headers={"Authorization": "Bearer jg_legacy-jane"})
    made = legacy.post("/v1/requests", json={"reason": "INC-3", "roles": ["dev-ssh"]})
    assert made.status_code == 201, made.text
    assert made.json()["requester"] == JANE
    assert legacy.get(f"/v1/requests/{made.json()['id']}").status_code == 200
    assert made.json()["id"] in [r["id"] for r in legacy.get("/v1/requests").json()["items"]]
