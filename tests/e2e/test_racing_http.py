"""32 concurrent approve/deny calls on one request: one 200, the rest 409; chain intact."""

from __future__ import annotations

import threading

from served import Served

APPROVERS = ["priya@example.com", "sam@example.com", "sue@example.com", "lee@example.com"]


def test_racing_decisions(served: Served) -> None:
    created = served.client("jane.doe@example.com").post(
        "/v1/requests", json={"roles": ["staging-ssh"], "reason": "race"}
    )
    rid = created.json()["id"]
    clients = [served.client(APPROVERS[n % 4]) for n in range(32)]
    barrier = threading.Barrier(32)
    codes: list[int] = []
    lock = threading.Lock()

    def decide(n: int) -> None:
        barrier.wait()
        if n % 2:
            response = clients[n].post(f"/v1/requests/{rid}/approve")
        else:
            response = clients[n].post(f"/v1/requests/{rid}/deny", json={"reason": "no"})
        with lock:
            codes.append(response.status_code)

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(codes) == [200] + [409] * 31
    sec = served.client("sec@example.com")
    events = sec.get("/v1/audit", params={"request_id": rid}).json()["items"]
    outcomes = [e["type"] for e in events if e["type"] in ("request.approved", "request.denied")]
    assert len(outcomes) == 1
    assert sec.get("/v1/audit/verify").json()["ok"] is True
