"""``jitgate serve`` as a real process: SIGTERM and SIGINT stop it gracefully (the send
under way finishes and is recorded, the scheduler and the database are closed, one log
line, exit 0); it logs where it listens and with which policy, one line a record, and
every policy reload through the API, whatever its outcome."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from notify_sinks import HttpSink, Received, Server, cli
from test_notify_crash import outbox, webhook_setup

from jitgate.adapters.policy import load_policy

pytest_plugins = ["conftest_notify"]
JG = str(Path(sys.executable).with_name("jitgate"))
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+ ")


def slow(_: Received) -> tuple[int, dict[str, str], bytes]:
    time.sleep(3.0)  # the send is under way when jitgate is told to stop
    return 200, {"content-type": "text/plain"}, b"ok"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    sink = HttpSink(slow)
    sink.start()
    path, db, env = webhook_setup(tmp_path, sink)
    servers: list[Server] = []

    def start(database: str = db) -> Server:
        server = Server(env, path, database, tmp_path / f"serve{len(servers)}.log")
        servers.append(server)
        return server

    try:
        yield {"start": start, "db": db, "env": env, "sink": sink, "policy": path}
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.kill()
        sink.stop()


def token(site: dict[str, Any], who: str) -> str:
    return cli("token", "create", who, "--db", site["db"], env=site["env"]).strip()


def stopped(server: Server, signum: signal.Signals) -> tuple[int, str]:
    """Send ``signum``: the exit status and the server's log."""
    server.proc.send_signal(signum)
    return server.proc.wait(60), server.log.read_text()


def test_sigterm_lets_the_send_under_way_finish_and_records_it(site: dict[str, Any]) -> None:
    cli("db", "upgrade", "--db", site["db"], env=site["env"])
    jane = token(site, "jane.doe@example.com")
    server = site["start"]()
    created = httpx.post(
        f"{server.url}/v1/requests",
        headers={"authorization": f"Bearer {jane}"},
        json={"roles": ["sre-oncall"], "reason": "INC-9 stop test"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    assert len(site["sink"].wait_for("/hook", 1, timeout=20)) == 1  # its answer takes 3 s
    code, log = stopped(server, signal.SIGTERM)
    (row,) = outbox(site)
    assert (row["status"], row["attempts"]) == ("sent", 1), row  # not left `sending`
    assert code == 0 and "Traceback" not in log
    assert log.count("jitgate serve stopped on SIGTERM") == 1, log


def test_sigint_stops_it_as_sigterm_does(site: dict[str, Any]) -> None:
    server = site["start"]()
    code, log = stopped(server, signal.SIGINT)
    assert "Aborted!" not in log and "Traceback" not in log
    assert "jitgate serve stopped on SIGINT" in log, log
    assert code == 0


def test_start_says_where_it_listens_with_which_policy_one_line_a_record(
    site: dict[str, Any], tmp_path: Path
) -> None:
    server = site["start"](f"sqlite:///{tmp_path}/fresh.db")  # migrated by serve
    code, log = stopped(server, signal.SIGTERM)
    digest = load_policy(site["policy"]).digest[:12]
    said = f"listening on http://127.0.0.1:{server.port}: policy {site['policy']} ({digest}),"
    assert said in log, log
    assert "Running upgrade 0004 -> 0005, A session remembers the gateway" in log
    assert all(LINE.match(line) for line in log.splitlines()), log
    assert "uvicorn" not in log and "Started server process" not in log
    assert code == 0


def test_a_reload_through_the_api_is_logged_whatever_its_outcome(site: dict[str, Any]) -> None:
    cli("db", "upgrade", "--db", site["db"], env=site["env"])
    sec, jane = token(site, "sec@example.com"), token(site, "jane.doe@example.com")
    server = site["start"]()

    def reload(who: str) -> int:
        answer = httpx.post(
            f"{server.url}/v1/policy/reload", headers={"authorization": f"Bearer {who}"}
        )
        return answer.status_code

    assert reload(sec) == 200
    assert reload(jane) == 403
    policy: Path = site["policy"]
    digest = load_policy(policy).digest[:12]
    policy.write_text(policy.read_text().replace("max_duration: 8h", "max_duration: soon", 1))
    assert reload(sec) == 422
    code, log = stopped(server, signal.SIGTERM)
    lines = [line for line in log.splitlines() if "policy reload" in line]
    assert len(lines) == 3, log
    assert " INFO " in lines[0] and f"through the API by sec@example.com: {digest}" in lines[0]
    assert " WARNING " in lines[1] and "jane.doe@example.com is not an admin" in lines[1]
    assert " ERROR " in lines[2] and "by sec@example.com refused: " in lines[2]
    assert "max_duration" in lines[2] and "the last good policy stays" in lines[2]
    assert jane not in log and sec not in log  # no token in the log
    assert code == 0


def test_probes_answer_head_as_get_without_a_body(site: dict[str, Any], tmp_path: Path) -> None:
    """Load balancers probe with HEAD: the status GET would give, no body."""
    import sqlite3

    server = site["start"]()

    def probe(method: str, path: str) -> httpx.Response:
        return httpx.request(method, f"{server.url}{path}", timeout=10)

    for path in ("/healthz", "/readyz"):
        head = probe("HEAD", path)
        assert (head.status_code, head.content) == (200, b""), path
    with sqlite3.connect(f"{tmp_path}/jitgate.db") as db:  # a schema not this jitgate's
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    assert probe("GET", "/readyz").status_code == 503
    head = probe("HEAD", "/readyz")
    assert (head.status_code, head.content) == (503, b"")
    assert probe("HEAD", "/healthz").status_code == 200
    assert stopped(server, signal.SIGTERM)[0] == 0


def test_the_worker_says_when_it_starts_and_stops_on_sigint(
    site: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [JG, "worker", "--policy", str(site["policy"]), "--db", site["db"]],
            env=site["env"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "jitgate worker started: policy" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        worker.send_signal(signal.SIGINT)
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    said = log.read_text()
    assert "jitgate worker stopped on SIGINT" in said and "Traceback" not in said, said
