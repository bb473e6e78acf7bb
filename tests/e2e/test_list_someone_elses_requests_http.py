"""``GET /v1/requests?requester=EMAIL`` by an eligible approver who is not an admin: 200 with
that person's requests the approver may open (``GET /v1/requests/{id}``), never a 403;
anyone else gets an empty page."""

from __future__ import annotations

from jitgate.domain.policy import Policy
from served import Served

JANE = "jane.doe@example.com"


def test_an_eligible_approver_lists_the_requesters_requests(
    served: Served, example_policy: Policy
) -> None:
    jane = served.client(JANE)
    made = jane.post("/v1/requests", json={"roles": ["db-prod"], "reason": "list"})
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    mine = jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "self"})
    assert mine.status_code == 201, mine.text
    dba = example_policy.directory.on_call("dba", served.clock.now())
    assert dba is not None and dba in made.json()["eligible_approvers"]
    approver = served.client(dba)
    assert approver.get(f"/v1/requests/{rid}").status_code == 200
    for written in (JANE, "Jane.Doe@Example.com"):
        listed = approver.get("/v1/requests", params={"requester": written})
        assert listed.status_code == 200, listed.text
        assert [r["id"] for r in listed.json()["items"]] == [rid]  # not the dev-ssh one
        assert listed.json()["next_cursor"] is None
    nobody = served.client("ravi@example.com").get("/v1/requests", params={"requester": JANE})
    assert nobody.status_code == 200, nobody.text
    assert nobody.json() == {"items": [], "next_cursor": None}
