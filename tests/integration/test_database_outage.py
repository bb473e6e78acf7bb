"""PostgreSQL goes away under a running jitgate and comes back (a failover, a restart):
calls in between get 503 problem+json with ``Retry-After``, never a 500 and never a
traceback in the log; ``/readyz`` says so; afterwards the same server answers again,
without a restart. Runs its own throwaway PostgreSQL, stopped and started by the test."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
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


def _signal_server(server: PgServer, sig: signal.Signals) -> None:
    """``sig`` to the postmaster and every process it started."""
    assert server.root is not None
    postmaster = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in [postmaster, *map(int, children)]:
        os.kill(pid, sig)


def test_a_stalled_database_makes_readyz_unready_at_once_and_healthz_stays_up(
    outage_pg: PgServer, start: object
) -> None:
    """A database that stops answering (a failover stall, not a refusal): the calls stuck on
    it fill the API's thread pool, yet /readyz says unready within seconds and /healthz
    answers, so a liveness probe does not restart a replica that is only waiting; when
    the database answers again the stuck calls finish, none with a 500."""
    served: Served = serve(outage_pg.create_database("stall"), POLICY, start)  # type: ignore[arg-type]
    token = {"Authorization": f"Bearer {served.tokens[JANE]}"}
    probe = served.client()
    assert probe.get("/readyz").status_code == 200
    stuck: list[Future[httpx.Response]] = []
    with ThreadPoolExecutor(60) as pool:
        _signal_server(outage_pg, signal.SIGSTOP)
        try:
            stuck = [
                pool.submit(httpx.get, f"{served.url}/v1/requests", headers=token, timeout=60)
                for _ in range(60)
            ]
            time.sleep(1.0)  # they reach the thread pool and wait on the database
            began = time.monotonic()
            ready = probe.get("/readyz", timeout=10)
            took = time.monotonic() - began
            assert ready.status_code == 503, ready.text
            assert "not answering within" in ready.json()["detail"]
            assert took < 5, took
            assert probe.head("/readyz", timeout=10).status_code == 503
            assert probe.get("/healthz", timeout=3).status_code == 200
        finally:
            _signal_server(outage_pg, signal.SIGCONT)
        codes = {f.result().status_code for f in stuck}
    try:
        assert codes <= {200, 503}, codes
        assert probe.get("/readyz").status_code == 200
    finally:
        served.stop()
