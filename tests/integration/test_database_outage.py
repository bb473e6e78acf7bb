"""PostgreSQL goes away under a running jitgate and comes back (a failover, a restart):
calls in between get 503 problem+json with ``Retry-After``, never a 500 and never a
traceback in the log; ``/readyz`` says so; afterwards the same server answers again,
without a restart. Runs its own throwaway PostgreSQL, stopped and started by the test."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import require
from pg import PgServer, find_bindir
from served import Served, serve

POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
JANE = "jane.doe@example.com"


@pytest.fixture
def outage_pg() -> Iterator[PgServer]:
    bindir = find_bindir()
    require(bindir is not None, "PostgreSQL is missing (`make test` installs it)")
    assert bindir is not None
    server = PgServer(bindir).start()
    yield server
    server.stop()


def test_an_outage_is_a_503_and_the_server_recovers_without_a_restart(
    outage_pg: PgServer, start: object, caplog: pytest.LogCaptureFixture
) -> None:
    served: Served = serve(outage_pg.create_database("outage"), POLICY, start)  # type: ignore[arg-type]
    try:
        jane, gateway = served.client(JANE), served.client("gateway")
        body = {"roles": ["dev-ssh"], "reason": "INC-1", "duration": "1h"}
        assert jane.post("/v1/requests", json=body).status_code == 201
        outage_pg.pause()
        with caplog.at_level(logging.WARNING):
            for answer in (
                jane.post("/v1/requests", json=body),
                jane.get("/v1/requests"),
                gateway.post("/v1/authorize", json={"user": JANE, "resource": "prod-bastion"}),
            ):
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.headers["retry-after"] == "5"
                assert "database is unavailable" in answer.json()["detail"]
            assert served.client().get("/readyz").status_code == 503
        assert "Traceback" not in caplog.text and "database unavailable" in caplog.text
        outage_pg.resume()
        assert jane.post("/v1/requests", json=body).status_code == 201
        assert served.client().get("/readyz").status_code == 200
        assert (
            gateway.post(
                "/v1/authorize", json={"user": JANE, "resource": "prod-bastion"}
            ).status_code
            == 200
        )
    finally:
        served.stop()
